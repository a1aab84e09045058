#include "citycard/scenarios/world.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <cstdio>

#include "citycard/devices/fare_policy.h"
#include "citycard/devices/purchase.h"
#include "citycard/backend/server.h"
#include "citycard/protocol/wire.h"

namespace citycard::scenarios {

Status CityConfig::validate() const {
  auto bad = [](const std::string& m) { return Status(Errc::kInvalidArgument, m); };
  if (cards < 1 || cards > kCardsMax) {
    return bad("cards.count must be 1.." + std::to_string(kCardsMax));
  }
  if (balance_fen_min < 0 || balance_fen_max < balance_fen_min) {
    return bad("cards.balance_fen needs 0 <= min <= max");
  }
  if (routes < 1 || buses_per_route < 1 || routes * buses_per_route > kBusesMax) {
    return bad("routes.count and routes.buses_per_route must be >= 1, at most " +
               std::to_string(kBusesMax) + " buses in all");
  }
  if (fare_fen < 1 || fare_fen > 100'000) return bad("routes.fare_fen must be 1..100000");
  if (operator_id.empty()) return bad("routes.operator must not be empty");
  if (upload_interval_us < 1'000'000) return bad("upload_interval_s must be >= 1");
  if (commit_interval_us < 0 || commit_interval_us > kCommitIntervalMax) {
    return bad("commit_interval_ms must be 0..60000");
  }
  if (commit_interval_us > 0 && commit_interval_us >= network.timeout_us) {
    return bad("commit_interval_ms must be below network.timeout_ms (the terminals would time "
               "out waiting for every answer)");
  }
  if (batch_size_max < 1 || batch_size_max > 10'000) return bad("batch_size must be 1..10000");
  if (network.loss_probability < 0 || network.loss_probability > 1) {
    return bad("network.loss must be a probability in [0, 1]");
  }
  if (taxis < 0 || taxis > kTaxisMax) {
    return bad("taxis.count must be 0.." + std::to_string(kTaxisMax));
  }
  if (taxis > 0 && taxi_operator.empty()) return bad("taxis.operator must not be empty");
  double mix_total = 0;
  for (double w : card_mix) {
    if (!(w >= 0 && w <= 1e9)) return bad("cards.mix shares must be numbers >= 0");
    mix_total += w;
  }
  if (!(mix_total > 0)) return bad("cards.mix needs a share above zero");
  for (std::int64_t bp : card_discount_bp) {
    if (bp < 0 || bp > 9'999) {
      return bad("cards.discount_bp must be 0..9999 (a sale charges at least 1 fen)");
    }
  }
  return Status::ok();
}

// A bus: its PSAM, its channel to the backend and its validator.
struct World::Bus {
  std::unique_ptr<sim::DriftingClock> clock;  // the validator's own clock, which may drift
  std::unique_ptr<devices::Psam> psam;
  std::unique_ptr<sim::Channel> channel;
  std::unique_ptr<devices::BusValidator> validator;
  devices::BlacklistCache blacklist;
  std::uint64_t params_version = 0;
  bool syncing = false;  // a blacklist/parameter pull is under way
};

// A taxi: PSAM and link (hardware, survive a power loss), its disk (durable), and the module
// built on them (volatile: rebuilt from the disk at power-on).
struct World::Taxi {
  std::string plate;
  std::unique_ptr<devices::Psam> psam;
  std::unique_ptr<sim::Channel> channel;
  std::shared_ptr<devices::MemoryDisk> disk = std::make_shared<devices::MemoryDisk>();
  std::unique_ptr<devices::MemoryLogStorage> storage;
  devices::TaxiModuleConfig config;
  std::unique_ptr<devices::TaxiModule> module;
  devices::UploadCounters past;  // counters of the module's earlier lives
};

void World::power_on_taxi(Taxi& t) {
  t.module.reset();
  t.storage = std::make_unique<devices::MemoryLogStorage>(t.disk);
  t.module =
      std::make_unique<devices::TaxiModule>(t.config, *t.psam, loop_, *t.channel, *t.storage);
}

// Wraps a bus's channel so every acknowledgement lands in the trace; the validator sees the
// reply unchanged.
class World::TracingChannel final : public sim::Channel {
 public:
  TracingChannel(std::unique_ptr<sim::Channel> inner, World& world, std::string terminal)
      : inner_(std::move(inner)), world_(world), terminal_(std::move(terminal)) {}

  void request(Bytes frame, ReplyFn on_reply) override {
    auto sent = protocol::wire::decode(frame);
    if (world_.defect("corrupt_tac") && sent && sent->has_upload() &&
        sent->upload().records_size() > 0) {
      std::string tac = sent->upload().records(0).tac();
      if (!tac.empty()) tac[0] = static_cast<char>(tac[0] ^ 0x01);
      sent->mutable_upload()->mutable_records(0)->set_tac(tac);
      frame = protocol::wire::encode(*sent);
    }
    std::optional<citycard::wire::Envelope> upload;
    if (sent && sent->has_upload()) upload = std::move(*sent);
    inner_->request(std::move(frame), [this, upload = std::move(upload),
                                       on_reply = std::move(on_reply)](Result<Bytes> r) {
      if (!r.is_ok() && upload && world_.defect("ack_on_failure")) {
        // The defect: pretend the backend took the batch.
        citycard::wire::Envelope fake;
        fake.set_request_id(upload->request_id());
        auto* ack = fake.mutable_upload_ack();
        ack->set_batch_no(upload->upload().batch_no());
        ack->set_accepted(upload->upload().record_count());
        r = protocol::wire::encode(fake);
      }
      if (!r.is_ok()) {
        if (upload) {
          world_.trace_.event(world_.loop_.now_us(), "upload_failed",
                              {{"terminal", terminal_}, {"why", r.status().to_string()}});
        }
      } else if (auto env = protocol::wire::decode(*r); env && env->has_upload_ack()) {
        const auto& ack = env->upload_ack();
        world_.trace_.event(world_.loop_.now_us(), "upload_ack",
                            {{"terminal", terminal_},
                             {"batch_no", ack.batch_no()},
                             {"accepted", ack.accepted()},
                             {"duplicates", ack.duplicates()},
                             {"rejected", ack.rejected()},
                             {"batch_duplicate", ack.batch_duplicate()}});
      }
      on_reply(std::move(r));
    });
  }

 private:
  std::unique_ptr<sim::Channel> inner_;
  World& world_;
  std::string terminal_;
};

// Group commit in the embedded backend (CityConfig::commit_interval_us): requests are handled
// inside one open transaction (each request's own transaction is a savepoint in it) and their
// answers wait for its commit: no answer leaves before what it acknowledges is in the file, so
// a crash between handling and commit loses only unanswered requests. One per World, shared
// by every terminal's endpoint.
class World::GroupCommit {
 public:
  using DeferredReply = sim::RequestHandler::DeferredReply;
  explicit GroupCommit(World& world) : world_(world) {}

  void run(const std::function<Bytes()>& handle, DeferredReply reply) {
    const std::int64_t interval = world_.config_.commit_interval_us;
    if (interval <= 0) return reply(handle());
    if (!group_) {
      auto tx = world_.backend_->store().begin();
      if (!tx) return reply(handle());  // no group: this request commits on its own
      group_.emplace(std::move(tx).value());
      const std::uint64_t generation = ++generation_;
      world_.loop_.schedule_after(interval, [this, generation] {
        if (generation == generation_) commit(true);
      });
    }
    waiting_.emplace_back(handle(), std::move(reply));
    if (waiting_.size() >= CityConfig::kCommitGroupMax) commit(true);
  }

  // Commits the open group and, if `answer`, sends its answers. A failed commit answers none
  // (nothing of them is stored; the clients time out and retry).
  void commit(bool answer) {
    if (!group_) return;
    Status s = group_->commit();
    group_.reset();
    ++generation_;
    auto waiting = std::move(waiting_);
    waiting_.clear();
    if (!s.is_ok()) {
      world_.trace_.event(world_.loop_.now_us(), "backend_commit_failed",
                          {{"requests", waiting.size()}, {"error", s.message()}});
      return;
    }
    ++world_.stats_.commit_groups;
    world_.stats_.grouped_requests += waiting.size();
    if (!answer) return;
    for (auto& [bytes, reply] : waiting) reply(std::move(bytes));
  }

  // The backend process died: the open transaction dies with it, unanswered.
  void lose() {
    if (!group_) return;
    group_->rollback();
    group_.reset();
    ++generation_;
    waiting_.clear();
    ++world_.stats_.groups_lost;
  }

 private:
  World& world_;
  std::optional<backend::Store::Transaction> group_;
  std::vector<std::pair<Bytes, DeferredReply>> waiting_;
  std::uint64_t generation_ = 0;  // a commit timer of an earlier group does nothing
};

// The network's view of the backend for one terminal: the service while the backend is up,
// silence while it is down (a crashed server answers nothing; clients time out). With
// certificates, each request first passes the check the ZeroMQ server makes (server.h): the
// certificate the terminal connected with (its holder, as CurveDirectory::admit named it at
// the handshake) must still be good; else ErrorReply UNAUTHENTICATED. Answers go through the
// World's group commit.
class World::Endpoint final : public sim::RequestHandler {
 public:
  Endpoint(World& world, std::string name, std::string terminal_id)
      : name(std::move(name)), terminal_id(std::move(terminal_id)), world_(world) {}

  Bytes handle(ByteView request) override {
    if (!world_.backend_up_) return {};
    if (world_.ca_ && !world_.defect("ignore_revocation")) {
      Status s = holder.empty() ? Status(Errc::kRejected, "no certificate")
                                : world_.ca_->directory()->still_valid(
                                      holder, world_.ca_->now_unix_s());
      if (!s) return refuse(request, s);
    }
    return world_.backend_->service().handle(request);
  }

  void handle_deferred(ByteView request, DeferredReply reply) override {
    if (!world_.backend_up_ || !world_.group_commit_) return reply(handle(request));
    world_.group_commit_->run([&] { return handle(request); }, std::move(reply));
  }

  const std::string name;         // vehicle or plate
  const std::string terminal_id;  // 12 hex digits: the certificate's subject id
  std::string holder;             // "terminal:<id>#<serial>" (empty: none)
  std::string serial;

 private:
  // The refusal, counted and traced. The reason names the terminal, not the serial: serials
  // are random and the trace must not depend on them.
  Bytes refuse(ByteView request, const Status& why) {
    const std::string& m = why.message();
    std::string reason = "the certificate of terminal " + name + " (" + terminal_id + ") ";
    if (m.find("revoked") != std::string::npos) {
      reason += "has been revoked";
    } else if (m.find("expired") != std::string::npos) {
      reason += "has expired";
    } else {
      reason = "terminal " + name + " (" + terminal_id + ") has no valid certificate";
    }
    const bool upload = backend::peek_frame(request).body_field == kUploadField;
    ++world_.stats_.refused_requests;
    if (upload) ++world_.stats_.refused_uploads;
    world_.trace_.event(world_.loop_.now_us(), "request_refused",
                        {{"terminal", name}, {"upload", upload}, {"why", reason}});
    return backend::refusal_reply(request, sim::Refusal::kPeerNotAllowed, reason);
  }

  static constexpr int kUploadField = 10;  // Envelope.upload (backend::FramePeek)
  World& world_;
};

World::World(std::uint64_t seed, reports::TraceWriter& trace, std::string db_path)
    : seed_(seed),
      trace_(trace),
      db_path_(std::move(db_path)),
      rng_(seed),
      demand_rng_(rng_.fork("demand")),
      tear_rng_(rng_.fork("tear")) {}

World::~World() {
  // A clean end: what the backend handled is committed (nobody is left to answer).
  if (group_commit_ && backend_up_) group_commit_->commit(false);
}

void World::commit_pending() {
  if (group_commit_ && backend_up_) group_commit_->commit(true);
}

Status World::build(const CityConfig& config) {
  if (built()) return Status(Errc::kInvalidArgument, "city{} can be called only once");
  if (Status s = config.validate(); !s) return s;
  config_ = config;
  for (std::int64_t bp : config.card_discount_bp) discounts_on_ |= bp > 0;

  if (Status s = open_backend(); !s) return s;
  group_commit_ = std::make_unique<GroupCommit>(*this);
  faults_.network = config.network;
  network_ = std::make_unique<sim::SimNetwork>(loop_, rng_.fork("network"), config.network);

  // Issue every card and register every bus in one transaction: one commit, not thousands.
  auto tx = backend_->store().begin();
  if (!tx) return tx.status();
  sim::Rng balances = rng_.fork("balances");
  sim::Rng types = rng_.fork("card-types");
  double mix_total = 0;
  for (double w : config.card_mix) mix_total += w;
  cards_.reserve(static_cast<std::size_t>(config.cards));
  for (std::int64_t i = 0; i < config.cards; ++i) {
    backend::CardParams p;
    p.opening_balance_fen = balances.uniform_range(config.balance_fen_min, config.balance_fen_max);
    // The card's type by the mix's shares; an all-adult city draws nothing (same seeds, same
    // cards as before the mix existed).
    std::size_t type = 0;
    if (config.card_mix[0] < mix_total) {
      double u = types.uniform01() * mix_total;
      type = config.card_mix.size() - 1;
      for (std::size_t t = 0; t < config.card_mix.size(); ++t) {
        if (u < config.card_mix[t]) {
          type = t;
          break;
        }
        u -= config.card_mix[t];
      }
      while (config.card_mix[type] <= 0) --type;  // rounding at the top end
    }
    p.card_type = static_cast<protocol::CardType>(type);
    card_types_.push_back(static_cast<std::uint8_t>(type));
    ++stats_.cards_by_type[type];
    auto image = backend_->issue_card(p);
    if (!image) return image.status();
    cards_.emplace_back(*image, rng_.fork("card-" + std::to_string(i)));
    opening_fen_.push_back(p.opening_balance_fen);
    recorded_fen_.push_back(0);
  }
  for (std::int64_t r = 0; r < config.routes; ++r) {
    const std::string route = "R" + std::to_string(r + 1);
    for (std::int64_t b = 0; b < config.buses_per_route; ++b) {
      const std::string vehicle = route + "-B" + std::to_string(b + 1);
      backend::TerminalParams tp;
      tp.operator_id = config.operator_id;
      tp.route = route;
      tp.vehicle = vehicle;
      tp.device_id = "val-" + vehicle;
      auto psam_image = backend_->register_terminal(tp);
      if (!psam_image) return psam_image.status();
      auto bus = std::make_unique<Bus>();
      bus->clock = std::make_unique<sim::DriftingClock>(loop_);
      bus->psam = std::make_unique<devices::Psam>(*psam_image);
      auto endpoint = connect_terminal(vehicle, *psam_image);
      if (!endpoint) return endpoint.status();
      bus->channel = std::make_unique<TracingChannel>(network_->connect(**endpoint, tp.device_id),
                                                      *this, vehicle);
      devices::BusValidatorConfig vc;
      vc.device_id = tp.device_id;
      vc.operator_id = config.operator_id;
      vc.route = route;
      vc.vehicle = vehicle;
      vc.fare_fen = static_cast<std::uint32_t>(config.fare_fen);
      vc.calendar_origin_epoch2000_s = config.start_epoch2000_s;
      vc.batch_size_max = static_cast<std::size_t>(config.batch_size_max);
      vc.upload_interval_us = config.upload_interval_us;
      bus->validator =
          std::make_unique<devices::BusValidator>(vc, *bus->psam, *bus->clock, *bus->channel);
      bus->validator->set_blacklist(bus->blacklist.predicate());
      buses_.push_back(std::move(bus));
    }
  }
  for (std::int64_t i = 0; i < config.taxis; ++i) {
    auto taxi = std::make_unique<Taxi>();
    taxi->plate = "T" + std::to_string(i + 1);
    backend::TerminalParams tp;
    tp.operator_id = config.taxi_operator;
    tp.vehicle = taxi->plate;
    tp.device_id = "taxi-" + taxi->plate;
    auto psam_image = backend_->register_terminal(tp);
    if (!psam_image) return psam_image.status();
    taxi->psam = std::make_unique<devices::Psam>(*psam_image);
    auto endpoint = connect_terminal(taxi->plate, *psam_image);
    if (!endpoint) return endpoint.status();
    taxi->channel = std::make_unique<TracingChannel>(network_->connect(**endpoint, tp.device_id),
                                                     *this, taxi->plate);
    taxi->config.core.device_id = tp.device_id;
    taxi->config.core.operator_id = config.taxi_operator;
    taxi->config.core.calendar_origin_epoch2000_s = config.start_epoch2000_s;
    taxi->config.core.queue.batch_records_max = static_cast<std::size_t>(config.batch_size_max);
    taxi->config.plate = taxi->plate;
    taxi->config.driver = "D-" + taxi->plate;
    power_on_taxi(*taxi);
    taxis_.push_back(std::move(taxi));
  }
  if (Status s = tx->commit(); !s) return s;
  built_ = true;
  start_yyyymmdd_ = backend_->calendar().today_yyyymmdd();

  // Buses start polling at a random offset within the first interval, so uploads spread out.
  sim::Rng offsets = rng_.fork("upload-offsets");
  for (std::size_t i = 0; i < buses_.size(); ++i) {
    schedule_poll(i, static_cast<std::int64_t>(offsets.uniform(
                         static_cast<std::uint64_t>(config.upload_interval_us))));
  }
  for (std::size_t i = 0; i < taxis_.size(); ++i) {
    schedule_taxi_poll(i, static_cast<std::int64_t>(offsets.uniform(
                              static_cast<std::uint64_t>(config.upload_interval_us))));
  }
  trace_.event(loop_.now_us(), "city",
               {{"cards", config.cards},
                {"taxis", taxis_.size()},
                {"cards_by_type", stats_.cards_by_type},
                {"routes", config.routes},
                {"buses", buses_.size()},
                {"fare_fen", config.fare_fen},
                {"operator", config.operator_id}});
  return Status::ok();
}

void World::schedule_poll(std::size_t bus_index, std::int64_t at_us) {
  loop_.schedule_at(at_us, [this, bus_index] {
    auto& v = *buses_[bus_index]->validator;
    v.poll();
    // When a bus talks to the backend it also asks what changed: blacklist, then parameters.
    if (!buses_[bus_index]->syncing) sync_blacklist(bus_index);
    // Keep polling while the run goes on; run_until() bounds how far the loop runs.
    schedule_poll(bus_index, loop_.now_us() + config_.upload_interval_us);
  });
}

void World::schedule_taxi_poll(std::size_t taxi_index, std::int64_t at_us) {
  loop_.schedule_at(at_us, [this, taxi_index] {
    taxis_[taxi_index]->module->upload();
    schedule_taxi_poll(taxi_index, loop_.now_us() + config_.upload_interval_us);
  });
}

Status World::add_taxi_trips(std::int64_t from_us, std::int64_t to_us, double trips_per_hour) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before taxi_trips{}");
  if (taxis_.empty())
    return Status(Errc::kInvalidArgument, "taxi_trips{} needs city{ taxis = {...} }");
  if (to_us <= from_us)
    return Status(Errc::kInvalidArgument, "taxi trips must end after they start");
  if (from_us < loop_.now_us()) {
    return Status(Errc::kInvalidArgument, "taxi trips cannot start in the past");
  }
  if (!(trips_per_hour > 0) || trips_per_hour > 1e7) {
    return Status(Errc::kInvalidArgument, "taxi_trips.per_hour must be in (0, 1e7]");
  }
  trace_.event(loop_.now_us(), "taxi_trips",
               {{"from_us", from_us}, {"to_us", to_us}, {"per_hour", trips_per_hour}});
  schedule_taxi_arrival(from_us, to_us, 3.6e9 / trips_per_hour);
  return Status::ok();
}

void World::schedule_taxi_arrival(std::int64_t at_us, std::int64_t to_us, double mean_gap_us) {
  const auto gap = static_cast<std::int64_t>(std::llround(demand_rng_.exponential(mean_gap_us)));
  const std::int64_t next = at_us + gap;
  if (next >= to_us) return;
  loop_.schedule_at(next, [this, next, to_us, mean_gap_us] {
    const auto card = static_cast<std::size_t>(demand_rng_.uniform(cards_.size()));
    const auto taxi = static_cast<std::size_t>(demand_rng_.uniform(taxis_.size()));
    taxi_trip(card, taxi);
    schedule_taxi_arrival(next, to_us, mean_gap_us);
  });
}

// The trip is metered as it happens (distance at ~25 km/h, a stretch of waiting in traffic);
// the fare is charged when the rider taps at the end, which is now.
void World::taxi_trip(std::size_t card_index, std::size_t taxi_index) {
  Taxi& t = *taxis_[taxi_index];
  devices::CpuCard& card = cards_[card_index];
  const auto metres = static_cast<std::uint32_t>(demand_rng_.uniform_range(1500, 20'000));
  const auto waiting_s = static_cast<std::uint32_t>(demand_rng_.uniform_range(0, 900));
  const std::uint32_t driving_s = metres * 36 / 250;  // 25 km/h
  const std::int64_t end_s = config_.start_epoch2000_s + loop_.now_us() / 1'000'000;
  devices::TaxiMeter meter;
  meter.start(end_s - driving_s - waiting_s);
  meter.drive(metres, driving_s);
  meter.drive(0, waiting_s);
  devices::DirectLink link(card, apdu_trace(t.plate));
  const devices::SaleResult r = t.module->charge(link, meter);
  card.reset();
  reports::Json ev{{"card", to_hex(card.serial())},
                   {"taxi", t.plate},
                   {"metres", metres},
                   {"fare_fen", meter.fare_fen()},
                   {"ok", r.ok()}};
  if (r.ok()) {
    ++stats_.taxi_trips;
    stats_.taxi_amount_fen += r.record.amount_fen();
    recorded_fen_[card_index] += r.record.amount_fen();
    const std::size_t type = card_types_[card_index];
    ++stats_.swipes_by_type[type];
    stats_.amount_fen_by_type[type] += r.record.amount_fen();
    ev["amount_fen"] = r.record.amount_fen();
  } else {
    ++stats_.taxi_refusals;
    ev["reason"] =
        r.refusal ? devices::refusal_name(*r.refusal) : devices::local_refusal_name(*r.local);
    if (!r.detail.empty()) ev["detail"] = r.detail;
  }
  trace_.event(loop_.now_us(), "taxi", std::move(ev));
}

Status World::power_loss(const std::string& plate, std::int64_t at_us) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before power_loss{}");
  if (at_us < loop_.now_us()) {
    return Status(Errc::kInvalidArgument, "a power loss must be in the future");
  }
  std::size_t index = taxis_.size();
  for (std::size_t i = 0; i < taxis_.size(); ++i) {
    if (taxis_[i]->plate == plate) index = i;
  }
  if (index == taxis_.size()) {
    return Status(Errc::kInvalidArgument, "no taxi '" + plate +
                                              "' (power_loss{} takes a taxi plate, T1..T" +
                                              std::to_string(taxis_.size()) + ")");
  }
  loop_.schedule_at(at_us, [this, index] {
    Taxi& t = *taxis_[index];
    const std::size_t before = t.module->core().queue().size();
    const bool in_flight = t.module->core().queue().in_flight();
    const auto& c = t.module->core().queue().counters();
    t.past.records_accepted += c.records_accepted;
    t.past.records_duplicate += c.records_duplicate;
    t.past.records_rejected += c.records_rejected;
    t.past.batches_acked += c.batches_acked;
    t.past.failures += c.failures;
    t.module.reset();     // RAM is gone; a reply to the batch in flight finds nobody
    t.disk->power_off();  // and what the disk had not synced
    // The defect: a taxi that keeps its log in RAM loses every record it had not uploaded.
    if (defect("taxi_log_in_ram")) t.disk = std::make_shared<devices::MemoryDisk>();
    power_on_taxi(t);
    ++stats_.power_losses;
    const auto& rec = t.module->core().queue().recovery();
    trace_.event(loop_.now_us(), "power_loss",
                 {{"taxi", t.plate},
                  {"queued_before", before},
                  {"in_flight", in_flight},
                  {"queued_after", t.module->core().queue().size()},
                  {"recovery_ok", rec.status.is_ok()}});
  });
  return Status::ok();
}

std::size_t World::taxi_queue_length(std::size_t taxi_index) const {
  return taxi_index < taxis_.size() ? taxis_[taxi_index]->module->core().queue().size() : 0;
}

const std::vector<std::string>& known_defects() {
  static const std::vector<std::string> kDefects{
      "ack_on_failure", "corrupt_tac",     "backend_amnesia", "no_transfers",   "stale_blacklist",
      "stale_fares",    "bank_drops_file", "retap_elsewhere", "taxi_log_in_ram",
      "ignore_revocation"};
  return kDefects;
}

Status World::set_defects(const std::vector<std::string>& defects) {
  for (const auto& d : defects) {
    const auto& k = known_defects();
    if (std::find(k.begin(), k.end(), d) == k.end()) {
      std::string all;
      for (const auto& n : k) all += (all.empty() ? "" : ", ") + n;
      return Status(Errc::kInvalidArgument, "unknown defect '" + d + "' (known: " + all + ")");
    }
  }
  defects_ = defects;
  return Status::ok();
}

bool World::defect(const std::string& name) const {
  return std::find(defects_.begin(), defects_.end(), name) != defects_.end();
}

Status World::open_backend() {
  if (built_ && defect("backend_amnesia")) {
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db_path_ + suffix, ec);
  }
  backend::BackendOptions bo;
  bo.key_seed = seed_;
  bo.clock_origin_epoch2000_s = config_.start_epoch2000_s;
  // Virtual-time runs need the state to survive a crash of the process (kill -9), which WAL
  // with synchronous=OFF gives; fsync per batch would only make the city slower.
  bo.store = backend::StoreOptions::simulation();
  auto opened = backend::Backend::open(db_path_, bo, loop_);
  if (!opened) return opened.status();
  backend_ = std::move(opened).value();
  if (config_.certificates) {
    // The first open creates the PKI; its root key goes offline (here: nowhere). Later opens
    // (a restart after a crash) load it, revocations included, from the database.
    std::string root_key;
    auto ca = backend::CertificateAuthority::open(backend_->store(), backend_->calendar(), {},
                                                  &root_key);
    if (!ca) return ca.status();
    ca_ = std::move(ca).value();
  }
  backend_up_ = true;
  operator_.reset();  // logs in again on the next operator action
  finance_[0].reset();
  finance_[1].reset();
  return Status::ok();
}

Status World::add_phase(std::int64_t from_us, std::int64_t to_us, double swipes_per_hour,
                        const std::vector<double>& curve) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before phase{}");
  if (to_us <= from_us) return Status(Errc::kInvalidArgument, "a phase must end after it starts");
  if (from_us < loop_.now_us()) {
    return Status(Errc::kInvalidArgument, "a phase cannot start in the past");
  }
  if (!(swipes_per_hour > 0) || swipes_per_hour > 1e9) {
    return Status(Errc::kInvalidArgument, "swipes_per_hour must be in (0, 1e9]");
  }
  if (curve.size() > 1000) return Status(Errc::kInvalidArgument, "a curve has at most 1000 points");
  double peak = 0;
  for (double w : curve) {
    if (!(w >= 0)) return Status(Errc::kInvalidArgument, "curve weights must be >= 0");
    peak = std::max(peak, w);
  }
  if (!curve.empty() && peak <= 0) {
    return Status(Errc::kInvalidArgument, "a curve needs a weight above zero");
  }
  trace_.event(loop_.now_us(), "phase",
               {{"from_us", from_us}, {"to_us", to_us}, {"swipes_per_hour", swipes_per_hour},
                {"curve", curve}});
  if (curve.empty()) {
    schedule_arrival(from_us, to_us, 3.6e9 / swipes_per_hour);
    return Status::ok();
  }
  // Piecewise-constant rate: each segment is a Poisson process of its own.
  const std::int64_t n = static_cast<std::int64_t>(curve.size());
  for (std::int64_t i = 0; i < n; ++i) {
    const double rate = swipes_per_hour * curve[static_cast<std::size_t>(i)] / peak;
    if (rate <= 0) continue;
    const std::int64_t a = from_us + (to_us - from_us) * i / n;
    const std::int64_t b = from_us + (to_us - from_us) * (i + 1) / n;
    schedule_arrival(a, b, 3.6e9 / rate);
  }
  return Status::ok();
}

Status World::add_riders(const RiderConfig& r) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before riders{}");
  if (r.riders < 1 || static_cast<std::size_t>(r.riders) > cards_.size()) {
    return Status(Errc::kInvalidArgument, "riders.count must be 1..cards.count");
  }
  if (config_.routes < 2) return Status(Errc::kInvalidArgument, "riders need at least 2 routes");
  if (!(r.transfer_share >= 0 && r.transfer_share <= 1)) {
    return Status(Errc::kInvalidArgument, "riders.transfer_share must be in [0, 1]");
  }
  auto window_ok = [&](std::int64_t a, std::int64_t p, std::int64_t b) {
    return a >= loop_.now_us() && a <= p && p <= b && a < b;
  };
  if (!window_ok(r.morning_from_us, r.morning_peak_us, r.morning_to_us) ||
      (r.evening && !window_ok(r.evening_from_us, r.evening_peak_us, r.evening_to_us))) {
    return Status(Errc::kInvalidArgument,
                  "riders' windows need from <= peak <= to, not in the past");
  }
  sim::Rng rr = rng_.fork("riders");
  // Triangular distribution by inversion of its CDF.
  auto triangular = [&rr](std::int64_t a, std::int64_t c, std::int64_t b) {
    const double u = rr.uniform01(), fa = static_cast<double>(a), fb = static_cast<double>(b),
                 fc = static_cast<double>(c), f = (fc - fa) / (fb - fa);
    const double x = u < f ? fa + std::sqrt(u * (fb - fa) * (fc - fa))
                           : fb - std::sqrt((1 - u) * (fb - fa) * (fb - fc));
    return static_cast<std::int64_t>(x);
  };
  const auto routes = static_cast<std::uint64_t>(config_.routes);
  for (std::int64_t i = 0; i < r.riders; ++i) {
    const auto card = static_cast<std::size_t>(i);
    const auto home = static_cast<std::size_t>(rr.uniform(routes));
    auto work = static_cast<std::size_t>(rr.uniform(routes - 1));
    if (work >= home) ++work;  // a different route
    schedule_trip(card, home, work, triangular(r.morning_from_us, r.morning_peak_us, r.morning_to_us),
                  rr.bernoulli(r.transfer_share));
    if (r.evening) {
      schedule_trip(card, work, home,
                    triangular(r.evening_from_us, r.evening_peak_us, r.evening_to_us),
                    rr.bernoulli(r.transfer_share));
    }
  }
  trace_.event(loop_.now_us(), "riders",
               {{"riders", r.riders}, {"transfer_share", r.transfer_share}});
  return Status::ok();
}

