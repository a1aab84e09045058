// `citycard load`: the run itself — the backend (embedded or external) and its city, one
// local run, a sweep of rates, or a coordinated run of agents — and its summary.
#include "citycard/scenarios/load.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>

#include "citycard/backend/backend.h"
#include "citycard/backend/server.h"
#include "citycard/reports/wall_report.h"
#include "citycard/sim/clock.h"
#include "citycard/sim/zmq_transport.h"
#include "load_agent.h"
#include "load_city.h"
#include "load_local.h"
#include "citycard/reports/wall_report.h"
#include "load_report.h"

namespace citycard::scenarios {

namespace fs = std::filesystem;

std::atomic<bool>& load_stop_flag() {
  static std::atomic<bool> stop{false};
  return stop;
}

namespace {

// The clearing centre served from this process for the run: opened fresh, the city issued
// into it, then served on its own thread over real tcp. The Backend is used by this thread
// until serving starts and after it stops, and by the server thread in between, never both.
class EmbeddedBackend {
 public:
  static Result<std::unique_ptr<EmbeddedBackend>> start(const LoadPlan& plan,
                                                        const std::string& data_dir, bool durable,
                                                        std::size_t group_commit,
                                                        const std::string& listen) {
    using R = Result<std::unique_ptr<EmbeddedBackend>>;
    std::unique_ptr<EmbeddedBackend> e(new EmbeddedBackend());
    std::error_code ec;
    fs::create_directories(data_dir, ec);
    if (ec) return R(Errc::kIo, "cannot create " + data_dir + ": " + ec.message());
    backend::BackendOptions bo;
    bo.key_seed = plan.knobs.seed;
    bo.clock_origin_epoch2000_s = city_calendar_origin(e->clock_);
    bo.store.synchronous_full = durable;
    bo.store.checkpoint_in_background = true;  // as `citycard backend`
    auto be = backend::Backend::open(data_dir + "/backend.db", bo, e->clock_);
    if (!be) return R(be.status());
    e->backend_ = std::move(be).value();
    const std::int64_t t0 = e->clock_.now_us();
    auto city = issue_city(*e->backend_, plan.city, plan.knobs.seed);
    if (!city) return R(city.status());
    e->city_ = std::move(city).value();
    e->city_.set_provenance("issued by the embedded backend in " + data_dir + ", key seed " +
                            std::to_string(plan.knobs.seed));
    e->issue_us_ = e->clock_.now_us() - t0;
    // The same server `citycard backend` runs (plain tcp: the generator speaks no CURVE):
    // queued, BUSY when full, uploads committed in groups.
    backend::ServerOptions so;
    so.listen = listen;
    so.curve = false;
    so.group_commit_max_requests = std::max<std::size_t>(1, group_commit);
    // A fresh PKI for a throwaway store: the root's private key is not kept.
    std::string root_key;
    auto server = backend::Server::open(*e->backend_, e->ctx_, so, &root_key);
    if (!server) return R(server.status());
    e->server_ = std::move(server).value();
    e->thread_ = std::thread([p = e.get()] {
      // Named, so top and perf show the backend's share of the machine apart from the load's.
      pthread_setname_np(pthread_self(), "cc-backend");
      p->server_->serve();
    });
    return e;
  }

  ~EmbeddedBackend() { halt(); }

  const std::string endpoint() const { return server_->endpoint(); }
  const citycard::load::City& city() const { return city_; }
  std::int64_t issue_us() const { return issue_us_; }

  // Stops serving, then reads the backend's own count of what it ingested and checks its
  // books: the load generator's figures are checked against them.
  nlohmann::json stop() {
    halt();
    const backend::BackendCounters c = backend_->counters();
    const backend::ServerCounters sc = server_->counters();
    const Status conserved = backend_->check_conservation();
    nlohmann::json j = {{"records_accepted", c.ingest.records_accepted},
                        {"records_duplicate", c.ingest.records_duplicate},
                        {"records_rejected", c.ingest.records_rejected},
                        {"records_suspicious", c.ingest.records_suspicious},
                        {"batches_accepted", c.ingest.batches_accepted},
                        {"batches_duplicate", c.ingest.batches_duplicate},
                        {"batches_refused", c.ingest.batches_refused},
                        {"requests", c.requests},
                        {"error_replies", c.error_replies},
                        {"unroutable_replies", sc.transport.unroutable_replies},
                        {"busy_replies", sc.transport.busy_replies},
                        {"group_commits", sc.groups},
                        {"grouped_uploads", sc.grouped_uploads},
                        {"group_commit_failures", sc.group_commit_failures},
                        {"ledger_balanced", conserved.is_ok()}};
    if (!conserved.is_ok()) j["ledger_problem"] = conserved.message();
    return j;
  }

