#include "load_worker.h"

#include <algorithm>
#include <cstring>

namespace citycard::scenarios {

namespace pw = protocol::wire;

namespace {

constexpr std::size_t kSwipe = kSwipeIndex;

template <std::size_t N>
bool copy_field(const std::string& from, std::array<std::uint8_t, N>& to) {
  if (from.size() != N) return false;
  std::memcpy(to.data(), from.data(), N);
  return true;
}

std::string errc_code(Errc e) {
  return std::string("client:") + errc_name(e);
}

}  // namespace

protocol::CardImage card_image(const citycard::load::Card& c) {
  protocol::CardImage img;
  img.family = static_cast<protocol::Family>(c.family());
  copy_field(c.serial(), img.serial);
  img.card_number = c.card_number();
  img.card_type = static_cast<protocol::CardType>(c.card_type());
  img.key_version = static_cast<std::uint8_t>(c.key_version());
  img.algorithm = static_cast<protocol::crypto::Algorithm>(c.algorithm());
  copy_field(c.dpk(), img.dpk);
  copy_field(c.dlk(), img.dlk);
  copy_field(c.dtk(), img.dtk);
  img.balance_fen = c.balance_fen();
  img.overdraft_limit_fen = c.overdraft_limit_fen();
  copy_field(c.valid_from(), img.valid_from);
  copy_field(c.valid_to(), img.valid_to);
  copy_field(c.issuer_data(), img.issuer_data);
  return img;
}

protocol::PsamImage psam_image(const citycard::load::Terminal& t) {
  protocol::PsamImage img;
  copy_field(t.terminal_id(), img.terminal_id);
  img.key_version = static_cast<std::uint8_t>(t.key_version());
  copy_field(t.purchase_master(), img.purchase_master);
  copy_field(t.batch_key(), img.batch_key);
  img.next_sequence = t.next_sequence();
  return img;
}

std::int64_t upload_tick_at_or_after(std::int64_t phase_us, std::int64_t interval_us,
                                     std::int64_t t_us) {
  const std::int64_t since = t_us - phase_us;
  std::int64_t ticks = since / interval_us;
  if (ticks * interval_us < since) ++ticks;  // the ceiling (since may be negative: / truncates)
  return phase_us + ticks * interval_us;
}

struct Worker::Bus {
  std::unique_ptr<devices::Psam> psam;
  std::unique_ptr<BusChannel> channel;
  std::unique_ptr<devices::BusValidator> validator;
  std::deque<std::int64_t> planned_us;  // planned tap time of each record queued, oldest first
  std::int64_t batch_due_us = 0;        // the batch being uploaded: when it became due
  std::size_t batch_op = kUploadIndex;  // and whose stats it counts in (upload or flush)
  std::int64_t retry_at_us = 0;
  std::int64_t timer_at_us = kNever;
  std::int64_t phase_us = 0;  // its upload timer fires at phase_us + k * upload_interval_us
};

// The bus validator's link to the backend: its uploads go through the worker's socket.
class Worker::BusChannel final : public sim::Channel {
 public:
  BusChannel(Worker& worker, std::size_t bus) : worker_(worker), bus_(bus) {}
  void request(Bytes frame, ReplyFn on_reply) override {
    worker_.send_upload(bus_, std::move(frame), std::move(on_reply));
  }