std::size_t World::random_bus_of(std::size_t route) {
  const auto per = static_cast<std::uint64_t>(config_.buses_per_route);
  return route * static_cast<std::size_t>(per) + static_cast<std::size_t>(demand_rng_.uniform(per));
}

// A trip: a tap on a bus of the first route; with a transfer, a second tap on a bus of the
// other route 10 to 25 minutes later. Without one, the rider's route goes all the way.
void World::schedule_trip(std::size_t card, std::size_t from_route, std::size_t to_route,
                          std::int64_t depart_us, bool transfer) {
  loop_.schedule_at(depart_us, [this, card, from_route, to_route, transfer] {
    ++stats_.trips;
    const bool changes = transfer && !defect("no_transfers");
    tap(card, random_bus_of(from_route), changes ? "first" : "direct");
    if (!changes) return;
    const std::int64_t ride_us = demand_rng_.uniform_range(600, 1500) * 1'000'000;
    loop_.schedule_after(ride_us, [this, card, to_route] {
      ++stats_.transfers;
      tap(card, random_bus_of(to_route), "transfer");
    });
  });
}

Status World::set_faults(const FaultConfig& f) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before faults{}");
  const auto& n = f.network;
  for (double p : {n.loss_probability, n.duplicate_probability, n.reorder_probability}) {
    if (!(p >= 0 && p <= 1)) return Status(Errc::kInvalidArgument, "probabilities are in [0, 1]");
  }
  if (!(f.tear_probability >= 0 && f.tear_probability <= 0.5)) {
    return Status(Errc::kInvalidArgument, "tear must be a probability in [0, 0.5]");
  }
  if (f.clock_drift_ppm_stddev < 0 || f.clock_drift_ppm_stddev > 1e5) {
    return Status(Errc::kInvalidArgument, "clock_drift_ppm must be 0..100000");
  }
  if (config_.commit_interval_us > 0 && n.timeout_us <= config_.commit_interval_us) {
    return Status(Errc::kInvalidArgument,
                  "timeout_ms must be above city's commit_interval_ms (" +
                      std::to_string(config_.commit_interval_us / 1000) +
                      "): every answer waits for the backend's group commit");
  }
  faults_ = f;
  network_->set_options(f.network);
  sim::Rng drift = rng_.fork("clock-drift");
  for (auto& b : buses_) b->clock->set_drift_ppm(drift.normal(0, f.clock_drift_ppm_stddev));
  return Status::ok();
}