 private:
  EmbeddedBackend() : ctx_(1) {}
  void halt() {
    if (thread_.joinable()) {
      server_->stop();
      thread_.join();
    }
  }

  sim::WallClock clock_;
  zmq::context_t ctx_;
  std::unique_ptr<backend::Backend> backend_;
  citycard::load::City city_;
  std::int64_t issue_us_ = 0;
  std::unique_ptr<backend::Server> server_;
  std::thread thread_;
};

// What else the machine was doing: load figures from a shared 2-core box mean little without
// it. The 1-minute load average from /proc/loadavg (Linux), or -1.
double load_average_1m() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return -1;
  double v = -1;
  if (std::fscanf(f, "%lf", &v) != 1) v = -1;
  std::fclose(f);
  return v;
}

std::string mix_text(const LoadKnobs& k) {
  std::string s;
  for (const auto& [op, w] : k.mix) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "%s%s=%g", s.empty() ? "" : ",", op.c_str(), w);
    s += buf;
  }
  return s;
}

// Did the backend keep up with what was offered?
bool saturated(const nlohmann::json& f) {
  return f["achieved_per_s"].get<double>() < 0.9 * f["offered_per_s"].get<double>() ||
         f["refused"].get<std::uint64_t>() > 0 ||
         f["unfinished_requests"].get<std::uint64_t>() > 0 ||
         f["unfinished_records"].get<std::uint64_t>() > 0;
}

nlohmann::json step_json(double rate, const nlohmann::json& f) {
  nlohmann::json ops = nlohmann::json::object();
  for (const auto& [name, op] : f["ops"].items()) {
    ops[name] = {{"p99_ms", op["latency"]["p99_ms"]}, {"achieved_per_s", op["achieved_per_s"]}};
  }
  return {{"rate_per_s", rate},
          {"offered_per_s", f["offered_per_s"]},
          {"achieved_per_s", f["achieved_per_s"]},
          {"records_per_s", f["records_per_s"]},
          {"p50_ms", f["p50_ms"]},
          {"p90_ms", f["p90_ms"]},
          {"p99_ms", f["p99_ms"]},
          {"p999_ms", f["p999_ms"]},
          {"max_ms", f["max_ms"]},
          {"errors", f["errors"]},
          {"refused", f["refused"]},
          {"late_sends", f["late_sends"]},
          {"unfinished_requests", f["unfinished_requests"]},
          {"worker_busy_fraction", f["worker_busy_fraction"]},
          {"saturated", saturated(f)},
          {"ops", ops}};
}

std::string step_line(std::size_t i, const nlohmann::json& s) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "%4zu %11.0f %11.0f %10.0f %8.2f %8.2f %9.2f %9.2f %7llu %8llu %8llu  %s", i,
                s["offered_per_s"].get<double>(), s["achieved_per_s"].get<double>(),
                s["records_per_s"].get<double>(), s["p50_ms"].get<double>(),
                s["p99_ms"].get<double>(), s["p999_ms"].get<double>(), s["max_ms"].get<double>(),
                static_cast<unsigned long long>(s["errors"].get<std::uint64_t>()),
                static_cast<unsigned long long>(s["refused"].get<std::uint64_t>()),
                static_cast<unsigned long long>(s["late_sends"].get<std::uint64_t>()),
                s["saturated"].get<bool>() ? "saturated" : "kept up");
  return buf;
}

constexpr const char* kSweepHeader =
    "step   offered/s  achieved/s  records/s   p50 ms   p99 ms  p99.9 ms    max ms  errors  "
    "refused     late";

// The steps of a sweep: the given rates, or doubling from the plan's rate (1,000/s if none).
std::vector<double> sweep_rates(const LoadPlan& plan, const LoadRunOptions& o) {
  if (!o.sweep_rates.empty()) return o.sweep_rates;
  std::vector<double> rates;
  double r = plan.knobs.rate_per_s > 0 ? plan.knobs.rate_per_s : 1000;
  for (int i = 0; i < 16 && r <= sim::RateCurve::kRatePerSMax; ++i, r *= 2) rates.push_back(r);
  return rates;
}

struct RunOutcome {
  LoadTotals totals;
  nlohmann::json extra = nlohmann::json::object();
};

