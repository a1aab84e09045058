#include "citycard/scenarios/world.h"

#include <cmath>
#include <cstdio>

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
  if (batch_size_max < 1 || batch_size_max > 10'000) return bad("batch_size must be 1..10000");
  if (network.loss_probability < 0 || network.loss_probability > 1) {
    return bad("network.loss must be a probability in [0, 1]");
  }
  return Status::ok();
}

// A bus: its PSAM, its channel to the backend and its validator.
struct World::Bus {
  std::unique_ptr<devices::Psam> psam;
  std::unique_ptr<sim::Channel> channel;
  std::unique_ptr<devices::BusValidator> validator;
};

// Wraps a bus's channel so every acknowledgement lands in the trace; the validator sees the
// reply unchanged.
class World::TracingChannel final : public sim::Channel {
 public:
  TracingChannel(std::unique_ptr<sim::Channel> inner, World& world, std::string terminal)
      : inner_(std::move(inner)), world_(world), terminal_(std::move(terminal)) {}

  void request(Bytes frame, ReplyFn on_reply) override {
    inner_->request(std::move(frame), [this, on_reply = std::move(on_reply)](Result<Bytes> r) {
      if (!r.is_ok()) {
        world_.trace_.event(world_.loop_.now_us(), "upload_failed",
                            {{"terminal", terminal_}, {"why", r.status().to_string()}});
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

World::World(std::uint64_t seed, reports::TraceWriter& trace, std::string db_path)
    : seed_(seed),
      trace_(trace),
      db_path_(std::move(db_path)),
      rng_(seed),
      demand_rng_(rng_.fork("demand")) {}

World::~World() = default;

Status World::build(const CityConfig& config) {
  if (built()) return Status(Errc::kInvalidArgument, "city{} can be called only once");
  if (Status s = config.validate(); !s) return s;
  config_ = config;

  backend::BackendOptions bo;
  bo.key_seed = seed_;
  bo.clock_origin_epoch2000_s = config.start_epoch2000_s;
  // Virtual-time runs need the state to survive a crash of the process (kill -9), which WAL
  // with synchronous=NORMAL gives; fsync per batch would only make the city slower.
  bo.store.synchronous_full = false;
  auto opened = backend::Backend::open(db_path_, bo, loop_);
  if (!opened) return opened.status();
  backend_ = std::move(opened).value();
  network_ = std::make_unique<sim::SimNetwork>(loop_, rng_.fork("network"), config.network);

  // Issue every card and register every bus in one transaction: one commit, not thousands.
  auto tx = backend_->store().begin();
  if (!tx) return tx.status();
  sim::Rng balances = rng_.fork("balances");
  cards_.reserve(static_cast<std::size_t>(config.cards));
  for (std::int64_t i = 0; i < config.cards; ++i) {
    backend::CardParams p;
    p.opening_balance_fen = balances.uniform_range(config.balance_fen_min, config.balance_fen_max);
    auto image = backend_->issue_card(p);
    if (!image) return image.status();
    cards_.emplace_back(*image, rng_.fork("card-" + std::to_string(i)));
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
      bus->psam = std::make_unique<devices::Psam>(*psam_image);
      bus->channel = std::make_unique<TracingChannel>(
          network_->connect(backend_->service(), tp.device_id), *this, vehicle);
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
          std::make_unique<devices::BusValidator>(vc, *bus->psam, loop_, *bus->channel);
      buses_.push_back(std::move(bus));
    }
  }
  if (Status s = tx->commit(); !s) return s;

  // Buses start polling at a random offset within the first interval, so uploads spread out.
  sim::Rng offsets = rng_.fork("upload-offsets");
  for (std::size_t i = 0; i < buses_.size(); ++i) {
    schedule_poll(i, static_cast<std::int64_t>(offsets.uniform(
                         static_cast<std::uint64_t>(config.upload_interval_us))));
  }
  trace_.event(loop_.now_us(), "city",
               {{"cards", config.cards},
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
    // Keep polling while the run goes on; run_until() bounds how far the loop runs.
    schedule_poll(bus_index, loop_.now_us() + config_.upload_interval_us);
  });
}

Status World::add_phase(std::int64_t from_us, std::int64_t to_us, double swipes_per_hour) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before phase{}");
  if (to_us <= from_us) return Status(Errc::kInvalidArgument, "a phase must end after it starts");
  if (from_us < loop_.now_us()) {
    return Status(Errc::kInvalidArgument, "a phase cannot start in the past");
  }
  if (!(swipes_per_hour > 0) || swipes_per_hour > 1e9) {
    return Status(Errc::kInvalidArgument, "swipes_per_hour must be in (0, 1e9]");
  }
  const double mean_gap_us = 3.6e9 / swipes_per_hour;
  trace_.event(loop_.now_us(), "phase",
               {{"from_us", from_us}, {"to_us", to_us}, {"swipes_per_hour", swipes_per_hour}});
  schedule_arrival(from_us, to_us, mean_gap_us);
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

void World::tap(std::size_t card_index, std::size_t bus_index) {
  devices::CpuCard& card = cards_[card_index];
  devices::BusValidator& v = *buses_[bus_index]->validator;
  devices::DirectLink link(card);
  const devices::TapResult r = v.tap(link);
  card.reset();  // the card leaves the field
  ++stats_.taps;
  reports::Json ev{{"card", to_hex(card.serial())},
                   {"route", v.config().route},
                   {"vehicle", v.config().vehicle},
                   {"ok", r.ok()}};
  if (r.ok()) {
    ++stats_.swipes;
    stats_.validator_amount_fen += r.record.amount_fen();
    ev["amount_fen"] = r.record.amount_fen();
    ev["counter"] = r.record.card_counter();
    ev["balance_after_fen"] = card.balance_fen();
  } else {
    ++stats_.refusals;
    if (*r.refusal == devices::Refusal::kInsufficientBalance) ++stats_.refusals_insufficient;
    ev["reason"] = devices::refusal_name(*r.refusal);
    if (r.sw) ev["sw"] = r.sw;
  }
  trace_.event(loop_.now_us(), "swipe", std::move(ev));
}

Status World::run_until(std::int64_t t_us) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before running");
  if (t_us < loop_.now_us()) return Status(Errc::kInvalidArgument, "cannot run backwards in time");
  loop_.run_until(t_us);
  return Status::ok();
}

Status World::drain(std::int64_t max_us) {
  if (!built()) return Status(Errc::kInvalidArgument, "call city{} before drain()");
  const std::int64_t deadline = loop_.now_us() + max_us;
  auto idle = [this] {
    for (const auto& b : buses_) {
      if (b->validator->queue_length() > 0 || b->validator->queue().in_flight()) return false;
    }
    return true;
  };
  while (!idle()) {
    if (loop_.now_us() >= deadline) {
      return Status(Errc::kTimeout, "buses still hold records after draining for " +
                                        std::to_string(max_us / 1'000'000) + " s");
    }
    loop_.run_until(std::min(deadline, loop_.now_us() + 1'000'000));
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
  if (backend_) {
    if (auto ops = backend_->clearing().by_operator(); ops) {
      for (const auto& o : *ops) s.backend_amount_fen += o.amount_fen;
    }
  }
  if (network_) {
    s.network_messages = network_->messages_sent();
    s.network_lost = network_->messages_lost();
  }
  return s;
}

Status World::conservation() const {
  if (!backend_) return Status::ok();
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
