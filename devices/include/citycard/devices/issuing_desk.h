// The issuing desk (发卡/售卡网点, issue 5 item 5): a counter terminal where staff issue,
// cancel, recharge, query, refund, replace and report lost cards, against the clearing
// centre over the wire (protocol/wire.proto DeskRequest / DeskReply; the backend's side is
// backend/desk_service.h, the money moves in backend/cards.h).
//
//   sign_in()      the operator (finance or admin user) signs in; the session goes with every
//                  operation until sign_out() or its expiry (then DESK_NOT_SIGNED_IN:
//                  kPermissionDenied)
//   issue()        named or anonymous, card type, deposit, opening value, validity: the backend
//                  issues, the desk personalises a CpuCard from the returned image (the PIN
//                  the holder chose is written here; it never goes to the backend)
//   cancel()       撤销发卡 of an unused card in the field: money back, then its application
//                  is blocked for good (the card is wiped)
//   recharge()     cash at the counter: the RechargePoint of online_load.h, CHANNEL_COUNTER
//   balance()      what the card in the field holds (its own GET BALANCE) beside what the
//                  backend believes, with the card's status; query() the backend's side alone
//   refund()       退卡: reads the card's own balance in the field, the backend pays it back
//                  with the deposit, then the application is blocked for good
//   replace()      换卡/补卡: a new card carrying the balance; the old one, when in the field
//                  (damaged, not lost), is blocked for good
//   report_lost()  挂失 (named cards only) and report_found()
//
// Blocking a collected card needs the desk's PSAM (its maintenance key): without one
// (sam == null) the card is left as it is, on the blacklist anyway. The backend's answer
// comes first: a card the backend refused is never touched; a block that fails (card pulled)
// is reported in `locked`, never undoes the money.
//
// At most once: every changing operation carries the desk's next operation number. When an
// answer is lost (timeout, link down) the desk asks again with the same number, up to
// answer_retries_max times; the backend answers the first result again (`replayed`), so a
// lost answer never issues a second card or pays a refund twice. When every try went
// unanswered, the desk keeps that number for the operation: the same operation asked next
// (the operator pressing again) goes with the same number, so it too is done at most once.
//
// Errors: ErrorReply codes as status_of_error (host_session.h) maps them, with
// DESK_NOT_SIGNED_IN kPermissionDenied and DESK_OP_REUSED kConflict.
//
// Synchronous like OnlineLoadClient: each call sends, then calls `pump` until the answer came.
// Single-threaded. Does not own the channel, the SAM or the card links.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "citycard/devices/card_link.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/online_load.h"
#include "citycard/devices/sam_client.h"
#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/status.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/rng.h"
#include "citycard/sim/transport.h"

namespace citycard::devices {

struct IssuingDeskOptions {
  protocol::TerminalId terminal_id{};
  std::function<void()> pump;            // makes the channel progress one step; required
  std::size_t pump_rounds_max = 10'000;  // per request: then kTimeout
  std::size_t answer_retries_max = 3;    // same operation number again after a lost answer
  std::uint64_t first_op_no = 1;         // a desk restarting continues its numbering
  RechargePointOptions recharge;         // channel CHANNEL_COUNTER
};

struct DeskHolderInfo {
  std::string name;
  std::string id_number;
  std::string phone;
  std::string email;
  bool notify = true;
};

struct DeskIssueSpec {
  protocol::CardType card_type = protocol::CardType::kAdult;
  std::int64_t opening_value_fen = 0;
  std::int64_t deposit_fen = 0;
  int valid_from_yyyymmdd = 0;           // 0: today
  int valid_to_yyyymmdd = 0;             // 0: the issuer's default validity
  std::optional<DeskHolderInfo> holder;  // present: a named card
  protocol::Family family = protocol::Family::kJtt978;
  protocol::crypto::Algorithm algorithm = protocol::crypto::Algorithm::kTripleDes;
  std::string pin;  // 4..12 digits chosen by the holder; empty: the issuer's default
};

// The backend's record of a card (wire DeskCardState).
struct DeskCardRecord {
  protocol::Serial8 serial{};
  std::string card_number;
  std::uint32_t status = 0;  // backend CardStatus (0 active ... 6 replaced)
  std::string status_name;
  std::int64_t balance_fen = 0;  // believed
  std::int64_t deposit_fen = 0;
  bool named = false;
  protocol::CardType card_type = protocol::CardType::kAdult;
  int valid_from_yyyymmdd = 0;
  int valid_to_yyyymmdd = 0;
  std::optional<protocol::Serial8> replaced_by;
  bool blacklisted = false;
  std::uint8_t key_version = 0;
  protocol::crypto::Algorithm algorithm = protocol::crypto::Algorithm::kTripleDes;
};

struct IssuedCard {
  protocol::CardImage image;
  CpuCard card;
  std::optional<DeskCardRecord> old_card;  // replace(): the card it replaced
  bool old_locked = false;                 // replace(): the old card, in the field, blocked
  bool replayed = false;                   // the backend's first answer, sent again
};

struct DeskBalance {
  std::uint32_t card_balance_fen = 0;  // what the card itself says
  DeskCardRecord record;               // what the backend believes
};

struct DeskRefund {
  std::int64_t balance_fen = 0;  // paid back from the purse
  std::int64_t deposit_fen = 0;
  std::int64_t in_flight_fen = 0;  // believed minus the card's figure: purchases to come
  DeskCardRecord card;
  bool locked = false;  // the collected card's application is blocked for good
  bool replayed = false;
  std::int64_t total_fen() const { return balance_fen + deposit_fen; }
};

struct DeskOutcome {
  DeskCardRecord card;
  bool locked = false;  // cancel(): the card's application is blocked for good
  bool replayed = false;
};

class IssuingDesk {
 public:
  // `rng`: forked for each card personalised here (its own challenges). `sam`: the desk's
  // PSAM, opened, or null.
  IssuingDesk(IssuingDeskOptions options, sim::Channel& channel, sim::Rng rng,
              SamClient* sam = nullptr);
  ~IssuingDesk();

