#include "load_stats.h"

#include <algorithm>
#include <limits>

#include "load_ops.h"

namespace citycard::scenarios {

void OpCounters::add(const OpCounters& o) {
  planned += o.planned;
  sent += o.sent;
  ok += o.ok;
  errors += o.errors;
  timeouts += o.timeouts;
  refused += o.refused;
  late += o.late;
  records_ok += o.records_ok;
  records_duplicate += o.records_duplicate;
  records_bad += o.records_bad;
}

void OpStats::merge(const OpStats& o) {
  c.add(o.c);
  latency.merge(o.latency);
}

std::vector<OpStats> empty_ops(std::size_t n) {
  return std::vector<OpStats>(n);
}

void LoadTotals::merge(const LoadTotals& o) {
  if (ops.size() < o.ops.size()) ops.resize(o.ops.size());
  for (std::size_t i = 0; i < o.ops.size(); ++i) ops[i].merge(o.ops[i]);
  for (std::size_t i = 0; i < refusals.size(); ++i) refusals[i] += o.refusals[i];
  for (const auto& [code, n] : o.error_codes) error_codes[code] += n;
  send_lag.merge(o.send_lag);
  unfinished_requests += o.unfinished_requests;
  unfinished_records += o.unfinished_records;
  stale_replies += o.stale_replies;
  elapsed_us = std::max(elapsed_us, o.elapsed_us);
  schedule_us = std::max(schedule_us, o.schedule_us);
  workers += o.workers;
  busy_us += o.busy_us;
}

// --- the agent protocol ---

citycard::load::OpStats to_proto(const std::string& name, const OpStats& s) {
  citycard::load::OpStats p;
  p.set_op(name);
  p.set_planned(s.c.planned);
  p.set_sent(s.c.sent);
  p.set_ok(s.c.ok);
  p.set_errors(s.c.errors);
  p.set_timeouts(s.c.timeouts);
  p.set_refused(s.c.refused);
  p.set_late(s.c.late);
  p.set_records_ok(s.c.records_ok);
  p.set_records_duplicate(s.c.records_duplicate);
  p.set_records_bad(s.c.records_bad);
  const Bytes h = s.latency.encode();
  p.set_latency(std::string(h.begin(), h.end()));
  return p;
}

namespace {

Result<sim::LatencyHistogram> histogram_from(const std::string& bytes) {
  return sim::LatencyHistogram::decode(
      ByteView(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
}

Result<std::vector<OpStats>> ops_from(
    const google::protobuf::RepeatedPtrField<citycard::load::OpStats>& in,
    const std::vector<std::string>& op_names) {
  using R = Result<std::vector<OpStats>>;
  if (static_cast<std::size_t>(in.size()) != op_names.size()) {
    return R(Errc::kMalformed, "stats for " + std::to_string(in.size()) + " operations, expected " +
                                   std::to_string(op_names.size()));
  }
  std::vector<OpStats> ops(op_names.size());
  for (std::size_t i = 0; i < op_names.size(); ++i) {
    const auto& p = in[static_cast<int>(i)];
    if (p.op() != op_names[i]) {
      return R(Errc::kMalformed,
               "stats for '" + p.op() + "' where '" + op_names[i] + "' was expected");
    }
    OpCounters& c = ops[i].c;
    c.planned = p.planned();
    c.sent = p.sent();
    c.ok = p.ok();
    c.errors = p.errors();
    c.timeouts = p.timeouts();
    c.refused = p.refused();
    c.late = p.late();
    c.records_ok = p.records_ok();
    c.records_duplicate = p.records_duplicate();
    c.records_bad = p.records_bad();
    auto h = histogram_from(p.latency());
    if (!h) return R(h.status());
    ops[i].latency = std::move(h).value();
  }
  return ops;
}

}  // namespace

citycard::load::Window to_proto(const WindowStats& w, const std::vector<std::string>& op_names) {
  citycard::load::Window p;
  p.set_index(w.index);
  for (std::size_t i = 0; i < w.ops.size(); ++i) *p.add_ops() = to_proto(op_names[i], w.ops[i]);
  return p;
}

citycard::load::Totals to_proto(const LoadTotals& t, const std::vector<std::string>& op_names) {
  citycard::load::Totals p;
  for (std::size_t i = 0; i < t.ops.size(); ++i) *p.add_ops() = to_proto(op_names[i], t.ops[i]);
  for (std::size_t i = 0; i < t.refusals.size(); ++i) {
    if (!t.refusals[i]) continue;
    auto* r = p.add_refusals();
    r->set_code(devices::refusal_name(static_cast<devices::Refusal>(i)));
    r->set_count(t.refusals[i]);
  }
  for (const auto& [code, n] : t.error_codes) {
    auto* e = p.add_error_codes();
    e->set_code(code);
    e->set_count(n);
  }
  const Bytes lag = t.send_lag.encode();
  p.set_send_lag(std::string(lag.begin(), lag.end()));
  p.set_unfinished_requests(t.unfinished_requests);
  p.set_unfinished_records(t.unfinished_records);
  p.set_stale_replies(t.stale_replies);
  p.set_elapsed_us(t.elapsed_us);
  p.set_schedule_us(t.schedule_us);
  p.set_workers(t.workers);
  p.set_busy_us(t.busy_us);
  return p;
}

Result<WindowStats> from_proto(const citycard::load::Window& p,
                               const std::vector<std::string>& op_names) {
  auto ops = ops_from(p.ops(), op_names);
  if (!ops) return Result<WindowStats>(ops.status());
  WindowStats w;
  w.index = p.index();
  w.ops = std::move(ops).value();
  return w;
}

Result<LoadTotals> from_proto(const citycard::load::Totals& p,
                              const std::vector<std::string>& op_names) {
  auto ops = ops_from(p.ops(), op_names);
  if (!ops) return Result<LoadTotals>(ops.status());
  LoadTotals t;
  t.ops = std::move(ops).value();
  for (const auto& r : p.refusals()) {
    bool known = false;
    for (std::size_t i = 0; i < devices::kRefusalCount; ++i) {
      if (r.code() == devices::refusal_name(static_cast<devices::Refusal>(i))) {
        t.refusals[i] += r.count();
        known = true;
      }
    }
    if (!known) return Result<LoadTotals>(Errc::kMalformed, "unknown refusal " + r.code());
  }
  for (const auto& e : p.error_codes()) t.error_codes[e.code()] += e.count();
  auto lag = histogram_from(p.send_lag());
  if (!lag) return Result<LoadTotals>(lag.status());
  t.send_lag = std::move(lag).value();
  t.unfinished_requests = p.unfinished_requests();
  t.unfinished_records = p.unfinished_records();
  t.stale_replies = p.stale_replies();
  t.elapsed_us = p.elapsed_us();
  t.schedule_us = p.schedule_us();
  t.workers = p.workers();
  t.busy_us = p.busy_us();
  return t;
}

// --- merging windows ---

Status WindowMerger::add(std::size_t source, WindowStats w) {
  CITYCARD_CHECK(source < next_.size(), "window from an unknown part");
  if (done_[source] || w.index != next_[source]) {
    return Status(Errc::kMalformed, "window " + std::to_string(w.index) + " out of order (" +
                                        std::to_string(next_[source]) + " expected)");
  }
  if (w.ops.size() != ops_) {
    return Status(Errc::kMalformed, "window with stats for " + std::to_string(w.ops.size()) +
                                        " operations, expected " + std::to_string(ops_));
  }
  if (open_.size() >= kOpenWindowsMax && !open_.count(w.index)) {
    return Status(Errc::kTooLarge, "parts of the run are " + std::to_string(open_.size()) +
                                       " windows apart: one is stuck");
  }
  ++next_[source];
  auto [it, fresh] = open_.try_emplace(w.index);
  if (fresh) {
    it->second = std::move(w);
    return Status::ok();
  }
  for (std::size_t i = 0; i < ops_; ++i) it->second.ops[i].merge(w.ops[i]);
  return Status::ok();
}

void WindowMerger::finish(std::size_t source) {
  CITYCARD_CHECK(source < done_.size(), "unknown part");
  done_[source] = true;
}

bool WindowMerger::all_finished() const {
  return std::all_of(done_.begin(), done_.end(), [](bool d) { return d; });
}

std::vector<WindowStats> WindowMerger::take_complete() {
  std::vector<WindowStats> out;
  for (;;) {
    bool complete = true;
    for (std::size_t s = 0; s < next_.size(); ++s) {
      if (!done_[s] && next_[s] <= released_) complete = false;
    }
    if (!complete) break;
    auto it = open_.find(released_);
    // Missing only when every part has finished before this window: the run is over.
    if (it == open_.end()) break;
    out.push_back(std::move(it->second));
    open_.erase(it);
    ++released_;
  }
  return out;
}

// --- figures ---

double ms(std::int64_t us) {
  return static_cast<double>(us) / 1e3;
}

nlohmann::json latency_json(const sim::LatencyHistogram& h) {
  return {{"count", h.count()},
          {"p50_ms", ms(h.percentile_us(50))},
          {"p90_ms", ms(h.percentile_us(90))},
          {"p99_ms", ms(h.percentile_us(99))},
          {"p999_ms", ms(h.percentile_us(99.9))},
          {"max_ms", ms(h.max_us())},
          {"mean_ms", h.mean_us() / 1e3}};
}

nlohmann::json latency_distribution_json(const sim::LatencyHistogram& h) {
  // Edges 1, 2, 5, 10, 20, 50... µs up to past the histogram's range.
  std::vector<std::int64_t> edges{0};
  for (std::int64_t decade = 1; decade <= sim::LatencyHistogram::kHighestUs; decade *= 10) {
    for (std::int64_t m : {1, 2, 5}) edges.push_back(decade * m);
  }
  edges.push_back(std::numeric_limits<std::int64_t>::max());
  std::vector<std::uint64_t> counts(edges.size() - 1, 0);
  for (const auto& [lowest, n] : h.slots()) {
    const auto it = std::upper_bound(edges.begin(), edges.end(), lowest);
    counts[static_cast<std::size_t>(it - edges.begin()) - 1] += n;
  }
  nlohmann::json bins = nlohmann::json::array();
  std::size_t first = counts.size(), last = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0) continue;
    first = std::min(first, i);
    last = i;
  }
  for (std::size_t i = first; i <= last && i < counts.size(); ++i) {
    bins.push_back({{"from_ms", ms(edges[i])},
                    {"to_ms", i + 2 == edges.size() ? ms(h.max_us()) : ms(edges[i + 1])},
                    {"count", counts[i]}});
  }
  return bins;
}

sim::LatencyHistogram request_latency(const std::vector<OpStats>& ops) {
  // Not "swipe", a local purchase, nor "flush", the end-of-run burst (see load_ops.h).
  sim::LatencyHistogram h;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (i != kSwipeIndex && i != kFlushIndex) h.merge(ops[i].latency);
  }
  return h;
}

