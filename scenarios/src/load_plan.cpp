// Reading a scenario in load mode: the same file `citycard run` runs in virtual time, evaluated
// with bindings that only record what the scenario asks for (city, phases, load profile) and
// stop at run_until.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <stdexcept>

#include "citycard/scenarios/load.h"
#include "citycard/scenarios/lua_sandbox.h"
#include "load_ops.h"

namespace citycard::scenarios {

namespace {

// Virtual time stands still while a load plan is read: nothing in it runs.
class StillClock final : public sim::Clock {
 public:
  std::int64_t now_us() const override { return 0; }
};

struct Phase {
  std::int64_t from_us;
  std::int64_t to_us;
  double per_hour;
};

// What the load-mode bindings collect.
struct PlanContext {
  LoadPlan plan;
  bool city_given = false;
  std::int64_t start_time_of_day_s = 0;
  std::vector<Phase> phases;
  std::optional<std::int64_t> end_us;  // run_until
  bool stopped = false;                // run_until (or drain) reached: the rest is not read
  // describe{ load = {...} } values, applied under the command line's.
  LoadOverrides profile;
  std::vector<std::string> ignored;  // virtual-time-only calls seen (see l_ignored)
};

constexpr const char* kStopMarker = "citycard load: scenario read up to run_until";

PlanContext& ctx(lua_State* L) {
  return *static_cast<PlanContext*>(lua_touserdata(L, lua_upvalueindex(1)));
}

void require_table(lua_State* L, const char* fn) {
  if (!lua_istable(L, 1)) throw std::invalid_argument(std::string(fn) + " takes a table");
}

std::int64_t virtual_us_of(PlanContext& c, const std::string& text) {
  if (!c.city_given) throw std::invalid_argument("call city{} before naming times of day");
  std::int64_t tod;
  if (!parse_time_of_day(text, tod)) {
    throw std::invalid_argument("'" + text + "' is not a time of day like \"07:30\"");
  }
  if (tod < c.start_time_of_day_s) {
    throw std::invalid_argument("'" + text + "' is before the city's start time");
  }
  return (tod - c.start_time_of_day_s) * 1'000'000;
}

std::optional<std::int64_t> opt_ms_field(lua_State* L, int idx, const char* key) {
  const std::int64_t v = opt_int_field(L, idx, key, -1);
  if (v == -1) return std::nullopt;
  return v * 1000;
}

// describe{ load = { rate_per_s, duration_s, arrivals, flat, mix = { op = weight }, threads,
//   batch_size, upload_interval_ms, timeout_ms, window_ms, late_ms, in_flight_max } }
void read_load_profile(lua_State* L, int idx, LoadOverrides& p) {
  if (const double r = opt_number_field(L, idx, "rate_per_s", -1); r != -1) p.rate_per_s = r;
  if (const std::int64_t d = opt_int_field(L, idx, "duration_s", -1); d != -1) {
    p.duration_us = d * 1'000'000;
  }
  const std::string arrivals = opt_string_field(L, idx, "arrivals", "");
  if (!arrivals.empty()) {
    p.arrivals = sim::arrival_process_from_name(arrivals);
    if (!p.arrivals)
      throw std::invalid_argument("load.arrivals must be \"poisson\" or \"constant\"");
  }
  lua_getfield(L, idx, "flat");
  if (!lua_isnil(L, -1)) p.flat = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, idx, "mix");
  if (lua_istable(L, -1)) {
    std::vector<std::pair<std::string, double>> mix;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) != LUA_TSTRING || !lua_isnumber(L, -1)) {
        throw std::invalid_argument("load.mix maps operation names to weights");
      }
      mix.emplace_back(lua_tostring(L, -2), lua_tonumber(L, -1));
      lua_pop(L, 1);
    }
    // Lua tables have no order; sort so the op order (and the stats layout) is stable.
    std::sort(mix.begin(), mix.end());
    p.mix = std::move(mix);
  } else if (!lua_isnil(L, -1)) {
    throw std::invalid_argument("load.mix must be a table like { swipe = 0.9, ping = 0.1 }");
  }
  lua_pop(L, 1);
  if (const std::int64_t t = opt_int_field(L, idx, "threads", -1); t != -1) p.threads = t;
  if (const std::int64_t b = opt_int_field(L, idx, "batch_size", -1); b != -1) p.batch_size = b;
  if (auto v = opt_ms_field(L, idx, "upload_interval_ms")) p.upload_interval_us = v;
  if (auto v = opt_ms_field(L, idx, "timeout_ms")) p.timeout_us = v;
  if (auto v = opt_ms_field(L, idx, "window_ms")) p.window_us = v;
  if (auto v = opt_ms_field(L, idx, "late_ms")) p.late_us = v;
  if (const std::int64_t m = opt_int_field(L, idx, "in_flight_max", -1); m != -1) {
    p.in_flight_max = m;
  }
}