  Status sign_in(const std::string& username, const std::string& password);
  Status sign_out();
  bool signed_in() const { return !session_.empty(); }

  Result<IssuedCard> issue(const DeskIssueSpec& spec);
  Result<DeskOutcome> cancel(CardLink& card);
  OnlineLoad recharge(CardLink& card, const protocol::Serial8& serial, const std::string& order_id,
                      std::uint32_t amount_fen, const protocol::DateTime7& datetime);
  Result<DeskBalance> balance(CardLink& card);
  Result<DeskCardRecord> query(const protocol::Serial8& serial);
  Result<DeskRefund> refund(CardLink& card);
  // `old_in_field`: the old card, when it is at the desk (damaged); null for a lost card.
  Result<IssuedCard> replace(const protocol::Serial8& old_serial, CardLink* old_in_field,
                             const std::string& pin = "");
  Result<DeskOutcome> report_lost(const protocol::Serial8& serial);
  Result<DeskOutcome> report_found(const protocol::Serial8& serial);

  // Sends one desk request as it is (terminal and session filled in when empty; op_no as
  // given): for operators' tools and for tests of the backend's refusals.
  Result<citycard::wire::DeskReply> send(citycard::wire::DeskRequest request);
  // The operation number the next changing operation will carry.
  std::uint64_t next_op_no() const { return next_op_no_; }
  std::uint64_t requests() const { return requests_; }
  std::uint64_t answer_retries() const { return answer_retries_; }
  OnlineLoadClient& load_client() { return load_client_; }
  RechargePoint& recharge_point() { return point_; }

 private:
  Result<citycard::wire::DeskReply> call(citycard::wire::DeskRequest request);
  // A changing operation: the next op_no, retried with it while the answer is lost.
  // A change of the card's state (lost, found), answered with the card's record.
  Result<DeskOutcome> card_state_change(citycard::wire::DeskRequest request);
  Result<citycard::wire::DeskReply> change(citycard::wire::DeskRequest request);
  Result<IssuedCard> personalise(const citycard::wire::DeskReply& reply, const std::string& pin);
  // SELECT and GET BALANCE of the card in the field.
  Result<std::pair<protocol::Serial8, std::uint32_t>> read_card(CardLink& card,
                                                                protocol::Family* family);
  bool lock(CardLink& card, const DeskCardRecord& record, protocol::Family family);

  IssuingDeskOptions options_;
  sim::Channel& channel_;
  sim::Rng rng_;
  SamClient* sam_;
  OnlineLoadClient load_client_;
  RechargePoint point_;
  std::string session_;
  // The last changing operation whose every try went unanswered, with its number.
  std::optional<std::pair<std::uint64_t, std::string>> unanswered_;
  std::uint64_t next_op_no_ = 1;
  std::uint64_t next_request_id_ = 1;
  std::uint64_t requests_ = 0;
  std::uint64_t answer_retries_ = 0;
  std::uint64_t cards_personalised_ = 0;
};

}  // namespace citycard::devices