Status World::add_outage(const std::string& group, std::int64_t from_us, std::int64_t to_us) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before an outage");
  if (to_us <= from_us) return Status(Errc::kInvalidArgument, "an outage must end after it starts");
  network_->add_outage({"val-" + group, from_us, to_us});
  // Taxis are "T1".."Tn": group "T" is every taxi, "T3" one of them.
  if (!taxis_.empty()) network_->add_outage({"taxi-" + group, from_us, to_us});
  trace_.event(loop_.now_us(), "outage",
               {{"group", group}, {"from_us", from_us}, {"to_us", to_us}});
  return Status::ok();
}

Result<World::Endpoint*> World::connect_terminal(const std::string& name,
                                                 const protocol::PsamImage& psam) {
  auto endpoint = std::make_unique<Endpoint>(*this, name, to_hex(psam.terminal_id));
  if (config_.certificates) {
    if (Status s = enrol(*endpoint); !s) return s;
  }
  endpoints_.push_back(std::move(endpoint));
  return endpoints_.back().get();
}

Status World::enrol(Endpoint& endpoint) {
  auto curve = sim::generate_curve_key_pair();
  if (!curve) return curve.status();
  auto key = backend::generate_key_pair();
  if (!key) return key.status();
  backend::CertRequest request;
  request.role = backend::CertRole::kTerminal;
  request.subject_id = endpoint.terminal_id;
  request.public_key_pem = key->public_pem;
  request.curve_key = curve->public_key;
  auto cert = ca_->enrol(request);
  if (!cert) return cert.status();
  // What the server's ZAP handler does at the handshake: the holder its CURVE key names.
  auto holder = ca_->directory()->admit(curve->public_key, ca_->now_unix_s());
  if (!holder) return holder.status();
  endpoint.holder = *holder;
  endpoint.serial = cert->serial_hex;
  return Status::ok();
}