namespace {

// Records the backend accepted, in uploads and in the final flush.
std::uint64_t records_ok(const std::vector<OpStats>& ops) {
  std::uint64_t n = 0;
  for (std::size_t i : {kUploadIndex, kFlushIndex}) {
    if (i < ops.size()) n += ops[i].c.records_ok;
  }
  return n;
}

// Arrivals the scenario offered: taps and request ops (uploads follow from taps).
std::uint64_t offered(const std::vector<OpStats>& ops) {
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (i == kSwipeIndex || i >= kFirstRequestIndex) n += ops[i].c.planned;
  }
  return n;
}

// What the backend completed: records it accepted, and request ops answered successfully.
std::uint64_t achieved(const std::vector<OpStats>& ops) {
  std::uint64_t n = records_ok(ops);
  for (std::size_t i = kFirstRequestIndex; i < ops.size(); ++i) n += ops[i].c.ok;
  return n;
}

std::uint64_t sum_errors(const std::vector<OpStats>& ops) {
  std::uint64_t n = 0;
  for (std::size_t i = kUploadIndex; i < ops.size(); ++i) {
    n += ops[i].c.errors + ops[i].c.timeouts + ops[i].c.records_bad;
  }
  return n;
}

nlohmann::json counters_json(const OpCounters& c) {
  return {{"planned", c.planned},   {"sent", c.sent},       {"ok", c.ok},    {"errors", c.errors},
          {"timeouts", c.timeouts}, {"refused", c.refused}, {"late", c.late}};
}

}  // namespace

