#include "citycard/devices/bus_validator.h"

#include <cassert>
#include <utility>

namespace citycard::devices {

BusValidator::BusValidator(BusValidatorConfig config, Psam& psam, const sim::Clock& clock,
                           sim::Channel& channel)
    : config_(std::move(config)),
      clock_(clock),
      psam_link_(psam),
      core_(psam_link_, channel,
            UploadQueueOptions{config_.queue_records_max, config_.batch_size_max,
                               config_.first_batch_no}),
      last_upload_us_(clock.now_us()) {
  assert(config_.upload_interval_us > 0);
  record_template_.set_operator_id(config_.operator_id);
  record_template_.set_route(config_.route);
  record_template_.set_vehicle(config_.vehicle);
  record_template_.set_device(config_.device_id);
  record_template_.set_fare_full_fen(config_.fare_fen);
}

TapResult BusValidator::tap(CardLink& card) {
  const PurchaseRequest request{config_.fare_fen,
                                calendar_datetime(clock_, config_.calendar_origin_epoch2000_s)};
  return core_.sell(card, request, record_template_);
}

void BusValidator::upload() {
  last_upload_us_ = clock_.now_us();
  core_.upload();
}

void BusValidator::poll() {
  const UploadQueue& q = core_.queue();
  const bool due = clock_.now_us() >= next_upload_at_us();
  const bool full_batch_waiting = !q.pending_batch_no() && q.size() >= config_.batch_size_max;
  if (due || full_batch_waiting) upload();
}

}  // namespace citycard::devices