World::Endpoint* World::endpoint_of(const std::string& terminal) const {
  for (const auto& e : endpoints_) {
    if (e->name == terminal) return e.get();
  }
  return nullptr;
}

namespace {
Status certificate_preconditions(bool built, bool certificates, bool up) {
  if (!built) return Status(Errc::kInvalidArgument, "call city{} before certificate actions");
  if (!certificates) {
    return Status(Errc::kInvalidArgument,
                  "terminals have no certificates: city{ certificates = true } gives them some");
  }
  if (!up) return Status(Errc::kUnavailable, "the backend is down");
  return Status::ok();
}

const char* reason_name(backend::RevocationReason r) {
  switch (r) {
    case backend::RevocationReason::kUnspecified: return "unspecified";
    case backend::RevocationReason::kKeyCompromise: return "key_compromise";
    case backend::RevocationReason::kAffiliationChanged: return "affiliation_changed";
    case backend::RevocationReason::kSuperseded: return "superseded";
    case backend::RevocationReason::kCessationOfOperation: return "cessation_of_operation";
  }
  return "?";
}
}  // namespace

Status World::revoke(const std::string& terminal, backend::RevocationReason reason) {
  if (Status s = certificate_preconditions(built_, config_.certificates, backend_up_); !s) {
    return s;
  }
  Endpoint* e = endpoint_of(terminal);
  if (!e) return Status(Errc::kNotFound, "no terminal '" + terminal + "' (a vehicle or plate)");
  if (Status s = ca_->revoke(e->serial, reason); !s) return s;
  ++stats_.revocations;
  trace_.event(loop_.now_us(), "revoke", {{"terminal", terminal}, {"reason", reason_name(reason)}});
  return Status::ok();
}

