#include "citycard/backend/notify.h"

#include <cstdio>

#include "citycard/backend/merchants.h"
#include "citycard/backend/money.h"
#include "sql_util.h"

namespace citycard::backend {

using protocol::Serial8;

struct Notifier::Holder {
  std::string name;
  std::string phone;
  std::string email;
  std::string card_number;
  int valid_to = 0;
};

namespace {

const char* default_template(NotifyEvent e) {
  switch (e) {
    case NotifyEvent::kIssue:
      return "【城市一卡通】{name}您好，您的卡{card}已开通，有效期至{valid_to}。";
    case NotifyEvent::kRecharge:
      return "【城市一卡通】您的卡{card}于{date}充值{amount}元，余额{balance}元。";
    case NotifyEvent::kPurchase:
      return "【城市一卡通】您的卡{card}于{date}在{merchant}消费{amount}元，余额{balance}元，"
             "积分{points}。";
    case NotifyEvent::kLowBalance:
      return "【城市一卡通】您的卡{card}余额{balance}元，已低于提醒金额，请及时充值。";
    case NotifyEvent::kExpiry:
      return "【城市一卡通】您的卡{card}将于{valid_to}到期，请及时办理换卡。";
  }
  return "";
}

std::string render(const std::string& text,
                   const std::vector<std::pair<std::string, std::string>>& values) {
  std::string out;
  out.reserve(text.size() + 64);
  for (std::size_t i = 0; i < text.size();) {
    bool replaced = false;
    if (text[i] == '{') {
      for (const auto& [key, value] : values) {
        if (text.compare(i + 1, key.size(), key) == 0 && i + 1 + key.size() < text.size() &&
            text[i + 1 + key.size()] == '}') {
          out += value;
          i += key.size() + 2;
          replaced = true;
          break;
        }
      }
    }
    if (!replaced) out += text[i++];
  }
  return out;
}

std::string date_text(int yyyymmdd) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", yyyymmdd / 10'000, yyyymmdd / 100 % 100,
                yyyymmdd % 100);
  return buf;
}

}  // namespace

const char* notify_event_name(NotifyEvent e) {
  switch (e) {
    case NotifyEvent::kIssue:
      return "issue";
    case NotifyEvent::kRecharge:
      return "recharge";
    case NotifyEvent::kPurchase:
      return "purchase";
    case NotifyEvent::kLowBalance:
      return "low_balance";
    case NotifyEvent::kExpiry:
      return "expiry";
  }
  return "unknown";
}

const char* notify_channel_name(NotifyChannel c) {
  return c == NotifyChannel::kSms ? "sms" : "email";
}

Status FileNotificationGateway::send(const Notification& n) {
  std::FILE* f = std::fopen(path_.c_str(), "a");
  if (f == nullptr) return Status(Errc::kIo, "cannot open " + path_ + " for appending");
  const int written =
      std::fprintf(f, "%lld\t%s\t%s\t%s\n", static_cast<long long>(n.at_us),
                   notify_channel_name(n.channel), n.recipient.c_str(), n.body.c_str());
  const bool ok = written > 0 && std::fflush(f) == 0;
  std::fclose(f);
  return ok ? Status::ok() : Status(Errc::kIo, "cannot write to " + path_);
}

Status MemoryNotificationGateway::send(const Notification& n) {
  if (fail_next_ > 0) {
    --fail_next_;
    return Status(Errc::kUnavailable, "gateway refused (test)");
  }
  if (sent_.size() == max_) sent_.pop_front();
  sent_.push_back(n);
  return Status::ok();
}

Status Notifier::set_template(const Session& by, NotifyEvent event, NotifyChannel channel,
                              const std::string& body) {
  return users_.audited(
      by, "set_template",
      std::string(notify_event_name(event)) + "/" + notify_channel_name(channel), [&]() -> Status {
        if (Status s = users_.require(by, {Role::kAdmin}, "set_template"); !s.is_ok()) return s;
        if (event > NotifyEvent::kExpiry || channel > NotifyChannel::kEmail) {
          return Status(Errc::kInvalidArgument, "unknown event or channel");
        }
        if (body.empty() || body.size() > options_.template_max_bytes) {
          return Status(
              Errc::kInvalidArgument,
              "template must be 1.." + std::to_string(options_.template_max_bytes) + " bytes");
        }
        return store_
            .query(
                "INSERT INTO notify_templates(event, channel, body) VALUES (?1, ?2, ?3) "
                "ON CONFLICT(event, channel) DO UPDATE SET body = excluded.body")
            .bind(1, static_cast<std::int64_t>(event))
            .bind(2, static_cast<std::int64_t>(channel))
            .bind(3, body)
            .run();
      });
}

