// A bus validator with a flat fare: the first terminal kind. A card tapped on it pays the fare
// through the purchase engine; each sale becomes a clearing record carrying the bus's operator,
// route, vehicle and device id, kept in the store-and-forward queue and uploaded in signed
// batches over the channel.
//
// The owner drives it: tap() for each card presented, and poll() (or upload()) from its event
// loop; the validator never schedules anything itself and reads time only from the clock.
// Single-threaded. Does not own the PSAM, the clock or the channel, which must outlive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "citycard/devices/card_link.h"
#include "citycard/devices/psam.h"
#include "citycard/devices/terminal_core.h"
#include "citycard/devices/upload_queue.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/clock.h"
#include "citycard/sim/transport.h"

namespace citycard::devices {

struct BusValidatorConfig {
  std::string device_id;
  std::string operator_id;
  std::string route;
  std::string vehicle;
  std::uint32_t fare_fen = 200;
  // Calendar time at clock zero, seconds since 2000-01-01 local time (the card's calendar).
  std::int64_t calendar_origin_epoch2000_s = 0;
  std::size_t queue_records_max = 10'000;
  std::size_t batch_size_max = 100;  // records per upload batch
  // How often poll() tries an upload (and re-sends a batch that was not acknowledged).
  std::int64_t upload_interval_us = 60'000'000;
  std::uint64_t first_batch_no = 1;  // restored from storage after a restart
};

class BusValidator {
 public:
  BusValidator(BusValidatorConfig config, Psam& psam, const sim::Clock& clock,
               sim::Channel& channel);

  // Charges the flat fare to the card in the field.
  TapResult tap(CardLink& card);
  // Sends a batch now if none is in flight (see UploadQueue::upload).
  void upload();
  // Uploads when upload_interval_us has passed since the last attempt, or at once when a full
  // batch is waiting and nothing is pending. Retries wait for the interval, so a link that is
  // down is not hammered.
  void poll();
  std::int64_t next_upload_at_us() const { return last_upload_us_ + config_.upload_interval_us; }
  // Every later sale consults `listed` (e.g. a BlacklistCache's predicate); a listed card is
  // refused (and locked, per PurchaseOptions).
  void set_blacklist(PurchaseEngine::Blacklist listed) {
    core_.engine().set_blacklist(std::move(listed));
  }
  // A new flat fare (a fare table pulled from the backend) for later sales.
  void set_fare_fen(std::uint32_t fare_fen) {
    config_.fare_fen = fare_fen;
    record_template_.set_fare_full_fen(fare_fen);
  }

  const BusValidatorConfig& config() const { return config_; }
  const TerminalCounters& counters() const { return core_.counters(); }
  const UploadCounters& upload_counters() const { return core_.queue().counters(); }
  std::size_t queue_length() const { return core_.queue().size(); }
  const UploadQueue& queue() const { return core_.queue(); }
  const PurchaseEngine& engine() const { return core_.engine(); }

 private:
  BusValidatorConfig config_;
  const sim::Clock& clock_;
  DirectLink psam_link_;
  TerminalCore core_;
  citycard::wire::SwipeRecord record_template_;
  std::int64_t last_upload_us_ = 0;
};

}  // namespace citycard::devices