int l_describe(lua_State* L) {
  return guarded(L, [&] {
    require_table(L, "describe");
    PlanContext& c = ctx(L);
    c.plan.scenario = opt_string_field(L, 1, "name", c.plan.scenario);
    lua_getfield(L, 1, "load");
    if (lua_istable(L, -1)) {
      read_load_profile(L, lua_gettop(L), c.profile);
    } else if (!lua_isnil(L, -1)) {
      throw std::invalid_argument("describe{ load = ... } must be a table");
    }
    lua_pop(L, 1);
    return 0;
  });
}

// The same table `citycard run` reads (lua_api.cpp, l_city), with the same defaults; the
// network fields are accepted and ignored: in wall time the network is the real one.
int l_city(lua_State* L) {
  return guarded(L, [&] {
    require_table(L, "city");
    PlanContext& c = ctx(L);
    if (c.city_given) throw std::invalid_argument("city{} can be called only once");
    CityConfig& cfg = c.plan.city;
    const std::string start = opt_string_field(L, 1, "start", "2026-11-23 07:00");
    if (!parse_calendar(start, cfg.start_epoch2000_s)) {
      throw std::invalid_argument("start '" + start +
                                  "' is not a date-time like \"2026-11-23 07:00\"");
    }
    c.start_time_of_day_s = cfg.start_epoch2000_s % 86'400;
    lua_getfield(L, 1, "cards");
    if (lua_istable(L, -1)) {
      cfg.cards = opt_int_field(L, -1, "count", cfg.cards);
      lua_getfield(L, -1, "balance_fen");
      if (lua_istable(L, -1)) {
        cfg.balance_fen_min = opt_int_field(L, -1, "min", cfg.balance_fen_min);
        cfg.balance_fen_max = opt_int_field(L, -1, "max", cfg.balance_fen_max);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "routes");
    if (lua_istable(L, -1)) {
      cfg.routes = opt_int_field(L, -1, "count", cfg.routes);
      cfg.buses_per_route = opt_int_field(L, -1, "buses_per_route", cfg.buses_per_route);
      cfg.fare_fen = opt_int_field(L, -1, "fare_fen", cfg.fare_fen);
      cfg.operator_id = opt_string_field(L, -1, "operator", cfg.operator_id);
    }
    lua_pop(L, 1);
    cfg.upload_interval_us = opt_int_field(L, 1, "upload_interval_s", 60) * 1'000'000;
    cfg.batch_size_max = opt_int_field(L, 1, "batch_size", cfg.batch_size_max);
    if (Status s = cfg.validate(); !s) throw std::invalid_argument(s.message());
    c.city_given = true;
    return 0;
  });
}

// phase { from, to, swipes_per_hour [, curve = { weights }] }: as in virtual time
// (World::add_phase), a curve cuts the window into equal segments whose rates are
// swipes_per_hour scaled by weight / max(weight).
int l_phase(lua_State* L) {
  return guarded(L, [&] {
    require_table(L, "phase");
    PlanContext& c = ctx(L);
    const std::int64_t from = virtual_us_of(c, opt_string_field(L, 1, "from", ""));
    const std::int64_t to = virtual_us_of(c, opt_string_field(L, 1, "to", ""));
    const double rate = opt_number_field(L, 1, "swipes_per_hour", 0);
    if (to <= from) throw std::invalid_argument("a phase must end after it starts");
    if (!(rate > 0) || rate > 1e9) {
      throw std::invalid_argument("swipes_per_hour must be in (0, 1e9]");
    }
    std::vector<double> curve;
    lua_getfield(L, 1, "curve");
    if (lua_istable(L, -1)) {
      const lua_Integer n = luaL_len(L, -1);
      if (n > 1000) throw std::invalid_argument("a curve has at most 1000 points");
      for (lua_Integer i = 1; i <= n; ++i) {
        lua_rawgeti(L, -1, i);
        if (!lua_isnumber(L, -1)) throw std::invalid_argument("curve must be a list of numbers");
        curve.push_back(lua_tonumber(L, -1));
        lua_pop(L, 1);
      }
    } else if (!lua_isnil(L, -1)) {
      throw std::invalid_argument("field 'curve' must be a list of weights");
    }
    lua_pop(L, 1);
    if (curve.empty()) {
      c.phases.push_back({from, to, rate});
      return 0;
    }
    double peak = 0;
    for (double w : curve) {
      if (!(w >= 0)) throw std::invalid_argument("curve weights must be >= 0");
      peak = std::max(peak, w);
    }
    if (peak <= 0) throw std::invalid_argument("a curve needs a weight above zero");
    const auto n = static_cast<std::int64_t>(curve.size());
    for (std::int64_t i = 0; i < n; ++i) {
      const double w = curve[static_cast<std::size_t>(i)];
      if (w <= 0) continue;
      c.phases.push_back(
          {from + (to - from) * i / n, from + (to - from) * (i + 1) / n, rate * w / peak});
    }
    return 0;
  });
}

// Virtual-time-only parts of a scenario: simulated faults, outages and crashes (the network in
// wall time is the real one), riders (their trip chains are a virtual-time model), at() and
// expect_within() (nothing runs while a load plan is read). Accepted so the same file serves
// both modes, listed in summary.json as ignored, and said once on stderr.
int l_ignored(lua_State* L) {
  return guarded(L, [&] {
    PlanContext& c = ctx(L);
    lua_Debug ar;
    std::string name = "?";
    if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name) name = ar.name;
    if (std::find(c.ignored.begin(), c.ignored.end(), name) == c.ignored.end()) {
      c.ignored.push_back(name);
    }
    return 0;
  });
}