Result<std::string> Notifier::template_of(NotifyEvent event, NotifyChannel channel) const {
  auto q = store_.query("SELECT body FROM notify_templates WHERE event = ?1 AND channel = ?2");
  q.bind(1, static_cast<std::int64_t>(event)).bind(2, static_cast<std::int64_t>(channel));
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (*row) return q.column_text(0);
  return std::string(default_template(event));
}

Result<std::optional<Notifier::Holder>> Notifier::holder_of(const Serial8& card) const {
  auto q = store_.query(
      "SELECT h.name, h.phone, h.email, c.card_number, c.valid_to FROM card_ext x "
      "JOIN holders h ON h.id = x.holder_id JOIN cards c ON c.serial = x.serial "
      "WHERE x.serial = ?1 AND h.notify <> 0");
  q.bind_blob(1, card);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return std::optional<Holder>();
  return std::optional<Holder>(Holder{q.column_text(0), q.column_text(1), q.column_text(2),
                                      q.column_text(3), static_cast<int>(q.column_int64(4))});
}

Status Notifier::queue(NotifyEvent event, const Serial8& card, const Holder& h,
                       const std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<std::pair<std::string, std::string>> values = {
      {"card", h.card_number},
      {"name", h.name},
      {"date", protocol::datetime_to_string(calendar_.now_datetime())},
      {"valid_to", date_text(h.valid_to)}};
  values.insert(values.end(), extra.begin(), extra.end());
  for (NotifyChannel channel : {NotifyChannel::kSms, NotifyChannel::kEmail}) {
    const std::string& to = channel == NotifyChannel::kSms ? h.phone : h.email;
    if (to.empty()) continue;
    auto tpl = template_of(event, channel);
    if (!tpl.is_ok()) return tpl.status();
    if (Status s = store_
                       .query("INSERT INTO notifications(at_us, event, channel, recipient, "
                              "card_serial, body, state, attempts, error) "
                              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, '')")
                       .bind(1, calendar_.now_us())
                       .bind(2, static_cast<std::int64_t>(event))
                       .bind(3, static_cast<std::int64_t>(channel))
                       .bind(4, to)
                       .bind_blob(5, card)
                       .bind(6, render(*tpl, values))
                       .run();
        !s.is_ok()) {
      return s;
    }
  }
  return Status::ok();
}

Status Notifier::on_issue(const Serial8& card) {
  auto h = holder_of(card);
  if (!h.is_ok()) return h.status();
  if (!*h) return Status::ok();
  return queue(NotifyEvent::kIssue, card, **h, {});
}

Status Notifier::on_recharge(const Serial8& card, std::int64_t amount_fen,
                             std::int64_t balance_fen) {
  auto h = holder_of(card);
  if (!h.is_ok()) return h.status();
  if (!*h) return Status::ok();
  return queue(NotifyEvent::kRecharge, card, **h,
               {{"amount", yuan(amount_fen)}, {"balance", yuan(balance_fen)}});
}

Status Notifier::on_purchase(const SwipeFacts& f) {
  const std::int64_t after = f.card.balance_fen - f.amount_fen;
  const MerchantParams* m =
      merchants_ != nullptr ? merchants_->find(f.terminal.operator_id) : nullptr;
  const bool tell =
      m != nullptr && (m->kind != MerchantKind::kTransit || options_.notify_transit_purchases);
  const bool low =
      f.card.balance_fen >= options_.low_balance_fen && after < options_.low_balance_fen;
  // Most swipes are rides with nothing to say: decided before any query, for ingest's speed.
  if (!tell && !low) return Status::ok();
  auto h = holder_of(f.card.serial);
  if (!h.is_ok()) return h.status();
  if (!*h) return Status::ok();
  if (tell) {
    std::int64_t pts = 0;
    if (merchants_ != nullptr) {
      auto p = merchants_->points(f.card.serial);
      if (!p.is_ok()) return p.status();
      pts = p->points;
    }
    if (Status s = queue(NotifyEvent::kPurchase, f.card.serial, **h,
                         {{"amount", yuan(f.amount_fen)},
                          {"balance", yuan(after)},
                          {"merchant", m->name},
                          {"points", std::to_string(pts)}});
        !s.is_ok()) {
      return s;
    }
  }
  if (low) return queue(NotifyEvent::kLowBalance, f.card.serial, **h, {{"balance", yuan(after)}});
  return Status::ok();
}