Status World::recommission(const std::string& terminal) {
  if (Status s = certificate_preconditions(built_, config_.certificates, backend_up_); !s) {
    return s;
  }
  Endpoint* e = endpoint_of(terminal);
  if (!e) return Status(Errc::kNotFound, "no terminal '" + terminal + "' (a vehicle or plate)");
  auto tx = backend_->store().begin();
  if (!tx) return tx.status();
  if (Status s = enrol(*e); !s) return s;
  if (Status s = tx->commit(); !s) return s;
  ++stats_.recommissions;
  trace_.event(loop_.now_us(), "recommission", {{"terminal", terminal}});
  return Status::ok();
}

Result<CertificateView> World::certificate(const std::string& terminal) const {
  if (Status s = certificate_preconditions(built_, config_.certificates, backend_up_); !s) {
    return s;
  }
  const Endpoint* e = endpoint_of(terminal);
  if (!e) return Status(Errc::kNotFound, "no terminal '" + terminal + "' (a vehicle or plate)");
  auto info = ca_->certificate(e->serial);
  if (!info) return info.status();
  CertificateView v;
  v.terminal = terminal;
  v.subject_id = info->subject_id;
  v.serial_hex = info->serial_hex;
  v.revoked = info->revoked;
  v.pem = info->pem;
  auto verified = ca_->verifier()->verify(info->pem, backend::CertRole::kTerminal,
                                          ca_->now_unix_s());
  v.verifies = verified.is_ok();
  if (!verified) v.why = verified.status().message();
  return v;
}

Status World::crash_backend(std::int64_t at_us, std::int64_t down_us) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before a backend crash");
  if (at_us < loop_.now_us() || down_us < 0) {
    return Status(Errc::kInvalidArgument, "a crash must be in the future and last >= 0 s");
  }
  loop_.schedule_at(at_us, [this, down_us] {
    if (!backend_up_) return;
    backend_up_ = false;
    group_commit_->lose();
    ca_.reset();
    backend_.reset();  // everything in memory is gone; what was committed is in the file
    ++stats_.backend_crashes;
    trace_.event(loop_.now_us(), "backend_crash", {{"down_us", down_us}});
    loop_.schedule_after(down_us, [this] {
      Status s = open_backend();
      trace_.event(loop_.now_us(), "backend_restart",
                   {{"ok", s.is_ok()}, {"error", s.is_ok() ? "" : s.message()}});
      if (!s) restart_error_ = s;
    });
  });
  return Status::ok();
}

