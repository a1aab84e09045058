#include "citycard/hil/conformance.h"

#include "citycard/devices/purchase.h"
#include "citycard/devices/sam_client.h"
#include "citycard/devices/terminal_core.h"
#include "citycard/hil/pn532_control.h"

namespace citycard::hil {

Result<std::unique_ptr<ConformanceBench>> ConformanceBench::open(
    const ConformanceOptions& options) {
  std::unique_ptr<ConformanceBench> b(new ConformanceBench());
  backend::BackendOptions bo;
  bo.key_seed = options.key_seed;
  auto backend = backend::Backend::open(options.db_path, bo, b->clock_);
  if (!backend) return backend.status();
  b->backend_ = std::move(backend).value();
  backend::TerminalParams tp;
  tp.operator_id = options.operator_id;
  tp.route = "route-1";
  tp.vehicle = "bus-0001";
  tp.device_id = "terminal-under-test";
  auto psam = b->backend_->register_terminal(tp);
  if (!psam) return psam.status();
  b->psam_image_ = *psam;
  b->terminal_id_ = psam->terminal_id;
  // Backend::register_terminal leaves the PSAM's maintenance master (MAMK) empty; a terminal
  // that locks blacklisted cards needs it, so the bench puts the issuer's in.
  auto issuer = b->backend_->keys().issuer(psam->key_version);
  if (!issuer) return issuer.status();
  b->psam_image_.maintenance_master = issuer->maintenance;
  backend::TerminalParams other = tp;
  other.vehicle = "bus-0002";
  other.device_id = "other-terminal";
  auto other_psam = b->backend_->register_terminal(other);
  if (!other_psam) return other_psam.status();
  b->other_psam_image_ = *other_psam;

  BridgeHostOptions ho;
  ho.welcome.set_operator_id(tp.operator_id);
  ho.welcome.set_route(tp.route);
  ho.welcome.set_vehicle(tp.vehicle);
  ho.welcome.set_device_id(tp.device_id);
  auto host = BridgeHost::start(options.endpoint, ho);
  if (!host) return host.status();
  b->host_ = std::move(host).value();
  b->host_->set_psam(std::make_shared<devices::Psam>(b->psam_image_));
  b->host_->set_backend(&b->backend_->service());
  b->host_->set_now(b->now_epoch2000_s());
  return b;
}

ConformanceBench::~ConformanceBench() {
  host_.reset();
}

Result<HarnessCard> ConformanceBench::issue_card(const backend::CardParams& params) {
  Result<protocol::CardImage> image(Errc::kInternal, "not issued");
  host_->with_lock([&] { image = backend_->issue_card(params); });
  if (!image) return image.status();
  HarnessCard c;
  c.model = std::make_shared<devices::CpuCard>(*image, sim::Rng(++cards_).fork("card"));
  c.uid = demo_uid(cards_);
  c.serial = image->serial;
  return c;
}

std::int64_t ConformanceBench::now_epoch2000_s() const {
  return backend_->options().clock_origin_epoch2000_s + clock_.now_us() / 1'000'000;
}

void ConformanceBench::advance_s(std::int64_t seconds) {
  clock_.advance_us(seconds * 1'000'000);
  host_->set_now(now_epoch2000_s());
}

Status ConformanceBench::ride_elsewhere(HarnessCard& card, std::uint32_t amount_fen) {
  Status result;
  host_->with_lock([&] {
    devices::Psam psam(other_psam_image_);
    devices::DirectLink psam_link(psam);
    devices::SamClient sam(psam_link);
    devices::PurchaseEngine engine(sam);
    devices::DirectLink link(*card.model);
    devices::PurchaseRequest req{amount_fen, protocol::datetime_from_epoch2000(now_epoch2000_s())};
    devices::PurchaseResult r = engine.purchase(link, req);
    if (!r.ok()) {
      result = Status(Errc::kRejected, "ride elsewhere: " + r.detail);
      return;
    }
    // The other terminal uploads its record, so the books follow the card.
    citycard::wire::UploadBatch batch;
    batch.set_terminal_id(
        std::string(other_psam_image_.terminal_id.begin(), other_psam_image_.terminal_id.end()));
    batch.set_batch_no(++cards_ + 1'000'000);
    citycard::wire::SwipeRecord tmpl;
    tmpl.set_operator_id("bus-co-1");
    tmpl.set_device("other-terminal");
    *batch.add_records() = devices::swipe_record(r.purchase, tmpl);
    batch.set_record_count(1);
    batch.set_total_amount_fen(amount_fen);
    auto mac = sam.general_mac(protocol::wire::batch_mac_input(batch));
    if (!mac) {
      result = mac.status();
      return;
    }
    batch.set_batch_mac(protocol::wire::field(*mac));
    backend_->upload(batch);
  });
  return result;
}

std::uint32_t ConformanceBench::balance_fen(const HarnessCard& card) {
  std::uint32_t b = 0;
  host_->with_lock([&] { b = card.model->balance_fen(); });
  return b;
}

bool ConformanceBench::blocked(const HarnessCard& card) {
  bool b = false;
  host_->with_lock([&] { b = card.model->lock() != devices::CpuCard::Lock::kNone; });
  return b;
}

Result<std::int64_t> ConformanceBench::backend_balance_fen(const HarnessCard& card) {
  Result<std::int64_t> out(Errc::kInternal, "not read");
  host_->with_lock([&] {
    auto rec = backend_->issuance().card(card.serial);
    out = rec ? Result<std::int64_t>(rec->balance_fen) : Result<std::int64_t>(rec.status());
  });
  return out;
}

Status ConformanceBench::check_conservation() {
  Status s;
  host_->with_lock([&] { s = backend_->check_conservation(); });
  return s;
}

}  // namespace citycard::hil
