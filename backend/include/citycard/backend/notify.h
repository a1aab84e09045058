// Notifications to cardholders (短信提示管理, 邮件历史管理): SMS and e-mail from templates,
// for a named card's issue, recharge, purchase, low balance and coming expiry.
//
// Contract:
// - Events queue a row in `notifications` inside the caller's transaction (an outbox): a
//   recharge and its message commit together, and a rolled-back operation sends nothing.
// - flush() hands queued rows to the NotificationGateway outside any transaction and marks
//   them sent or, after NotifyOptions::attempts_max failures, failed. After a crash, rows still
//   queued are sent by the next flush(): at least once, never lost. Backend::poll() flushes.
// - Only named cards whose holder gave a phone (SMS) or an e-mail address and did not opt out
//   are notified. Purchases at transit merchants are not notified unless
//   notify_transit_purchases (a bus ride is not news); low balance is, once per crossing of
//   low_balance_fen from above.
// - Templates are text with {placeholders}: {card} {name} {amount} {balance} {merchant}
//   {date} {points} {valid_to}; an admin may replace the built-in ones per event and channel.
// - History is queryable by card, recipient or event, newest first, bounded.
//
// The default gateway appends one line per message to a file (FileNotificationGateway);
// MemoryNotificationGateway keeps the last messages for tests and virtual-time runs.
//
// Threads: one caller at a time (the Backend's); gateways are called from flush() only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "citycard/backend/calendar.h"
#include "citycard/backend/store.h"
#include "citycard/backend/swipe_hook.h"
#include "citycard/backend/users.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/status.h"

namespace citycard::backend {

class Merchants;

enum class NotifyChannel : std::uint8_t { kSms = 0, kEmail = 1 };
enum class NotifyEvent : std::uint8_t {
  kIssue = 0,
  kRecharge = 1,
  kPurchase = 2,
  kLowBalance = 3,
  kExpiry = 4,
};
const char* notify_event_name(NotifyEvent e);
const char* notify_channel_name(NotifyChannel c);

enum class NotifyState : std::uint8_t { kQueued = 0, kSent = 1, kFailed = 2 };

struct Notification {
  std::int64_t id = 0;
  std::int64_t at_us = 0;
  NotifyEvent event = NotifyEvent::kIssue;
  NotifyChannel channel = NotifyChannel::kSms;
  std::string recipient;  // phone number or e-mail address
  std::optional<protocol::Serial8> card;
  std::string body;
  NotifyState state = NotifyState::kQueued;
  int attempts = 0;
  std::string error;
};

class NotificationGateway {
 public:
  virtual ~NotificationGateway() = default;
  // Delivers one message; an error is retried by a later flush().
  virtual Status send(const Notification& n) = 0;
};

// Appends "<at_us>\t<channel>\t<recipient>\t<body>\n" to a file, flushed per message.
class FileNotificationGateway final : public NotificationGateway {
 public:
  explicit FileNotificationGateway(std::string path) : path_(std::move(path)) {}
  Status send(const Notification& n) override;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Keeps the last `max` messages in memory.
class MemoryNotificationGateway final : public NotificationGateway {
 public:
  explicit MemoryNotificationGateway(std::size_t max = 10'000) : max_(max) {}
  Status send(const Notification& n) override;
  const std::deque<Notification>& sent() const { return sent_; }
  void fail_next(int n) { fail_next_ = n; }  // for tests: the next n sends fail

 private:
  std::size_t max_;
  std::deque<Notification> sent_;
  int fail_next_ = 0;
};

struct NotifyOptions {
  std::int64_t low_balance_fen = 500;
  int expiry_notice_days = 30;
  bool notify_transit_purchases = false;
  int attempts_max = 3;
  std::size_t flush_max = 1'000;    // messages per flush()
  std::size_t history_max = 1'000;  // rows per history() page
  std::size_t template_max_bytes = 512;
};

struct NotificationFilter {
  std::optional<protocol::Serial8> card;
  std::string recipient;  // empty: any
  std::optional<NotifyEvent> event;
  std::size_t limit = 100;
};

class Notifier {
 public:
  Notifier(Store& store, const Calendar& calendar, Users& users, NotificationGateway& gateway,
           NotifyOptions options = {})
      : store_(store), calendar_(calendar), users_(users), gateway_(gateway), options_(options) {}
  void set_merchants(const Merchants* merchants) { merchants_ = merchants; }

  // Admin: replaces the template of one event and channel.
  Status set_template(const Session& by, NotifyEvent event, NotifyChannel channel,
                      const std::string& body);
  Result<std::string> template_of(NotifyEvent event, NotifyChannel channel) const;

  // Queue (in the caller's transaction). A card without a named holder queues nothing.
  Status on_issue(const protocol::Serial8& card);
  Status on_recharge(const protocol::Serial8& card, std::int64_t amount_fen,
                     std::int64_t balance_fen);
  Status on_purchase(const SwipeFacts& swipe);  // purchase and low-balance messages
  // Queues expiry notices for named cards whose validity ends within expiry_notice_days, once
  // per card. Returns how many.
  Result<std::int64_t> check_expiry();

  // Sends what is queued (outside any transaction). Returns how many were sent.
  Result<std::int64_t> flush();

  // Staff only: cardholders' messages are not a merchant's business.
  Result<std::vector<Notification>> history(const Session& by,
                                            const NotificationFilter& filter) const;
  Result<std::int64_t> queued_count() const;

  const NotifyOptions& options() const { return options_; }

 private:
  struct Holder;
  Result<std::optional<Holder>> holder_of(const protocol::Serial8& card) const;
  Status queue(NotifyEvent event, const protocol::Serial8& card, const Holder& holder,
               const std::vector<std::pair<std::string, std::string>>& values);

  Store& store_;
  const Calendar& calendar_;
  Users& users_;
  NotificationGateway& gateway_;
  NotifyOptions options_;
  const Merchants* merchants_ = nullptr;
};

}  // namespace citycard::backend