// run_until "09:00": the end of the load window. The script stops here.
int l_run_until(lua_State* L) {
  return guarded(L, [&]() -> int {
    PlanContext& c = ctx(L);
    if (lua_type(L, 1) != LUA_TSTRING) throw std::invalid_argument("run_until takes \"HH:MM\"");
    c.end_us = virtual_us_of(c, lua_tostring(L, 1));
    c.stopped = true;
    throw std::runtime_error(kStopMarker);
  });
}

// drain() before any run_until: the load window ends with the last phase.
int l_drain(lua_State* L) {
  return guarded(L, [&]() -> int {
    ctx(L).stopped = true;
    throw std::runtime_error(kStopMarker);
  });
}

// stats(), ledger(), clearing(), expect() report on a run that has happened; in load mode
// nothing has run while the script is read.
int l_after_the_run(lua_State* L) {
  return guarded(L, [&]() -> int {
    throw std::invalid_argument(
        "stats/ledger/clearing/expect are not available in load mode before run_until: "
        "citycard load reads the scenario up to run_until, then runs it in wall time");
  });
}

int l_now(lua_State* L) {
  lua_pushnumber(L, 0);
  return 1;
}

int l_seed(lua_State* L) {
  lua_pushinteger(L, static_cast<lua_Integer>(ctx(L).plan.knobs.seed));
  return 1;
}

// The scenario's phases as a curve over virtual time: overlapping phases add up (in virtual
// time each phase is its own Poisson stream), gaps have rate 0. Rates in arrivals per second.
std::vector<sim::RateSegment> virtual_curve(const std::vector<Phase>& phases, std::int64_t end_us) {
  std::set<std::int64_t> cuts{0, end_us};
  for (const auto& p : phases) {
    cuts.insert(std::clamp<std::int64_t>(p.from_us, 0, end_us));
    cuts.insert(std::clamp<std::int64_t>(p.to_us, 0, end_us));
  }
  std::vector<sim::RateSegment> out;
  for (auto it = cuts.begin(); std::next(it) != cuts.end(); ++it) {
    const std::int64_t a = *it, b = *std::next(it);
    double per_hour = 0;
    for (const auto& p : phases) {
      if (p.from_us <= a && p.to_us >= b) per_hour += p.per_hour;
    }
    out.push_back({a, b, per_hour / 3600.0});
  }
  return out;
}

