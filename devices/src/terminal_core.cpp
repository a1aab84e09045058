#include "citycard/devices/terminal_core.h"

#include <cassert>
#include <utility>

namespace citycard::devices {

namespace wire = protocol::wire;

citycard::wire::SwipeRecord swipe_record(const Purchase& p,
                                         const citycard::wire::SwipeRecord& tmpl) {
  citycard::wire::SwipeRecord r = tmpl;
  r.set_card_serial(wire::field(p.card_serial));
  r.set_card_counter(p.card_counter);
  r.set_balance_before_fen(p.balance_before_fen);
  r.set_amount_fen(p.amount_fen);
  r.set_txn_type(p.type);
  r.set_terminal_id(wire::field(p.terminal));
  r.set_terminal_seq(p.terminal_seq);
  r.set_datetime(wire::field(p.datetime));
  r.set_tac(wire::field(p.tac));
  r.set_key_version(p.key_version);
  r.set_algorithm_id(p.algorithm_id);
  return r;
}

protocol::DateTime7 calendar_datetime(const sim::Clock& clock,
                                      std::int64_t calendar_origin_epoch2000_s) {
  return protocol::datetime_from_epoch2000(calendar_origin_epoch2000_s +
                                           clock.now_us() / 1'000'000);
}

TerminalCore::TerminalCore(CardLink& sam, sim::Channel& channel, UploadQueueOptions queue_options,
                           PurchaseOptions purchase_options)
    : sam_(sam), engine_(sam_, purchase_options), queue_(queue_options, sam_, channel) {
  // A failure here is not final: the first sale signs on again and reports it.
  (void)engine_.open();
}

TapResult TerminalCore::refuse(TapResult result) {
  ++counters_.refusals[static_cast<std::size_t>(*result.refusal)];
  return result;
}

TapResult TerminalCore::sell(CardLink& card, const PurchaseRequest& request,
                             const citycard::wire::SwipeRecord& record_template) {
  ++counters_.taps;
  TapResult result;
  if (queue_.full()) {
    result.refusal = Refusal::kQueueFull;
    result.detail = "upload queue full; no sale until an upload frees room";
    return refuse(std::move(result));
  }
  PurchaseResult purchase = engine_.purchase(card, request);
  result.refusal = purchase.refusal;
  result.sw = purchase.sw;
  result.detail = std::move(purchase.detail);
  result.recovered = purchase.recovered;
  result.duration_us = purchase.duration_us;
  if (!result.ok()) return refuse(std::move(result));

  result.record = swipe_record(purchase.purchase, record_template);
  // Cannot fail: the queue was checked above and nothing else fills it.
  Status queued = queue_.push(result.record);
  assert(queued.is_ok());
  (void)queued;
  ++counters_.purchases;
  if (result.recovered) ++counters_.recovered;
  return result;
}

}  // namespace citycard::devices