Status World::at(std::int64_t at_us, std::function<void()> action) {
  if (at_us < loop_.now_us()) return Status(Errc::kInvalidArgument, "at() cannot act in the past");
  loop_.schedule_at(at_us, std::move(action));
  return Status::ok();
}

void World::schedule_arrival(std::int64_t at_us, std::int64_t to_us, double mean_gap_us) {
  const auto gap = static_cast<std::int64_t>(std::llround(demand_rng_.exponential(mean_gap_us)));
  const std::int64_t next = at_us + gap;
  if (next >= to_us) return;
  loop_.schedule_at(next, [this, next, to_us, mean_gap_us] {
    const auto card = static_cast<std::size_t>(demand_rng_.uniform(cards_.size()));
    const auto bus = static_cast<std::size_t>(demand_rng_.uniform(buses_.size()));
    tap(card, bus);
    schedule_arrival(next, to_us, mean_gap_us);
  });
}

// What a discounting validator reads before the sale: the card's type from its holder file.
Result<protocol::CardType> World::read_card_type(devices::CardLink& link) {
  devices::PurchaseResult refusal;
  auto id = devices::identify_card(link, true, true, 0, &refusal);
  if (!id) return id.status();
  auto holder = link.transceive(
      protocol::Command{0x00, 0xB0, 0x80 | protocol::sfi::kHolder, 0x00, {}, std::uint16_t{2}});
  if (!holder) return holder.status();
  if (!holder->ok() || holder->data.size() < 2) {
    return Status(Errc::kRejected, "READ BINARY 0x16 refused");
  }
  return static_cast<protocol::CardType>(holder->data[0] & 0x03);
}

devices::ApduTrace World::apdu_trace(const std::string& terminal) {
  if (!config_.trace_apdus) return {};
  return [this, terminal](const protocol::Command& c, const protocol::Response& r,
                          std::int64_t duration_us) {
    trace_.event(loop_.now_us(), "apdu",
                 {{"terminal", terminal},
                  {"command", to_hex(c.encode())},
                  {"response", to_hex(r.encode())},
                  {"sw", to_hex(Bytes{static_cast<std::uint8_t>(r.sw >> 8),
                                      static_cast<std::uint8_t>(r.sw & 0xFF)})},
                  {"us", duration_us}});
  };
}

TapOutcome World::tap(std::size_t card_index, std::size_t bus_index, const char* leg,
                      int retaps_left) {
  TapOutcome out;
  devices::CpuCard& card = cards_[card_index];
  devices::BusValidator& v = *buses_[bus_index]->validator;
  devices::DirectLink link(card, apdu_trace(v.config().vehicle));
  ++stats_.taps;
  // Card-type discounts: the bus reads the type from the card itself (SELECT, READ BINARY of
  // the holder file 0x16) and charges the discounted fare for this sale. Only when a discount
  // is configured, so a city without one exchanges exactly the APDUs it did before.
  const std::uint32_t base_fare = v.config().fare_fen;
  std::size_t type = 0;
  if (discounts_on_) {
    auto read = read_card_type(link);
    if (read) {
      type = static_cast<std::size_t>(*read);
      v.set_fare_fen(devices::apply_discount_bp(
          base_fare, static_cast<std::uint32_t>(config_.card_discount_bp[type])));
    }
    // An unreadable card: the validator's own tap refuses it with the card's status word.
  } else {
    type = card_types_[card_index];
  }
  struct FareRestore {
    devices::BusValidator& v;
    std::uint32_t fare;
    ~FareRestore() {
      if (v.config().fare_fen != fare) v.set_fare_fen(fare);
    }
  } restore{v, base_fare};
  devices::TapResult r;
  if (faults_.tear_tap > 0 && static_cast<std::int64_t>(stats_.taps) == faults_.tear_tap) {
    devices::TearingLink torn(link);
    torn.tear_at(static_cast<std::uint64_t>(faults_.tear_apdu), faults_.tear_when, 1);
    r = v.tap(torn);
  } else if (faults_.tear_probability > 0) {
    devices::TearingOptions o;
    o.tear_probability = faults_.tear_probability;
    devices::RandomTearingLink torn(link, o, sim::Rng(tear_rng_.next_u64()));
    r = v.tap(torn);
  } else {
    r = v.tap(link);
  }
  card.reset();  // the card leaves the field (power-on recovery of an interrupted write)
  reports::Json ev{{"card", to_hex(card.serial())},
                   {"route", v.config().route},
                   {"vehicle", v.config().vehicle},
                   {"ok", r.ok()}};
  if (leg) ev["leg"] = leg;
  if (r.recovered) {
    ev["recovered"] = true;
    ++stats_.recovered;
  }
  if (r.ok()) {
    recorded_fen_[card_index] += r.record.amount_fen();
    ++stats_.swipes;
    stats_.validator_amount_fen += r.record.amount_fen();
    ++stats_.swipes_by_type[type];
    stats_.amount_fen_by_type[type] += r.record.amount_fen();
    ev["amount_fen"] = r.record.amount_fen();
    if (discounts_on_)
      ev["card_type"] = protocol::card_type_name(static_cast<protocol::CardType>(type));
    ev["counter"] = r.record.card_counter();
    ev["balance_after_fen"] = card.balance_fen();
    out.ok = true;
    out.amount_fen = r.record.amount_fen();
  } else {
    ++stats_.refusals;
    if (*r.refusal == devices::Refusal::kInsufficientBalance) ++stats_.refusals_insufficient;
    if (*r.refusal == devices::Refusal::kBlacklisted) ++stats_.refusals_blacklisted;
    ev["reason"] = devices::refusal_name(*r.refusal);
    out.reason = devices::refusal_name(*r.refusal);
    if (r.sw) ev["sw"] = r.sw;
    if (*r.refusal == devices::Refusal::kTorn) {
      ++stats_.torn;
      // The rider taps again a few seconds later, on the same bus (the one that holds the
      // grey sale and can complete it).
      if (retaps_left > 0) {
        std::size_t again = bus_index;
        if (defect("retap_elsewhere") && buses_.size() > 1) again = (bus_index + 1) % buses_.size();
        loop_.schedule_after(2'000'000, [this, card_index, again, retaps_left] {
          ++stats_.retaps;
          tap(card_index, again, "retap", retaps_left - 1);
        });
      }
    }
  }
  trace_.event(loop_.now_us(), "swipe", std::move(ev));
  return out;
}

// ---- blacklist and parameters: what a bus pulls when it talks to the backend ----

void World::sync_blacklist(std::size_t bus_index) {
  Bus& bus = *buses_[bus_index];
  bus.syncing = true;
  citycard::wire::Envelope env;
  env.set_request_id(++sync_request_id_);
  auto* req = env.mutable_blacklist_request();
  req->set_terminal_id(protocol::wire::field(bus.psam->terminal_id()));
  const std::uint64_t since = bus.blacklist.version();
  req->set_since_version(since);
  bus.channel->request(protocol::wire::encode(env), [this, bus_index, since](Result<Bytes> r) {
    Bus& b = *buses_[bus_index];
    auto env =
        r.is_ok() ? protocol::wire::decode(*r) : Result<citycard::wire::Envelope>(r.status());
    if (!env || !env->has_blacklist_reply()) {
      ++stats_.sync_failures;
      b.syncing = false;  // ask again at the next poll
      return;
    }
    ++stats_.syncs;
    const auto& page = env->blacklist_reply();
    if (!defect("stale_blacklist")) {
      const std::uint64_t before = b.blacklist.version();
      if (Status s = b.blacklist.apply(page, since); !s) {
        trace_.event(loop_.now_us(), "blacklist_refused",
                     {{"vehicle", b.validator->config().vehicle}, {"why", s.to_string()}});
        b.syncing = false;
        return;
      }
      if (b.blacklist.version() != before) {
        trace_.event(loop_.now_us(), "blacklist_applied",
                     {{"vehicle", b.validator->config().vehicle},
                      {"version", b.blacklist.version()},
                      {"size", b.blacklist.size()}});
      }
      if (page.more()) {
        sync_blacklist(bus_index);
        return;
      }
    }
    sync_params(bus_index);
  });
}