void apply_overrides(LoadKnobs& k, const LoadOverrides& o) {
  if (o.seed) k.seed = *o.seed;
  if (o.duration_us) k.duration_us = *o.duration_us;
  if (o.rate_per_s) k.rate_per_s = *o.rate_per_s;
  if (o.flat) k.flat = *o.flat;
  if (o.arrivals) k.arrivals = *o.arrivals;
  if (o.mix) k.mix = *o.mix;
  if (o.threads) k.threads = *o.threads;
  if (o.batch_size) k.batch_size = *o.batch_size;
  if (o.upload_interval_us) k.upload_interval_us = *o.upload_interval_us;
  if (o.aligned_uploads) k.aligned_uploads = *o.aligned_uploads;
  if (o.timeout_us) k.timeout_us = *o.timeout_us;
  if (o.window_us) k.window_us = *o.window_us;
  if (o.late_us) k.late_us = *o.late_us;
  if (o.in_flight_max) k.in_flight_max = *o.in_flight_max;
}

Result<sim::RateCurve> wall_curve(const PlanContext& c, const LoadKnobs& k) {
  if (k.flat) {
    if (!(k.rate_per_s > 0)) {
      return Result<sim::RateCurve>(Errc::kInvalidArgument, "--flat needs --rate");
    }
    return sim::RateCurve::flat(k.duration_us, k.rate_per_s);
  }
  if (c.phases.empty()) {
    return Result<sim::RateCurve>(Errc::kInvalidArgument,
                                  "the scenario has no phase{}: give one, or run it --flat with "
                                  "--rate");
  }
  std::int64_t end_us = c.end_us.value_or(0);
  if (!c.end_us) {
    for (const auto& p : c.phases) end_us = std::max(end_us, p.to_us);
  }
  if (end_us <= 0) {
    return Result<sim::RateCurve>(Errc::kInvalidArgument, "run_until must be after the start");
  }
  // Time: the window [0, end) is mapped linearly onto [0, duration).
  const double time_factor = static_cast<double>(k.duration_us) / static_cast<double>(end_us);
  std::vector<sim::RateSegment> wall;
  for (const auto& s : virtual_curve(c.phases, end_us)) {
    const auto a =
        static_cast<std::int64_t>(std::llround(static_cast<double>(s.start_us) * time_factor));
    const auto b =
        static_cast<std::int64_t>(std::llround(static_cast<double>(s.end_us) * time_factor));
    if (b <= a) continue;
    // Rate: the same arrivals in less time, unless a peak rate is given, which sets the
    // curve's highest segment and keeps its shape.
    wall.push_back({a, b, s.per_s / time_factor});
  }
  auto curve = sim::RateCurve::make(std::move(wall));
  if (!curve) return curve;
  if (k.rate_per_s > 0 && curve->peak_per_s() > 0) {
    return curve->scaled(k.rate_per_s / curve->peak_per_s());
  }
  return curve;
}

}  // namespace

