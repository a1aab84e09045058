// Online recharge over the wire (充值 + 圈存), the device side shared by every load terminal:
// the merchant POS (within its merchant's quota), the issuing desk (cash at the counter), the
// home reader (online banking) and the NFC phone (over the air). Wire messages only
// (protocol/wire.proto 40..47); the backend's side is backend/recharge.h.
//
//   place_order()  RechargeOrderRequest -> RechargeOrderReply (CREATED while the bank has not
//                  answered, PAID once the money is ours: a pending load)
//   authorise()    the LoadHost of load.h: LoadAuthRequest (the card's INITIALIZE FOR LOAD
//                  answer) -> LoadAuthReply (MAC2 and the host's date-time for CREDIT FOR LOAD)
//   confirm()      LoadConfirm with the card's TAC -> LoadConfirmReply (LOADED)
//   abort()        LoadConfirm{aborted}: the card refused the credit (not a lost answer)
//   pending()      PendingLoadQuery -> the card's PAID orders, oldest first (补登)
//
// RechargePoint runs the whole thing on a card in the field: order, wait for PAID, the load
// engine's INITIALIZE FOR LOAD / CREDIT FOR LOAD, then the confirmation. A credit whose answer
// was lost is left in doubt (the engine keeps a grey load; the backend settles the doubt by the
// card's online counter at its next INITIALIZE FOR LOAD): the point remembers the order and
// tries it again first at the card's next tap (retry_in_doubt), then any pending loads.
//
// Synchronous: each call sends one request and then calls `pump` until the answer came (a
// virtual-time owner runs its event loop a step; a ZeroMQ owner waits on its socket). Never
// call it from inside an event of the loop that `pump` runs. Errors map to Errc as
// status_of_error (host_session.h) does, with INSUFFICIENT_FUNDS kInsufficientFunds, BAD_MAC
// kBadMac, CONFLICT kConflict, NOT_FOUND kNotFound.
//
// Single-threaded. Does not own the channel or the card link.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "citycard/devices/load.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/status.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/transport.h"

namespace citycard::devices {

struct OnlineLoadOptions {
  protocol::TerminalId terminal_id{};
  std::function<void()> pump;            // makes the channel progress one step; required
  std::size_t pump_rounds_max = 10'000;  // per request: then kTimeout
};

struct OrderStatus {
  std::string order_id;
  citycard::wire::OrderState state = citycard::wire::ORDER_CREATED;
  std::int64_t amount_fen = 0;
  std::string failure;
};

class OnlineLoadClient final : public LoadHost {
 public:
  OnlineLoadClient(OnlineLoadOptions options, sim::Channel& channel);
  ~OnlineLoadClient() override;

  Result<OrderStatus> place_order(const std::string& order_id, citycard::wire::Channel channel,
                                  const protocol::Serial8& card, std::int64_t amount_fen,
                                  bool to_account = false, const std::string& voucher = "");
  Result<std::vector<citycard::wire::PendingLoad>> pending(const protocol::Serial8& card);
  // The order authorise() asks for (the load engine does not know order ids).
  void set_order(std::string order_id) { order_id_ = std::move(order_id); }
  Result<LoadApproval> authorise(const LoadAuthorisation& request) override;
  Result<citycard::wire::LoadConfirmReply> confirm(const std::string& order_id,
                                                   const protocol::Mac4& tac);
  Result<citycard::wire::LoadConfirmReply> abort(const std::string& order_id,
                                                 const std::string& reason);
  // Any other request (QR token keys, ...): ErrorReply as a Status, request id checked.
  Result<citycard::wire::Envelope> exchange(citycard::wire::Envelope request) {
    return call(std::move(request));
  }
  // True once authorise() succeeded since the last set_order().
  bool authorised() const { return authorised_; }
  std::uint64_t requests() const { return requests_; }

 private:
  Result<citycard::wire::Envelope> call(citycard::wire::Envelope request);

  OnlineLoadOptions options_;
  sim::Channel& channel_;
  std::string order_id_;
  bool authorised_ = false;
  std::uint64_t next_request_id_ = 1;
  std::uint64_t requests_ = 0;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

// One order's load onto the card in the field.
struct OnlineLoad {
  std::string order_id;
  Status status;      // ok: LOADED; otherwise why not (the order may be pending)
  LoadResult result;  // the engine's
  std::optional<citycard::wire::LoadConfirmReply> confirmation;
  bool in_doubt = false;  // the credit's answer was lost: retried at the next tap
  bool ok() const { return status.is_ok(); }
};

struct RechargePointOptions {
  citycard::wire::Channel channel = citycard::wire::CHANNEL_COUNTER;
  std::size_t wait_paid_rounds_max = 1'000;  // re-asks while the bank has not answered
  LoadOptions load;
};

class RechargePoint {
 public:
  RechargePoint(RechargePointOptions options, OnlineLoadClient& client,
                const protocol::TerminalId& terminal);

  // Places the order (idempotent by id), waits until PAID, loads it and confirms. A refused
  // order (quota exhausted: kInsufficientFunds; card blocked or over the limit: kRejected;
  // the bank declined: kRejected with the failure) loads nothing.
  OnlineLoad recharge(CardLink& card, const protocol::Serial8& serial, const std::string& order_id,
                      std::uint32_t amount_fen, const protocol::DateTime7& datetime,
                      std::optional<std::string> pin = std::nullopt);
  // Loads a PAID (or in-doubt) order already placed.
  OnlineLoad load_order(CardLink& card, const std::string& order_id, std::uint32_t amount_fen,
                        const protocol::DateTime7& datetime,
                        std::optional<std::string> pin = std::nullopt);
  // 补登: first an order left in doubt here, then every pending load of the card, oldest first.
  std::vector<OnlineLoad> complete_pending(CardLink& card, const protocol::Serial8& serial,
                                           const protocol::DateTime7& datetime);

  struct Doubt {
    std::string order_id;
    std::uint32_t amount_fen = 0;
  };
  // Orders whose credit answer was lost here, oldest first.
  const std::vector<Doubt>& in_doubt() const { return in_doubt_; }
  LoadEngine& engine() { return engine_; }

 private:
  RechargePointOptions options_;
  OnlineLoadClient& client_;
  LoadEngine engine_;
  std::vector<Doubt> in_doubt_;
};

}  // namespace citycard::devices