void World::sync_params(std::size_t bus_index) {
  Bus& bus = *buses_[bus_index];
  citycard::wire::Envelope env;
  env.set_request_id(++sync_request_id_);
  auto* req = env.mutable_params_request();
  req->set_terminal_id(protocol::wire::field(bus.psam->terminal_id()));
  req->set_since_version(bus.params_version);
  bus.channel->request(protocol::wire::encode(env), [this, bus_index](Result<Bytes> r) {
    Bus& b = *buses_[bus_index];
    b.syncing = false;
    auto env =
        r.is_ok() ? protocol::wire::decode(*r) : Result<citycard::wire::Envelope>(r.status());
    if (!env || !env->has_params_reply()) {
      ++stats_.sync_failures;
      return;
    }
    ++stats_.syncs;
    if (defect("stale_fares")) return;
    const auto& page = env->params_reply();
    auto& v = *b.validator;
    for (const auto& table : page.fares()) {
      // A bus validator charges a flat fare: it takes its route's flat table.
      if (table.table_id() == v.config().route && table.kind() == 0 && table.flat_fen() > 0 &&
          static_cast<std::int64_t>(v.config().fare_fen) != table.flat_fen()) {
        v.set_fare_fen(static_cast<std::uint32_t>(table.flat_fen()));
        trace_.event(loop_.now_us(), "fare_applied",
                     {{"vehicle", v.config().vehicle},
                      {"fare_fen", table.flat_fen()},
                      {"version", page.version()}});
      }
    }
    b.params_version = page.version();
    if (page.more()) {
      b.syncing = true;
      sync_params(bus_index);
    }
  });
}

Status World::ensure_operator() {
  if (!backend_up_) return Status(Errc::kUnavailable, "the backend is down");
  commit_pending();  // an operator's action is done when it is in the file, after all before it
  if (operator_) return Status::ok();
  // The scripted operator: the first admin of the run's fresh database.
  const std::string password = "operator-" + std::to_string(seed_);
  Status b = backend_->users().bootstrap_admin("operator", password);
  if (!b && b.code() != Errc::kRejected) return b;
  auto session = backend_->users().login("operator", password);
  if (!session) return session.status();
  operator_ = *session;
  return Status::ok();
}

Result<std::uint64_t> World::blacklist_card(std::size_t card_index, bool listed) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before blacklist()");
  if (card_index >= cards_.size()) {
    return Status(Errc::kInvalidArgument, "no card " + std::to_string(card_index + 1) +
                                              " (cards are 1.." + std::to_string(cards_.size()) +
                                              ")");
  }
  if (!backend_up_) return Status(Errc::kUnavailable, "the backend is down");
  commit_pending();
  auto& risk = backend_->risk();
  auto tx = backend_->store().begin();
  if (!tx) return tx.status();
  const protocol::Serial8 serial = cards_[card_index].serial();
  Status s = listed ? risk.list_card(serial, "operator (scenario)") : risk.unlist_card(serial);
  if (!s) return s;
  auto version = risk.blacklist_version();
  if (!version) return version.status();
  if (Status c = tx->commit(); !c) return c;
  blacklist_version_ = *version;
  trace_.event(loop_.now_us(), listed ? "blacklist" : "unblacklist",
               {{"card", to_hex(serial)}, {"version", *version}});
  return *version;
}

Result<std::uint64_t> World::publish_flat_fare(const std::string& route, std::int64_t fare_fen) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before fare_table{}");
  bool known = false;
  for (const auto& b : buses_) known |= b->validator->config().route == route;
  if (!known) return Status(Errc::kInvalidArgument, "no route '" + route + "' in the city");
  if (Status s = ensure_operator(); !s) return s;
  citycard::wire::FareTable t;
  t.set_table_id(route);
  t.set_kind(0);
  t.set_flat_fen(fare_fen);
  auto version = backend_->fares().publish_fare_table(*operator_, t);
  if (!version) return version.status();
  params_version_ = *version;
  trace_.event(loop_.now_us(), "fare_table",
               {{"route", route}, {"flat_fen", fare_fen}, {"version", *version}});
  return *version;
}

Result<SettleOutcome> World::settle(std::int64_t fee_bp) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before settle{}");
  if (fee_bp < 0 || fee_bp > 10'000)
    return Status(Errc::kInvalidArgument, "fee_bp must be 0..10000");
  if (Status s = ensure_operator(); !s) return s;
  auto& users = backend_->users();
  for (int i = 0; i < 2; ++i) {
    if (finance_[i]) continue;
    const std::string name = "finance-" + std::to_string(i + 1);
    const std::string password = "finance-" + std::to_string(seed_) + "-" + std::to_string(i);
    Status c = users.create_user(*operator_, {name, password, backend::Role::kFinance, ""});
    if (!c && c.code() != Errc::kDuplicate && c.code() != Errc::kRejected) return c;
    auto session = users.login(name, password);
    if (!session) return session.status();
    finance_[i] = *session;
  }
  auto& merchants = backend_->merchants();
  if (!merchants.find(config_.operator_id)) {
    backend::MerchantParams m;
    m.merchant_id = config_.operator_id;
    m.name = "Bus operator " + config_.operator_id;
    m.kind = backend::MerchantKind::kTransit;
    m.cycle = backend::SettlementCycle::kDaily;
    m.txn_fee_bp = fee_bp;
    m.bank_name = "ICBC";
    m.bank_account = "6222000" + std::to_string(seed_ % 100000);
    m.account_name = config_.operator_id + " Ltd";
    m.start_date = start_yyyymmdd_;
    if (Status c = merchants.create(*operator_, m); !c) return c;
  }
  auto& settlement = backend_->settlement();
  SettleOutcome out;
  auto batch = settlement.prepare(*finance_[0]);
  if (!batch) return batch.status();
  out.batch_id = batch->id;
  out.business_date = batch->business_date;
  out.lines = batch->lines.size();
  out.gross_fen = batch->gross_fen;
  out.fee_fen = batch->fee_fen;
  out.net_fen = batch->net_fen;
  if (batch->lines.empty()) {
    if (Status c = settlement.cancel(*finance_[0], batch->id); !c) return c;
    out.batch_id = 0;
  } else {
    if (Status a = settlement.approve(*finance_[1], batch->id); !a) return a;
    auto file = settlement.write_bank_file(*finance_[0], batch->id);
    if (!file) return file.status();
    out.file_fen = file->total_fen;
    if (!defect("bank_drops_file") && file->lines > 0) {
      auto paid = backend_->bank().execute_payout_file(file->contents);
      if (!paid) return paid.status();
    }
  }
  auto rec = settlement.reconcile_bank(*finance_[0], backend_->calendar().today_yyyymmdd());
  if (!rec) return rec.status();
  out.confirmed_fen = rec->payouts_confirmed_fen;
  out.differences = rec->differences.size();
  if (!rec->differences.empty()) out.first_difference = rec->differences.front().detail;
  if (auto r = merchants.get(*operator_, config_.operator_id); r) {
    out.settled_through = r->settled_through;
  }
  trace_.event(loop_.now_us(), "settlement",
               {{"batch", out.batch_id},
                {"date", out.business_date},
                {"lines", out.lines},
                {"gross_fen", out.gross_fen},
                {"net_fen", out.net_fen},
                {"confirmed_fen", out.confirmed_fen},
                {"differences", out.differences}});
  return out;
}

std::vector<BusView> World::buses() const {
  std::vector<BusView> out;
  out.reserve(buses_.size());
  for (const auto& b : buses_) {
    const auto& c = b->validator->config();
    out.push_back({c.vehicle, c.route, static_cast<std::int64_t>(c.fare_fen),
                   b->blacklist.version(), b->blacklist.size(), b->params_version,
                   b->validator->queue_length(),
                   b->validator->queue().last_failure().is_ok()
                       ? std::string()
                       : b->validator->queue().last_failure().message()});
  }
  return out;
}