nlohmann::json window_json(const WindowStats& w, const std::vector<std::string>& op_names,
                           std::int64_t window_us) {
  const double window_s = static_cast<double>(window_us) / 1e6;
  nlohmann::json ops = nlohmann::json::object();
  std::uint64_t late = 0, refused = 0;
  for (std::size_t i = 0; i < w.ops.size(); ++i) {
    const OpStats& s = w.ops[i];
    nlohmann::json j = counters_json(s.c);
    j["latency"] = latency_json(s.latency);
    if (i == kUploadIndex || i == kFlushIndex) {
      j["records_ok"] = s.c.records_ok;
      j["records_bad"] = s.c.records_bad;
      j["records_per_s"] = static_cast<double>(s.c.records_ok) / window_s;
    }
    ops[op_names[i]] = std::move(j);
    late += s.c.late;
    refused += s.c.refused;
  }
  const sim::LatencyHistogram all = request_latency(w.ops);
  return {{"window", w.index},
          {"t_start_s", static_cast<double>(w.index) * window_s},
          {"t_end_s", static_cast<double>(w.index + 1) * window_s},
          {"offered_per_s", static_cast<double>(offered(w.ops)) / window_s},
          {"achieved_per_s", static_cast<double>(achieved(w.ops)) / window_s},
          {"errors", sum_errors(w.ops)},
          {"refused", refused},
          {"late_sends", late},
          {"p50_ms", ms(all.percentile_us(50))},
          {"p99_ms", ms(all.percentile_us(99))},
          {"p999_ms", ms(all.percentile_us(99.9))},
          {"max_ms", ms(all.max_us())},
          {"ops", ops}};
}