 private:
  Worker& worker_;
  std::size_t bus_;
};

Worker::Worker(const LoadKnobs& knobs, std::vector<std::string> op_names,
               citycard::load::City share, const std::string& endpoint, zmq::context_t& ctx,
               const sim::Clock& clock, std::string name, std::int64_t calendar_origin_epoch2000_s)
    : knobs_(knobs),
      op_names_(std::move(op_names)),
      share_(std::move(share)),
      clock_(clock),
      name_(std::move(name)),
      calendar_origin_epoch2000_s_(calendar_origin_epoch2000_s),
      root_(sim::Rng(knobs.seed).fork(name_)),
      demand_(root_.fork("demand")),
      client_(ctx, endpoint, clock,
              sim::AsyncClientOptions{static_cast<std::size_t>(knobs.in_flight_max),
                                      knobs.timeout_us, 20'000, 20'000, 8 << 20}) {}

Worker::~Worker() = default;

Status Worker::prepare() {
  auto bad = [this](const std::string& m) {
    return Status(Errc::kInvalidArgument, name_ + ": " + m);
  };
  if (share_.cards().empty() || share_.terminals().empty()) {
    return bad(
        "a worker needs at least one card and one bus; give fewer threads or agents, or "
        "a bigger city");
  }
  cards_.clear();
  cards_.reserve(static_cast<std::size_t>(share_.cards_size()));
  for (const auto& c : share_.cards()) {
    if (c.serial().size() != 8 || c.dpk().size() != 16 || c.dtk().size() != 16) {
      return bad("a card image has fields of the wrong length");
    }
    // Each card's challenges come from its own stream, keyed by its serial: the same card
    // behaves the same whichever worker holds it.
    const protocol::CardImage image = card_image(c);
    cards_.emplace_back(image, sim::Rng(knobs_.seed).fork("card-" + to_hex(image.serial)));
  }
  buses_.clear();
  terminal_ids_.clear();
  // Each bus's upload timer has its own phase, as a fleet's validators do (and the World's).
  sim::Rng phases = root_.fork("upload-phases");
  for (const auto& t : share_.terminals()) {
    if (t.terminal_id().size() != 6 || t.purchase_master().size() != 16 ||
        t.batch_key().size() != 16) {
      return bad("a terminal image has fields of the wrong length");
    }
    auto bus = std::make_unique<Bus>();
    bus->psam = std::make_unique<devices::Psam>(psam_image(t));
    bus->channel = std::make_unique<BusChannel>(*this, buses_.size());
    bus->phase_us = static_cast<std::int64_t>(
        phases.uniform(static_cast<std::uint64_t>(knobs_.upload_interval_us)));
    devices::BusValidatorConfig vc;
    vc.device_id = t.device_id();
    vc.operator_id = t.operator_id();
    vc.route = t.route();
    vc.vehicle = t.vehicle();
    vc.fare_fen = t.fare_fen();
    vc.calendar_origin_epoch2000_s = calendar_origin_epoch2000_s_;
    vc.queue_records_max = static_cast<std::size_t>(knobs_.queue_records_max);
    vc.batch_size_max = static_cast<std::size_t>(knobs_.batch_size);
    vc.upload_interval_us = knobs_.upload_interval_us;  // the worker decides when; see .h
    bus->validator = std::make_unique<devices::BusValidator>(vc, *bus->psam, clock_, *bus->channel);
    terminal_ids_.push_back(bus->psam->terminal_id());
    buses_.push_back(std::move(bus));
  }
  ops_.clear();
  ops_.resize(op_names_.size());
  mix_.clear();
  double total = 0;
  for (const auto& [op, weight] : knobs_.mix) {
    const auto at = std::find(op_names_.begin(), op_names_.end(), op);
    CITYCARD_CHECK(at != op_names_.end(), "a mix op missing from the op names");
    const auto index = static_cast<std::size_t>(at - op_names_.begin());
    if (index >= kFirstRequestIndex) ops_[index] = make_request_op(op);
    if (weight <= 0) continue;
    total += weight;
    mix_.emplace_back(total, index);
  }
  for (auto& m : mix_) m.first /= total;
  return Status::ok();
}

std::size_t Worker::pick_op() {
  if (mix_.size() == 1) return mix_[0].second;
  const double u = demand_.uniform01();
  for (const auto& [cum, op] : mix_) {
    if (u < cum) return op;
  }
  return mix_.back().second;
}

void Worker::note_send(std::size_t op, std::int64_t planned_us, std::int64_t now_us) {
  const std::int64_t lag = std::max<std::int64_t>(0, now_us - planned_us);
  totals_.send_lag.record(lag);
  if (lag > knobs_.late_us) ++stats(op).c.late;
}

void Worker::arrival(std::int64_t planned_us) {
  const std::size_t op = pick_op();
  if (op == kSwipe) {
    swipe(planned_us);
  } else {
    request(op, planned_us);
  }
}

void Worker::swipe(std::int64_t planned_us) {
  OpStats& s = stats(kSwipe);
  ++s.c.planned;
  const std::int64_t start = clock_.now_us();
  note_send(kSwipe, planned_us, start);
  const auto b = static_cast<std::size_t>(demand_.uniform(buses_.size()));
  const auto c = static_cast<std::size_t>(demand_.uniform(cards_.size()));
  Bus& bus = *buses_[b];
  devices::CpuCard& card = cards_[c];
  devices::DirectLink link(card);
  const devices::TapResult r = bus.validator->tap(link);
  card.reset();  // the card leaves the field
  const std::int64_t done = clock_.now_us();
  ++s.c.sent;
  s.latency.record(std::max<std::int64_t>(0, done - planned_us));
  last_outcome_us_ = std::max(last_outcome_us_, done);
  if (r.ok()) {
    ++s.c.ok;
    bus.planned_us.push_back(planned_us);
    maybe_upload(b, done);
    return;
  }
  ++totals_.refusals[static_cast<std::size_t>(*r.refusal)];
  if (*r.refusal == devices::Refusal::kQueueFull) {
    ++s.c.refused;  // a bound of ours, not the card's answer
  } else {
    ++s.c.errors;
  }
}

void Worker::request(std::size_t op, std::int64_t planned_us) {
  OpStats& s = stats(op);
  ++s.c.planned;
  OpContext ctx{demand_, cards_, terminal_ids_};
  citycard::wire::Envelope e = ops_[op]->make(ctx);
  e.set_request_id(++next_request_id_);
  const Bytes frame = pw::encode(e);
  note_send(op, planned_us, clock_.now_us());
  Status sent = client_.send(frame, [this, op, planned_us](Result<Bytes> r, std::int64_t now) {
    on_request_reply(op, planned_us, std::move(r), now);
  });
  if (!sent) {
    ++s.c.refused;
    count_error(errc_code(sent.code()));
    return;
  }
  ++s.c.sent;
}

void Worker::on_request_reply(std::size_t op, std::int64_t planned_us, Result<Bytes> reply,
                              std::int64_t now_us) {
  OpStats& s = stats(op);
  last_outcome_us_ = std::max(last_outcome_us_, now_us);
  s.latency.record(std::max<std::int64_t>(0, now_us - planned_us));
  if (!reply) {
    if (reply.status().code() == Errc::kTimeout) {
      ++s.c.timeouts;
      count_error("timeout");
    } else {
      ++s.c.errors;
      count_error(errc_code(reply.status().code()));
    }
    return;
  }
  auto env = pw::decode(*reply);
  if (!env) {
    ++s.c.errors;
    count_error("unreadable_reply");
  } else if (env->has_error()) {
    ++s.c.errors;
    count_error(citycard::wire::Code_Name(env->error().code()));
  } else if (ops_[op]->succeeded(*env)) {
    ++s.c.ok;
  } else {
    ++s.c.errors;
    count_error("unexpected_reply");
  }
}

std::optional<std::int64_t> Worker::batch_due(const Bus& bus) const {
  const auto& p = bus.planned_us;
  if (p.empty()) return std::nullopt;
  const auto full = static_cast<std::size_t>(knobs_.batch_size);
  if (p.size() >= full) return p[full - 1];
  const std::int64_t interval = knobs_.upload_interval_us;
  std::int64_t due = p.front() + interval;
  if (!knobs_.aligned_uploads) {
    // The bus's first timer tick at or after its oldest record: that record waits at most the
    // interval, and buses tick out of phase with each other.
    due = upload_tick_at_or_after(bus.phase_us, interval, p.front());
  }
  if (draining_) due = std::min(due, schedule_end_us_);
  return due;
}

void Worker::maybe_upload(std::size_t b, std::int64_t now_us) {
  Bus& bus = *buses_[b];
  const devices::UploadQueue& q = bus.validator->queue();
  if (q.in_flight()) return;  // one batch in flight per bus; its reply comes back here
  if (q.pending_batch_no()) {
    // A batch that failed waits for its retry; it keeps its due time.
    if (now_us >= bus.retry_at_us) {
      bus.validator->upload();
    } else {
      arm(b, bus.retry_at_us);
    }
    return;
  }
  const std::optional<std::int64_t> due = batch_due(bus);
  if (!due) return;
  if (*due > now_us) {
    arm(b, *due);
    return;
  }
  bus.batch_due_us = *due;
  bus.batch_op = draining_ ? kFlushIndex : kUploadIndex;
  ++stats(bus.batch_op).c.planned;
  bus.validator->upload();
  if (!q.in_flight() && !q.pending_batch_no()) {
    // The PSAM could not sign the batch; nothing was sent. Try again later.
    ++stats(bus.batch_op).c.errors;
    count_error("batch_sign_failed");
    bus.retry_at_us = now_us + knobs_.retry_us;
    arm(b, bus.retry_at_us);
  }
}

void Worker::send_upload(std::size_t b, Bytes frame, sim::Channel::ReplyFn on_reply) {
  Bus& bus = *buses_[b];
  const std::int64_t now = clock_.now_us();
  // No lateness for uploads: the pacer does not plan them, and the time a due batch waits for
  // the bus's previous one is the backend's, charged to its latency, not the generator's.
  Status sent = client_.send(frame, [this, b, on_reply](Result<Bytes> r, std::int64_t t) {
    on_upload_reply(b, std::move(r), t, on_reply);
  });
  if (!sent) {
    ++stats(bus.batch_op).c.refused;
    count_error(errc_code(sent.code()));
    // The queue keeps the batch; the retry timer sends it again.
    on_reply(Result<Bytes>(sent));
    bus.retry_at_us = now + knobs_.retry_us;
    arm(b, bus.retry_at_us);
    return;
  }
  ++stats(bus.batch_op).c.sent;
}

void Worker::on_upload_reply(std::size_t b, Result<Bytes> reply, std::int64_t now_us,
                             const sim::Channel::ReplyFn& on_reply) {
  Bus& bus = *buses_[b];
  OpStats& s = stats(bus.batch_op);
  last_outcome_us_ = std::max(last_outcome_us_, now_us);
  // Why it failed, if it did, before the queue takes the reply.
  std::string failure;
  if (!reply) {
    failure =
        reply.status().code() == Errc::kTimeout ? "timeout" : errc_code(reply.status().code());
  } else if (auto env = pw::decode(*reply); !env) {
    failure = "unreadable_reply";
  } else if (env->has_error()) {
    failure = citycard::wire::Code_Name(env->error().code());
  }
  const devices::UploadCounters before = bus.validator->upload_counters();
  const std::size_t size_before = bus.validator->queue_length();
  on_reply(std::move(reply));
  const devices::UploadCounters& after = bus.validator->upload_counters();
  const std::size_t acked = size_before - bus.validator->queue_length();
  if (acked == 0) {
    if (failure == "timeout") {
      ++s.c.timeouts;
    } else {
      ++s.c.errors;
    }
    count_error(failure.empty() ? "upload_not_acknowledged" : failure);
    upload_failed(b, now_us);
    return;
  }
  ++s.c.ok;
  s.latency.record(std::max<std::int64_t>(0, now_us - bus.batch_due_us));
  s.c.records_ok += after.records_accepted - before.records_accepted;
  s.c.records_duplicate += after.records_duplicate - before.records_duplicate;
  s.c.records_bad += after.records_rejected - before.records_rejected;
  CITYCARD_CHECK(acked <= bus.planned_us.size(), "acknowledged records we never tapped");
  bus.planned_us.erase(bus.planned_us.begin(),
                       bus.planned_us.begin() + static_cast<std::ptrdiff_t>(acked));
  maybe_upload(b, now_us);
}

void Worker::upload_failed(std::size_t b, std::int64_t now_us) {
  Bus& bus = *buses_[b];
  bus.retry_at_us = now_us + knobs_.retry_us;
  arm(b, bus.retry_at_us);
}

void Worker::arm(std::size_t b, std::int64_t at_us) {
  Bus& bus = *buses_[b];
  if (at_us >= bus.timer_at_us) return;  // an earlier timer re-evaluates the bus anyway
  bus.timer_at_us = at_us;
  timers_.emplace(at_us, b);
}

void Worker::run_timers(std::int64_t now_us) {
  while (!timers_.empty() && timers_.top().first <= now_us) {
    const auto [at, b] = timers_.top();
    timers_.pop();
    if (buses_[b]->timer_at_us != at) continue;  // superseded by an earlier one
    buses_[b]->timer_at_us = kNever;
    maybe_upload(b, now_us);
  }
}

bool Worker::idle() const {
  if (client_.in_flight() > 0) return false;
  for (const auto& b : buses_) {
    if (b->validator->queue_length() > 0) return false;
  }
  return true;
}

void Worker::emit_window(const WindowFn& on_window) {
  if (totals_.ops.size() < window_.size()) totals_.ops.resize(window_.size());
  for (std::size_t i = 0; i < window_.size(); ++i) totals_.ops[i].merge(window_[i]);
  WindowStats w;
  w.index = window_index_++;
  w.ops = std::move(window_);
  window_ = empty_ops(op_names_.size());
  on_window(std::move(w));
}

LoadTotals Worker::run(const sim::RateCurve& curve, std::int64_t start_us, std::uint64_t step,
                       const WindowFn& on_window, const std::atomic<bool>& stop) {
  CITYCARD_CHECK(!buses_.empty(), "prepare() the worker before running it");
  totals_ = LoadTotals{};
  totals_.ops = empty_ops(op_names_.size());
  window_ = empty_ops(op_names_.size());
  window_index_ = 0;
  window_end_us_ = start_us + knobs_.window_us;
  schedule_end_us_ = start_us + curve.end_us();
  last_outcome_us_ = start_us;
  draining_ = false;
  const sim::AsyncClientCounters client_before = client_.counters();

  // Records left on the buses by an earlier step are due from this step's start, not from
  // when they were tapped: the pause between steps is not the backend's.
  for (auto& b : buses_) {
    for (auto& p : b->planned_us) p = std::max(p, start_us);
    b->batch_due_us = std::max(b->batch_due_us, start_us);
  }
  sim::Pacer pacer(curve, knobs_.arrivals, root_.fork("arrivals/step-" + std::to_string(step)));
  auto next_arrival = [&]() -> std::optional<std::int64_t> {
    auto t = pacer.next();
    if (!t) return std::nullopt;
    return start_us + *t;
  };
  std::optional<std::int64_t> next = next_arrival();
  std::int64_t drain_deadline = schedule_end_us_ + knobs_.drain_us;

  for (;;) {
    std::int64_t now = clock_.now_us();
    while (now >= window_end_us_) {
      emit_window(on_window);
      window_end_us_ += knobs_.window_us;
    }
    if (stop.load(std::memory_order_relaxed) && !draining_) {
      // Stopped early (a signal, the coordinator): the schedule ends now, and what the buses
      // hold is still uploaded, for at most drain_us, so the books and the figures agree.
      next.reset();
      schedule_end_us_ = std::min(schedule_end_us_, now);
      drain_deadline = std::min(drain_deadline, now + knobs_.drain_us);
    }
    int handled = 0;
    while (next && *next <= now && handled < kArrivalsPerTurn) {
      arrival(*next);
      next = next_arrival();
      ++handled;
    }
    if (handled) now = clock_.now_us();
    if (!next && !draining_) {
      // The schedule is over: every bus uploads what it holds.
      draining_ = true;
      for (std::size_t b = 0; b < buses_.size(); ++b) maybe_upload(b, now);
    }
    run_timers(now);
    if (draining_ && (idle() || now >= drain_deadline)) break;

    std::int64_t wake = std::min(window_end_us_, now + kSleepUsMax);
    if (next) wake = std::min(wake, *next);
    if (!timers_.empty()) wake = std::min(wake, timers_.top().first);
    if (draining_) wake = std::min(wake, drain_deadline);
    // Behind schedule: read what has arrived, but do not sleep.
    if (handled == kArrivalsPerTurn) wake = now;
    client_.poll(wake);
  }
  emit_window(on_window);  // the last, partial one

  LoadTotals out = std::move(totals_);
  out.unfinished_requests = client_.in_flight();
  for (const auto& b : buses_) out.unfinished_records += b->validator->queue_length();
  const sim::AsyncClientCounters& c = client_.counters();
  out.stale_replies = c.stale_replies - client_before.stale_replies;
  out.elapsed_us = std::max(last_outcome_us_, schedule_end_us_) - start_us;
  out.schedule_us = schedule_end_us_ - start_us;
  out.workers = 1;
  const std::int64_t took = clock_.now_us() - start_us;
  out.busy_us = static_cast<std::uint64_t>(std::max<std::int64_t>(
      0, took - static_cast<std::int64_t>(c.waited_us - client_before.waited_us)));

  // Requests still out were counted as unfinished. Let them end (each times out within
  // timeout_us) before the next step, so none of their callbacks lands in its figures.
  totals_ = LoadTotals{};
  totals_.ops = empty_ops(op_names_.size());
  window_ = empty_ops(op_names_.size());
  while (client_.in_flight() > 0 && !stop.load(std::memory_order_relaxed)) {
    client_.poll(clock_.now_us() + kSleepUsMax);
  }
  return out;
}

}  // namespace citycard::scenarios