Result<TapOutcome> World::tap_card(std::size_t card_index, const std::string& vehicle) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before tap{}");
  if (card_index >= cards_.size()) {
    return Status(Errc::kInvalidArgument, "no card " + std::to_string(card_index + 1) +
                                              " (cards are 1.." + std::to_string(cards_.size()) +
                                              ")");
  }
  for (std::size_t i = 0; i < buses_.size(); ++i) {
    if (buses_[i]->validator->config().vehicle == vehicle) return tap(card_index, i, "by_hand");
  }
  return Status(Errc::kInvalidArgument, "no bus '" + vehicle + "' in the city");
}

Result<std::string> World::replace_card(std::size_t card_index) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before replace_card()");
  if (card_index >= cards_.size()) {
    return Status(Errc::kInvalidArgument,
                  "no card " + std::to_string(card_index + 1) + " (cards are 1.." +
                      std::to_string(cards_.size()) + ")");
  }
  if (Status s = ensure_operator(); !s) return s;
  const protocol::Serial8 old_serial = cards_[card_index].serial();
  const std::int64_t old_balance = cards_[card_index].balance_fen();
  auto image = backend_->cards().replace(*operator_, old_serial);
  if (!image) return image.status();
  ++stats_.replacements;
  cards_[card_index] = devices::CpuCard(
      *image, rng_.fork("replacement-" + std::to_string(card_index) + "-" +
                        std::to_string(stats_.replacements)));
  // The per-card check follows the rider: the new card starts from what the backend moved.
  opening_fen_[card_index] += static_cast<std::int64_t>(image->balance_fen) - old_balance;
  if (auto v = backend_->risk().blacklist_version(); v) blacklist_version_ = *v;
  trace_.event(loop_.now_us(), "card_replaced",
               {{"card", to_hex(old_serial)},
                {"new_card", to_hex(image->serial)},
                {"moved_fen", image->balance_fen},
                {"card_held_fen", old_balance}});
  return to_hex(image->serial);
}

CardCheck World::check_cards() const {
  CardCheck c;
  c.cards = cards_.size();
  for (std::size_t i = 0; i < cards_.size(); ++i) {
    const std::int64_t balance = cards_[i].balance_fen();
    c.opening_fen += opening_fen_[i];
    c.balance_fen += balance;
    c.recorded_fen += recorded_fen_[i];
    if (opening_fen_[i] - balance != recorded_fen_[i]) {
      if (c.off++ == 0) {
        c.first_problem = "card " + std::to_string(i + 1) + " (" + to_hex(cards_[i].serial()) +
                          "): opened with " + std::to_string(opening_fen_[i]) + " fen, holds " +
                          std::to_string(balance) + ", sales recorded " +
                          std::to_string(recorded_fen_[i]);
      }
    }
  }
  return c;
}

std::string World::card_serial_hex(std::size_t card_index) const {
  return card_index < cards_.size() ? to_hex(cards_[card_index].serial()) : std::string();
}

Status World::run_until(std::int64_t t_us) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before running");
  if (t_us < loop_.now_us()) return Status(Errc::kInvalidArgument, "cannot run backwards in time");
  loop_.run_until(t_us);
  if (!restart_error_.is_ok()) return restart_error_;
  return Status::ok();
}

Status World::drain(std::int64_t max_us) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before drain()");
  const std::int64_t deadline = loop_.now_us() + max_us;
  auto idle = [this] {
    for (const auto& b : buses_) {
      if (b->validator->queue_length() > 0 || b->validator->queue().in_flight()) return false;
    }
    for (const auto& t : taxis_) {
      const auto& q = t->module->core().queue();
      if (q.size() > 0 || q.in_flight()) return false;
    }
    return true;
  };
  while (!idle()) {
    if (loop_.now_us() >= deadline) {
      return Status(Errc::kTimeout, "terminals still hold records after draining for " +
                                        std::to_string(max_us / 1'000'000) + " s");
    }
    loop_.run_until(std::min(deadline, loop_.now_us() + 1'000'000));
    if (!restart_error_.is_ok()) return restart_error_;
  }
  return Status::ok();
}

WorldStats World::stats() const {
  WorldStats s = stats_;
  for (const auto& b : buses_) {
    const auto& u = b->validator->upload_counters();
    s.uploaded_records += u.records_accepted;
    s.duplicate_records += u.records_duplicate;
    s.rejected_records += u.records_rejected;
    s.batches_acked += u.batches_acked;
    s.upload_failures += u.failures;
    s.queued_records += b->validator->queue_length();
  }
  for (const auto& t : taxis_) {
    const auto& q = t->module->core().queue();
    const auto& u = q.counters();
    s.uploaded_records += u.records_accepted + t->past.records_accepted;
    s.duplicate_records += u.records_duplicate + t->past.records_duplicate;
    s.rejected_records += u.records_rejected + t->past.records_rejected;
    s.batches_acked += u.batches_acked + t->past.batches_acked;
    s.upload_failures += u.failures + t->past.failures;
    s.queued_records += q.size();
  }
  for (const auto& b : buses_) {
    s.max_clock_error_us = std::max(s.max_clock_error_us, std::abs(b->clock->error_us()));
  }
  if (backend_up_) {
    if (auto ops = backend_->clearing().by_operator(); ops) {
      for (const auto& o : *ops) s.backend_amount_fen += o.amount_fen;
    }
  }
  if (network_) {
    s.network_messages = network_->messages_sent();
    s.network_lost = network_->messages_lost();
    s.network_duplicated = network_->messages_duplicated();
  }
  return s;
}

Status World::conservation() const {
  if (!backend_up_) return Status(Errc::kUnavailable, "the backend is down");
  return backend_->check_conservation();
}

bool parse_calendar(const std::string& text, std::int64_t& epoch2000_s) {
  int y, mo, d, h, mi, s = 0, used = 0;
  // %n records how much was read: the whole text must be one date-time, nothing after it.
  if (std::sscanf(text.c_str(), "%4d-%2d-%2d %2d:%2d%n", &y, &mo, &d, &h, &mi, &used) != 5) {
    return false;
  }
  if (text[static_cast<std::size_t>(used)] == ':') {
    int more = 0;
    if (std::sscanf(text.c_str() + used, ":%2d%n", &s, &more) != 1) return false;
    used += more;
  }
  if (static_cast<std::size_t>(used) != text.size()) return false;
  if (y < 2000 || y > 2099 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
      s > 59 || h < 0 || mi < 0 || s < 0) {
    return false;
  }
  auto bcd = [](int v) { return static_cast<std::uint8_t>(((v / 10) << 4) | (v % 10)); };
  const protocol::DateTime7 dt{bcd(y / 100), bcd(y % 100), bcd(mo), bcd(d), bcd(h), bcd(mi), bcd(s)};
  epoch2000_s = protocol::epoch2000_from_datetime(dt);
  // Reject dates that do not exist (2026-02-30): they would not round-trip.
  return protocol::datetime_from_epoch2000(epoch2000_s) == dt;
}

bool parse_time_of_day(const std::string& text, std::int64_t& seconds) {
  int h, m, s = 0, used = 0;
  if (std::sscanf(text.c_str(), "%2d:%2d%n", &h, &m, &used) != 2) return false;
  if (text[static_cast<std::size_t>(used)] == ':') {
    int more = 0;
    if (std::sscanf(text.c_str() + used, ":%2d%n", &s, &more) != 1) return false;
    used += more;
  }
  if (static_cast<std::size_t>(used) != text.size()) return false;
  if (h < 0 || h > 47 || m < 0 || m > 59 || s < 0 || s > 59) return false;  // past midnight ok
  seconds = h * 3600 + m * 60 + s;
  return true;
}

}  // namespace citycard::scenarios