Status LoadKnobs::validate() const {
  auto bad = [](const std::string& m) { return Status(Errc::kInvalidArgument, m); };
  if (duration_us < 100'000 || duration_us > 24LL * 3600 * 1'000'000) {
    return bad("duration must be 100 ms .. 24 h");
  }
  if (!(rate_per_s >= 0) || rate_per_s > sim::RateCurve::kRatePerSMax) {
    return bad("rate must be in [0, 1e8] per second");
  }
  if (mix.empty()) return bad("the mix needs at least one operation");
  double total = 0;
  for (const auto& [op, w] : mix) {
    if (op != kSwipeOp && !is_request_op(op)) {
      return bad("unknown operation '" + op + "' in the mix (known: " + known_ops_text() + ")");
    }
    if (!(w >= 0) || !std::isfinite(w)) return bad("mix weight of '" + op + "' must be >= 0");
    total += w;
  }
  if (!(total > 0)) return bad("the mix weights must not all be zero");
  for (std::size_t i = 0; i < mix.size(); ++i) {
    for (std::size_t j = i + 1; j < mix.size(); ++j) {
      if (mix[i].first == mix[j].first) return bad("'" + mix[i].first + "' twice in the mix");
    }
  }
  if (threads < 1 || threads > 64) return bad("threads must be 1..64");
  if (batch_size < 1 || batch_size > 10'000) return bad("batch size must be 1..10000");
  if (upload_interval_us < 1'000) return bad("upload interval must be >= 1 ms");
  if (timeout_us < 1'000 || timeout_us > 600'000'000) return bad("timeout must be 1 ms .. 10 min");
  if (window_us < 10'000) return bad("window must be >= 10 ms");
  if (late_us < 0) return bad("late threshold must be >= 0");
  if (in_flight_max < 1 || in_flight_max > 1'000'000) return bad("in-flight max must be 1..1e6");
  if (queue_records_max < batch_size) return bad("a bus must hold at least one batch");
  if (retry_us < 1'000 || drain_us < 0) return bad("retry must be >= 1 ms, drain >= 0");
  return Status::ok();
}

nlohmann::json LoadKnobs::to_json() const {
  nlohmann::json mix_json = nlohmann::json::object();
  for (const auto& [op, w] : mix) mix_json[op] = w;
  return {{"seed", seed},
          {"duration_s", static_cast<double>(duration_us) / 1e6},
          {"rate_per_s", rate_per_s},
          {"flat", flat},
          {"arrivals", sim::arrival_process_name(arrivals)},
          {"mix", mix_json},
          {"threads", threads},
          {"batch_size", batch_size},
          {"upload_interval_ms", static_cast<double>(upload_interval_us) / 1e3},
          {"aligned_uploads", aligned_uploads},
          {"timeout_ms", static_cast<double>(timeout_us) / 1e3},
          {"window_ms", static_cast<double>(window_us) / 1e3},
          {"late_ms", static_cast<double>(late_us) / 1e3},
          {"in_flight_max", in_flight_max},
          {"queue_records_max", queue_records_max},
          {"retry_ms", static_cast<double>(retry_us) / 1e3},
          {"drain_ms", static_cast<double>(drain_us) / 1e3}};
}

std::vector<std::string> LoadPlan::op_names() const {
  std::vector<std::string> names{kSwipeOp, kUploadOp, kFlushOp};
  for (const auto& [op, w] : knobs.mix) {
    if (op != kSwipeOp) names.push_back(op);
  }
  return names;
}

nlohmann::json LoadPlan::to_json() const {
  nlohmann::json curve_json = nlohmann::json::array();
  for (const auto& s : curve.segments()) {
    curve_json.push_back({{"start_s", static_cast<double>(s.start_us) / 1e6},
                          {"end_s", static_cast<double>(s.end_us) / 1e6},
                          {"per_s", s.per_s}});
  }
  return {{"scenario", scenario},
          {"scenario_path", scenario_path},
          {"ignored_in_wall_time", ignored},
          {"knobs", knobs.to_json()},
          {"city",
           {{"cards", city.cards},
            {"balance_fen_min", city.balance_fen_min},
            {"balance_fen_max", city.balance_fen_max},
            {"routes", city.routes},
            {"buses_per_route", city.buses_per_route},
            {"fare_fen", city.fare_fen},
            {"operator", city.operator_id}}},
          {"curve", curve_json},
          {"expected_arrivals", curve.expected_arrivals(curve.end_us())}};
}

Result<LoadPlan> read_load_plan(const std::string& scenario_path, const std::string& lib_root,
                                const LoadOverrides& overrides) {
  if (!std::filesystem::is_regular_file(scenario_path)) {
    return Result<LoadPlan>(Errc::kNotFound, "no such scenario file: " + scenario_path);
  }
  PlanContext c;
  c.plan.scenario = std::filesystem::path(scenario_path).stem().string();
  c.plan.scenario_path = scenario_path;
  if (overrides.seed) c.plan.knobs.seed = *overrides.seed;
  {
    StillClock clock;
    SandboxLimits limits;
    limits.wall_ms_max = 60'000;  // reading a plan is quick; a loop in it is a bug
    LuaSandbox sandbox(limits, lib_root, clock, 0, sim::Rng(c.plan.knobs.seed).fork("lua"));
    static const luaL_Reg kApi[] = {
        {"describe", l_describe},
        {"city", l_city},
        {"phase", l_phase},
        {"run_until", l_run_until},
        {"drain", l_drain},
        {"stats", l_after_the_run},
        {"ledger", l_after_the_run},
        {"clearing", l_after_the_run},
        {"expect", l_after_the_run},
        {"now", l_now},
        {"seed", l_seed},
        {"riders", l_ignored},
        {"faults", l_ignored},
        {"outage", l_ignored},
        {"backend_crash", l_ignored},
        {"at", l_ignored},
        {"expect_within", l_ignored},
    };
    for (const auto& f : kApi) sandbox.set_global_function(f.name, f.func, &c);
    sandbox.lock_globals();
    Status s = sandbox.run_file(scenario_path);
    if (!s && !c.stopped) return Result<LoadPlan>(Errc::kInvalidArgument, s.message());
  }
  if (!c.city_given) {
    return Result<LoadPlan>(Errc::kInvalidArgument,
                            scenario_path + ": a load scenario needs a city{}");
  }
  LoadPlan plan = std::move(c.plan);
  plan.ignored = std::move(c.ignored);
  apply_overrides(plan.knobs, c.profile);
  apply_overrides(plan.knobs, overrides);
  if (overrides.cards) plan.city.cards = *overrides.cards;
  if (overrides.buses) {
    if (*overrides.buses < 1) return Result<LoadPlan>(Errc::kInvalidArgument, "--buses >= 1");
    // Exactly that many buses: spread over the scenario's routes when they divide evenly,
    // else one bus per route.
    const std::int64_t n = *overrides.buses;
    const std::int64_t routes = std::min(plan.city.routes, n);
    plan.city.routes = n % routes == 0 ? routes : n;
    plan.city.buses_per_route = n / plan.city.routes;
  }
  if (Status s = plan.city.validate(); !s) return Result<LoadPlan>(s);
  if (Status s = plan.knobs.validate(); !s) return Result<LoadPlan>(s);
  auto curve = wall_curve(c, plan.knobs);
  if (!curve) return Result<LoadPlan>(curve.status());
  plan.curve = std::move(curve).value();
  return plan;
}

Result<std::vector<std::pair<std::string, double>>> parse_mix(const std::string& text) {
  using Mix = std::vector<std::pair<std::string, double>>;
  Mix mix;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    const std::string item = text.substr(start, comma - start);
    start = comma + 1;
    if (item.empty()) continue;
    const std::size_t eq = item.find('=');
    std::string name = item.substr(0, eq);
    double weight = 1.0;
    if (eq != std::string::npos) {
      try {
        std::size_t used = 0;
        weight = std::stod(item.substr(eq + 1), &used);
        if (used != item.size() - eq - 1) throw std::invalid_argument(item);
      } catch (const std::exception&) {
        return Result<Mix>(Errc::kInvalidArgument, "mix entry '" + item + "' is not op=weight");
      }
    }
    mix.emplace_back(std::move(name), weight);
  }
  if (mix.empty()) return Result<Mix>(Errc::kInvalidArgument, "empty mix");
  return mix;
}

Result<std::int64_t> parse_duration_us(const std::string& text) {
  static const std::map<std::string, double> kUnits{
      {"", 1e6}, {"s", 1e6}, {"ms", 1e3}, {"us", 1}, {"m", 60e6}, {"min", 60e6}, {"h", 3600e6}};
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    return Result<std::int64_t>(Errc::kInvalidArgument, "'" + text + "' is not a duration");
  }
  auto unit = kUnits.find(text.substr(used));
  if (unit == kUnits.end() || !(v >= 0) || !std::isfinite(v)) {
    return Result<std::int64_t>(Errc::kInvalidArgument,
                                "'" + text + "' is not a duration like 20s, 500ms or 2m");
  }
  return static_cast<std::int64_t>(std::llround(v * unit->second));
}

}  // namespace citycard::scenarios