Result<std::int64_t> Notifier::check_expiry() {
  const int today = calendar_.today_yyyymmdd();
  // Day arithmetic on the calendar's own second count keeps this exact across months.
  const protocol::DateTime7 horizon = protocol::datetime_from_epoch2000(
      calendar_.now_epoch2000_s() + std::int64_t{options_.expiry_notice_days} * 86'400);
  const int last = Calendar::yyyymmdd(horizon);
  auto txn = store_.begin();
  if (!txn.is_ok()) return txn.status();
  std::vector<Serial8> due;
  {
    auto q = store_.query(
        "SELECT x.serial FROM card_ext x JOIN cards c ON c.serial = x.serial "
        "WHERE x.holder_id IS NOT NULL AND x.expiry_notified = 0 AND c.status = 0 "
        "AND c.valid_to BETWEEN ?1 AND ?2 ORDER BY x.serial LIMIT ?3");
    q.bind(1, std::int64_t{today})
        .bind(2, std::int64_t{last})
        .bind(3, static_cast<std::int64_t>(options_.flush_max));
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      Serial8 s{};
      if (sql::copy_blob(q.column_blob(0), s)) due.push_back(s);
    }
  }
  for (const Serial8& s : due) {
    auto h = holder_of(s);
    if (!h.is_ok()) return h.status();
    if (*h) {
      if (Status st = queue(NotifyEvent::kExpiry, s, **h, {}); !st.is_ok()) return st;
    }
    if (Status st = store_.query("UPDATE card_ext SET expiry_notified = 1 WHERE serial = ?1")
                        .bind_blob(1, s)
                        .run();
        !st.is_ok()) {
      return st;
    }
  }
  if (Status s = txn->commit(); !s.is_ok()) return s;
  return static_cast<std::int64_t>(due.size());
}

Result<std::int64_t> Notifier::flush() {
  if (store_.in_transaction()) {
    return Status(Errc::kRejected, "flush inside a transaction could send what a rollback undoes");
  }
  std::vector<Notification> queued;
  {
    auto q = store_.query(
        "SELECT id, at_us, event, channel, recipient, card_serial, body, attempts "
        "FROM notifications WHERE state = 0 ORDER BY id LIMIT ?1");
    q.bind(1, static_cast<std::int64_t>(options_.flush_max));
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      Notification n;
      n.id = q.column_int64(0);
      n.at_us = q.column_int64(1);
      n.event = static_cast<NotifyEvent>(q.column_int64(2));
      n.channel = static_cast<NotifyChannel>(q.column_int64(3));
      n.recipient = q.column_text(4);
      Serial8 s{};
      if (!q.column_is_null(5) && sql::copy_blob(q.column_blob(5), s)) n.card = s;
      n.body = q.column_text(6);
      n.attempts = static_cast<int>(q.column_int64(7));
      queued.push_back(std::move(n));
    }
  }
  std::int64_t sent = 0;
  for (const Notification& n : queued) {
    const Status s = gateway_.send(n);
    const int attempts = n.attempts + 1;
    const NotifyState state = s.is_ok()                           ? NotifyState::kSent
                              : attempts >= options_.attempts_max ? NotifyState::kFailed
                                                                  : NotifyState::kQueued;
    if (s.is_ok()) ++sent;
    if (Status u = store_
                       .query("UPDATE notifications SET state = ?2, attempts = ?3, error = ?4 "
                              "WHERE id = ?1")
                       .bind(1, n.id)
                       .bind(2, static_cast<std::int64_t>(state))
                       .bind(3, std::int64_t{attempts})
                       .bind(4, s.is_ok() ? std::string() : s.to_string())
                       .run();
        !u.is_ok()) {
      return u;
    }
  }
  return sent;
}

Result<std::vector<Notification>> Notifier::history(const Session& by,
                                                    const NotificationFilter& f) const {
  if (Status s = users_.require(by, {Role::kAdmin, Role::kFinance}, "notification history");
      !s.is_ok()) {
    return s;
  }
  auto q = store_.query(
      "SELECT id, at_us, event, channel, recipient, card_serial, body, state, attempts, error "
      "FROM notifications WHERE (?1 IS NULL OR card_serial = ?1) AND (?2 = '' OR recipient = ?2) "
      "AND (?3 < 0 OR event = ?3) ORDER BY id DESC LIMIT ?4");
  if (f.card) {
    q.bind_blob(1, *f.card);
  } else {
    q.bind_null(1);
  }
  q.bind(2, f.recipient)
      .bind(3, f.event ? static_cast<std::int64_t>(*f.event) : -1)
      .bind(4, static_cast<std::int64_t>(std::min(f.limit, options_.history_max)));
  std::vector<Notification> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    Notification n;
    n.id = q.column_int64(0);
    n.at_us = q.column_int64(1);
    n.event = static_cast<NotifyEvent>(q.column_int64(2));
    n.channel = static_cast<NotifyChannel>(q.column_int64(3));
    n.recipient = q.column_text(4);
    Serial8 s{};
    if (!q.column_is_null(5) && sql::copy_blob(q.column_blob(5), s)) n.card = s;
    n.body = q.column_text(6);
    n.state = static_cast<NotifyState>(q.column_int64(7));
    n.attempts = static_cast<int>(q.column_int64(8));
    n.error = q.column_text(9);
    out.push_back(std::move(n));
  }
}

Result<std::int64_t> Notifier::queued_count() const {
  return sql::scalar(store_, "SELECT count(*) FROM notifications WHERE state = 0");
}

}  // namespace citycard::backend