Result<RunOutcome> run_sweep(const LoadPlan& plan, const LoadRunOptions& o,
                             const citycard::load::City& city, const std::string& endpoint,
                             RunReport& report) {
  sim::WallClock clock;
  LocalLoad local(plan.knobs, plan.op_names(), city, endpoint, "agent-0",
                  static_cast<std::size_t>(plan.knobs.threads), clock);
  if (Status s = local.prepare(); !s) return Result<RunOutcome>(s);
  const auto rates = sweep_rates(plan, o);
  nlohmann::json steps = nlohmann::json::array();
  std::vector<std::string> lines;
  RunOutcome best;
  bool have_best = false;
  for (std::size_t i = 0; i < rates.size() && !load_stop_flag().load(); ++i) {
    auto curve = sim::RateCurve::flat(plan.knobs.duration_us, rates[i]);
    if (!curve) return Result<RunOutcome>(curve.status());
    report.say("sweep step " + std::to_string(i) + ": " + std::to_string(std::llround(rates[i])) +
               "/s for " + std::to_string(plan.knobs.duration_us / 1'000'000) + " s");
    LoadTotals t = local.run(
        *curve, clock.now_us(), i, [&](const WindowStats& w) { report.window(w, i); },
        load_stop_flag());
    const nlohmann::json f =
        totals_json(t, plan.op_names(), static_cast<double>(plan.knobs.duration_us) / 1e6);
    nlohmann::json s = step_json(rates[i], f);
    lines.push_back(step_line(i, s));
    report.say(kSweepHeader);
    for (const auto& l : lines) report.say(l);
    steps.push_back(s);
    if (!s["saturated"].get<bool>() || !have_best) {
      best.totals = std::move(t);
      have_best = true;
    }
    if (s["saturated"].get<bool>() && o.sweep_until_saturated) break;
  }
  best.extra["sweep"] = steps;
  return best;
}

Result<RunOutcome> run_local(const LoadPlan& plan, const citycard::load::City& city,
                             const std::string& endpoint, RunReport& report) {
  sim::WallClock clock;
  LocalLoad local(plan.knobs, plan.op_names(), city, endpoint, "agent-0",
                  static_cast<std::size_t>(plan.knobs.threads), clock);
  if (Status s = local.prepare(); !s) return Result<RunOutcome>(s);
  RunOutcome out;
  out.totals = local.run(
      plan.curve, clock.now_us(), 0, [&](const WindowStats& w) { report.window(w); },
      load_stop_flag());
  return out;
}

}  // namespace

