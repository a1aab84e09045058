// What every terminal kind shares (bus validator, metro gate, POS...): a PSAM in a slot, the
// purchase engine, the store-and-forward upload queue, and the counters of what happened. A
// terminal kind adds its fare policy and the fields of its clearing records.
//
// Single-threaded. Does not own the SAM link or the channel, which must outlive the core.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "citycard/devices/card_link.h"
#include "citycard/devices/purchase.h"
#include "citycard/devices/sam_client.h"
#include "citycard/devices/upload_queue.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/clock.h"
#include "citycard/sim/transport.h"

namespace citycard::devices {

struct TapResult {
  std::optional<Refusal> refusal;      // empty: a sale was made and its record queued
  std::uint16_t sw = 0;                // the status word behind a card or PSAM refusal, if any
  std::string detail;                  // for traces
  bool recovered = false;              // completed an earlier torn purchase; no new debit
  citycard::wire::SwipeRecord record;  // the queued record, when ok()
  std::int64_t duration_us = 0;        // simulated card + PSAM time of the tap

  bool ok() const { return !refusal.has_value(); }
};

struct TerminalCounters {
  std::uint64_t taps = 0;
  std::uint64_t purchases = 0;  // records queued, recovered purchases included
  std::uint64_t recovered = 0;
  std::array<std::uint64_t, kRefusalCount> refusals{};

  std::uint64_t refused(Refusal r) const { return refusals[static_cast<std::size_t>(r)]; }
};

// The clearing record of `purchase`: the transaction fields from the purchase, the rest
// (operator, route, vehicle, device, driver, transfer count, full fare) from `tmpl`.
citycard::wire::SwipeRecord swipe_record(const Purchase& purchase,
                                         const citycard::wire::SwipeRecord& tmpl);

// The calendar time a terminal stamps on a purchase: its clock, counted from the calendar
// time at clock zero (seconds since 2000-01-01 local time), whole seconds.
protocol::DateTime7 calendar_datetime(const sim::Clock& clock,
                                      std::int64_t calendar_origin_epoch2000_s);

class TerminalCore {
 public:
  // Signs on to the PSAM at once; if that fails, each sale tries again (and is refused with
  // kSamError while it keeps failing).
  TerminalCore(CardLink& sam, sim::Channel& channel, UploadQueueOptions queue_options,
               PurchaseOptions purchase_options = {});

  // One tap: refuses with kQueueFull before touching the card when there is no room for the
  // record; otherwise runs the purchase and queues its record, built on `record_template`.
  TapResult sell(CardLink& card, const PurchaseRequest& request,
                 const citycard::wire::SwipeRecord& record_template);
  void upload() { queue_.upload(); }

  const TerminalCounters& counters() const { return counters_; }
  const UploadQueue& queue() const { return queue_; }
  const PurchaseEngine& engine() const { return engine_; }
  PurchaseEngine& engine() { return engine_; }

 private:
  TapResult refuse(TapResult result);

  SamClient sam_;
  PurchaseEngine engine_;
  UploadQueue queue_;
  TerminalCounters counters_;
};

}  // namespace citycard::devices