nlohmann::json totals_json(const LoadTotals& t, const std::vector<std::string>& op_names,
                           double duration_s) {
  // A run stopped early offered its load over the part of the schedule that ran.
  if (t.schedule_us > 0)
    duration_s = std::min(duration_s, static_cast<double>(t.schedule_us) / 1e6);
  const double elapsed_s = std::max(duration_s, static_cast<double>(t.elapsed_us) / 1e6);
  nlohmann::json ops = nlohmann::json::object();
  std::uint64_t late = 0, refused = 0;
  for (std::size_t i = 0; i < t.ops.size(); ++i) {
    const OpStats& s = t.ops[i];
    nlohmann::json j = counters_json(s.c);
    j["offered_per_s"] = static_cast<double>(s.c.planned) / duration_s;
    j["achieved_per_s"] = static_cast<double>(s.c.ok) / elapsed_s;
    j["latency"] = latency_json(s.latency);
    j["latency_distribution"] = latency_distribution_json(s.latency);
    if (i == kUploadIndex || i == kFlushIndex) {
      j["records_ok"] = s.c.records_ok;
      j["records_duplicate"] = s.c.records_duplicate;
      j["records_bad"] = s.c.records_bad;
      j["records_per_s"] = static_cast<double>(s.c.records_ok) / elapsed_s;
    }
    ops[op_names[i]] = std::move(j);
    late += s.c.late;
    refused += s.c.refused;
  }
  nlohmann::json refusals = nlohmann::json::object();
  for (std::size_t i = 0; i < t.refusals.size(); ++i) {
    if (t.refusals[i])
      refusals[devices::refusal_name(static_cast<devices::Refusal>(i))] = t.refusals[i];
  }
  const sim::LatencyHistogram all = request_latency(t.ops);
  nlohmann::json j = {{"duration_s", duration_s},
                      {"elapsed_s", elapsed_s},
                      {"offered", offered(t.ops)},
                      {"achieved", achieved(t.ops)},
                      {"offered_per_s", static_cast<double>(offered(t.ops)) / duration_s},
                      {"achieved_per_s", static_cast<double>(achieved(t.ops)) / elapsed_s},
                      {"late_sends", late},
                      {"errors", sum_errors(t.ops)},
                      {"refused", refused},
                      {"unfinished_requests", t.unfinished_requests},
                      {"unfinished_records", t.unfinished_records},
                      {"stale_replies", t.stale_replies},
                      {"p50_ms", ms(all.percentile_us(50))},
                      {"p90_ms", ms(all.percentile_us(90))},
                      {"p99_ms", ms(all.percentile_us(99))},
                      {"p999_ms", ms(all.percentile_us(99.9))},
                      {"max_ms", ms(all.max_us())},
                      {"requests", all.count()},
                      {"latency_distribution", latency_distribution_json(all)},
                      {"records_per_s", static_cast<double>(records_ok(t.ops)) / elapsed_s},
                      {"send_lag", latency_json(t.send_lag)},
                      {"tap_refusals", refusals},
                      {"error_codes", t.error_codes},
                      {"workers", t.workers},
                      {"worker_busy_fraction",
                       t.workers && elapsed_s > 0 ? static_cast<double>(t.busy_us) / 1e6 /
                                                        (elapsed_s * static_cast<double>(t.workers))
                                                  : 0},
                      {"ops", ops}};
  return j;
}

}  // namespace citycard::scenarios