int run_load(const LoadPlan& plan, const LoadRunOptions& o) {
  RunReport report(plan, o.out_dir, o.quiet);
  auto fail = [&](const std::string& why) {
    std::fprintf(stderr, "citycard load: %s\n", why.c_str());
    return kLoadExitUsage;
  };
  if (Status s = report.open(); !s) return fail(s.to_string());
  report.say("citycard load: " + plan.scenario + "  seed " + std::to_string(plan.knobs.seed) +
             "  " + sim::arrival_process_name(plan.knobs.arrivals) + " arrivals, " +
             (plan.knobs.flat ? "flat" : "scenario curve") + ", peak " +
             std::to_string(std::llround(plan.curve.peak_per_s())) + "/s, " +
             std::to_string(std::llround(plan.curve.expected_arrivals(plan.curve.end_us()))) +
             " arrivals expected over " +
             std::to_string(static_cast<double>(plan.knobs.duration_us) / 1e6).substr(0, 5) +
             " s; mix " + mix_text(plan.knobs));

  if (!plan.ignored.empty()) {
    std::string names;
    for (const auto& n : plan.ignored) names += (names.empty() ? "" : ", ") + n + "()";
    report.say("ignored in wall time (virtual-time only): " + names);
  }

  const double load_before = load_average_1m();
  std::unique_ptr<EmbeddedBackend> embedded;
  citycard::load::City city;
  std::string endpoint = o.backend;
  if (endpoint.empty()) {
    std::string data = o.data_dir;
    if (data.empty()) {
      data = o.out_dir + "/backend-data";
      std::error_code ec;
      for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(data + "/backend.db" + suffix, ec);
    }
    auto e = EmbeddedBackend::start(plan, data, o.durable, o.group_commit, o.backend_listen);
    if (!e) return fail("embedded backend: " + e.status().to_string());
    embedded = std::move(e).value();
    city = embedded->city();
    endpoint = embedded->endpoint();
    report.say("embedded backend on " + endpoint + " (store " + data + "/backend.db, " +
               (o.durable ? "synchronous=FULL: every ack is on disk" : "synchronous=NORMAL") +
               ", group commit of up to " + std::to_string(o.group_commit) + " uploads" +
               "); issued " + std::to_string(city.cards_size()) + " cards and " +
               std::to_string(city.terminals_size()) + " buses in " +
               std::to_string(embedded->issue_us() / 1000) + " ms");
  } else {
    if (o.city_file.empty()) {
      return fail(
          "--backend needs --city FILE: provision the city into the backend's data "
          "folder first with `citycard load SCENARIO --provision DIR` (see "
          "scenarios/README.md)");
    }
    auto c = read_city_file(o.city_file);
    if (!c) return fail(c.status().to_string());
    city = std::move(c).value();
    report.say("backend " + endpoint + "; city from " + o.city_file + " (" +
               std::to_string(city.cards_size()) + " cards, " +
               std::to_string(city.terminals_size()) + " buses; " + city.provenance() + ")");
  }

  Result<RunOutcome> outcome = Result<RunOutcome>(Errc::kInternal, "not run");
  nlohmann::json agents;
  if (o.agents > 0) {
    auto r = coordinate(plan, o, city, endpoint, report);
    if (r) {
      outcome = RunOutcome{std::move(r->totals), nlohmann::json::object()};
      agents = std::move(r->agents);
    } else {
      outcome = Result<RunOutcome>(r.status());
    }
  } else if (o.sweep || !o.sweep_rates.empty()) {
    outcome = run_sweep(plan, o, city, endpoint, report);
  } else {
    outcome = run_local(plan, city, endpoint, report);
  }
  nlohmann::json backend_json = {
      {"endpoint", endpoint},
      {"embedded", embedded != nullptr},
      {"durable", embedded ? nlohmann::json(o.durable) : nullptr},
      {"group_commit", embedded ? nlohmann::json(o.group_commit) : nullptr}};
  if (embedded) backend_json.update(embedded->stop());
  if (!outcome) return fail(outcome.status().to_string());

  nlohmann::json summary = {{"tool", "citycard load"}, {"seed", plan.knobs.seed}};
  summary.update(plan.to_json());
  summary.update(totals_json(outcome->totals, plan.op_names(),
                             static_cast<double>(plan.knobs.duration_us) / 1e6));
  summary.update(outcome->extra);
  summary["backend"] = backend_json;
  summary["host"] = {{"cpus", std::thread::hardware_concurrency()},
                     {"load_average_1m_before", load_before},
                     {"load_average_1m_after", load_average_1m()}};
  if (!agents.is_null()) summary["agents"] = agents;
  summary["windows"] = report.windows();

  bool bad = summary["errors"].get<std::uint64_t>() > 0 ||
             summary["refused"].get<std::uint64_t>() > 0 ||
             summary["unfinished_requests"].get<std::uint64_t>() > 0 ||
             summary["unfinished_records"].get<std::uint64_t>() > 0 ||
             !backend_json.value("ledger_balanced", true);
  // A sweep is meant to find saturation: only the books can fail it.
  if (summary.contains("sweep")) bad = !backend_json.value("ledger_balanced", true);
  if (load_stop_flag().load()) summary["stopped_early"] = true;
  const int exit_code = bad ? kLoadExitErrors : kLoadExitOk;
  summary["exit_code"] = exit_code;
  if (Status s = report.write_summary(summary); !s) return fail(s.to_string());
  report.report(summary);
  report.say("summary: " + o.out_dir + "/summary.json  windows: " + o.out_dir +
             "/windows.jsonl  (seed " + std::to_string(plan.knobs.seed) + ")");
  if (Status s = reports::render_load_run(o.out_dir, summary); !s) return fail(s.to_string());
  report.say("report: " + o.out_dir + "/report.html  junit: " + o.out_dir + "/junit.xml");
  return exit_code;
}

Result<std::string> provision_city(const LoadPlan& plan, const std::string& data_dir,
                                   std::uint64_t key_seed) {
  using R = Result<std::string>;
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  if (ec) return R(Errc::kIo, "cannot create " + data_dir + ": " + ec.message());
  sim::WallClock clock;
  backend::BackendOptions bo;
  bo.key_seed = key_seed;
  bo.clock_origin_epoch2000_s = city_calendar_origin(clock);
  auto be = backend::Backend::open(data_dir + "/backend.db", bo, clock);
  if (!be) return R(be.status());
  // The seed draws the balances; new serials and terminal ids come from the store, so a second
  // provisioning adds a fresh city beside the first.
  auto city = issue_city(**be, plan.city, plan.knobs.seed);
  if (!city) return R(city.status());
  city->set_provenance("provisioned into " + data_dir + "/backend.db with key seed " +
                       std::to_string(key_seed) + " at unix time " +
                       std::to_string(sim::unix_time_s()));
  const std::string path = data_dir + "/load-city.pb";
  if (Status s = write_city_file(path, *city); !s) return R(s);
  return path;
}

}  // namespace citycard::scenarios
