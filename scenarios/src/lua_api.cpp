#include "lua_api.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <stdexcept>

namespace citycard::scenarios {

namespace {

ScenarioContext& ctx(lua_State* L) {
  return *static_cast<ScenarioContext*>(lua_touserdata(L, lua_upvalueindex(1)));
}

void check(const Status& s) {
  if (!s) throw std::runtime_error(s.message());
}

void require_table(lua_State* L, const char* fn) {
  if (!lua_istable(L, 1)) throw std::invalid_argument(std::string(fn) + " takes a table");
}

// "07:30" on the city's start day -> virtual microseconds since the start.
std::int64_t virtual_us_of(ScenarioContext& c, const std::string& text) {
  if (!c.world.built()) throw std::invalid_argument("call city{} before naming times of day");
  if (std::int64_t at; parse_calendar(text, at)) {  // "2026-11-24 07:30": another day
    const std::int64_t since = at - c.world.config().start_epoch2000_s;
    if (since < 0) throw std::invalid_argument("'" + text + "' is before the city's start");
    return since * 1'000'000;
  }
  std::int64_t tod;
  if (!parse_time_of_day(text, tod)) {
    throw std::invalid_argument("'" + text + "' is not a time of day like \"07:30\"");
  }
  if (tod < c.start_time_of_day_s) {
    throw std::invalid_argument("'" + text + "' is before the city's start time");
  }
  return (tod - c.start_time_of_day_s) * 1'000'000;
}

// "file.lua:12" of the calling Lua line.
std::string where(lua_State* L) {
  luaL_where(L, 1);
  std::string w = lua_tostring(L, -1);
  lua_pop(L, 1);
  while (!w.empty() && (w.back() == ' ' || w.back() == ':')) w.pop_back();
  return w;
}

// Calls a Lua function kept in the registry from inside the event loop. An error is kept and
// the loop stopped; run_until/drain raise it in the script once the loop returns.
void call_back(ScenarioContext& c, int ref, bool* result = nullptr) {
  if (!c.callback_error.empty()) return;
  lua_State* L = c.sandbox->state();
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  const int rc = lua_pcall(L, 0, 1, 0);
  if (rc != LUA_OK) {
    c.callback_error = lua_tostring(L, -1) ? lua_tostring(L, -1) : "error in a callback";
    lua_pop(L, 1);
    c.world.loop().stop();
    return;
  }
  if (result) *result = lua_toboolean(L, -1);
  lua_pop(L, 1);
}

void raise_callback_error(ScenarioContext& c) {
  if (c.callback_error.empty()) return;
  std::string e = std::move(c.callback_error);
  c.callback_error.clear();
  throw std::runtime_error("in a scheduled callback: " + e);
}

void set_int(lua_State* L, const char* key, std::int64_t v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, key);
}

// describe { name = "...", desc = "...", tags = { "a", "b" } }
int l_describe(lua_State* L) {
  return guarded(L, [&] {
    require_table(L, "describe");
    auto& s = ctx(L).summary;
    s.scenario = opt_string_field(L, 1, "name", s.scenario);
    s.description = opt_string_field(L, 1, "desc", "");
    s.tags.clear();
    lua_getfield(L, 1, "tags");
    if (lua_istable(L, -1)) {
      const lua_Integer n = luaL_len(L, -1);
      for (lua_Integer i = 1; i <= n; ++i) {
        lua_rawgeti(L, -1, i);
        if (lua_type(L, -1) != LUA_TSTRING) throw std::invalid_argument("tags must be strings");
        s.tags.emplace_back(lua_tostring(L, -1));
        lua_pop(L, 1);
      }
    } else if (!lua_isnil(L, -1)) {
      throw std::invalid_argument("field 'tags' must be a list of strings");
    }
    lua_pop(L, 1);
    auto& c = ctx(L);
    if (!c.tag_filter.empty()) {
      bool match = false;
      for (const auto& t : s.tags) {
        for (const auto& want : c.tag_filter) match |= t == want;
      }
      if (!match) {
        c.skipped = true;
        throw std::runtime_error(kSkippedMarker);
      }
    }
    return 0;
  });
}

constexpr const char* kCardTypeNames[4] = {"adult", "student", "elder", "staff"};

// cards.mix / cards.discount_bp: a table keyed by card type names; any other key is an error.
// `read` is called per type with the table on top of the stack.
template <typename Read>
void read_card_types(lua_State* L, const char* field, Read read) {
  lua_getfield(L, -1, field);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, -1)) {
    throw std::invalid_argument(std::string("cards.") + field +
                                " must be a table like { adult = ..., student = ... }");
  }
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    lua_pop(L, 1);  // the value; keep the key
    bool known = false;
    if (lua_type(L, -1) == LUA_TSTRING) {
      for (const char* n : kCardTypeNames) known |= std::string(lua_tostring(L, -1)) == n;
    }
    if (!known) {
      lua_pop(L, 2);
      throw std::invalid_argument(std::string("cards.") + field +
                                  ": card types are adult, student, elder, staff");
    }
  }
  // What the table leaves out is zero (for a mix: adult included).
  for (std::size_t t = 0; t < 4; ++t) read(t);
  lua_pop(L, 1);
}

// city { start = "2026-11-23 07:00", cards = {...}, routes = {...}, network = {...},
//        upload_interval_s = 60, batch_size = 100 }
int l_city(lua_State* L) {
  return guarded(L, [&] {
    require_table(L, "city");
    ScenarioContext& c = ctx(L);
    CityConfig cfg;
    const std::string start = opt_string_field(L, 1, "start", "2026-11-23 07:00");
    if (!parse_calendar(start, cfg.start_epoch2000_s)) {
      throw std::invalid_argument("start '" + start + "' is not a date-time like "
                                  "\"2026-11-23 07:00\"");
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
      read_card_types(L, "mix", [&](std::size_t t) {
        cfg.card_mix[t] = opt_number_field(L, -1, kCardTypeNames[t], 0.0);
      });
      read_card_types(L, "discount_bp", [&](std::size_t t) {
        cfg.card_discount_bp[t] = opt_int_field(L, -1, kCardTypeNames[t], 0);
      });
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
    lua_getfield(L, 1, "taxis");
    if (lua_istable(L, -1)) {
      cfg.taxis = opt_int_field(L, -1, "count", cfg.taxis);
      cfg.taxi_operator = opt_string_field(L, -1, "operator", cfg.taxi_operator);
    } else if (!lua_isnil(L, -1)) {
      throw std::invalid_argument("field 'taxis' must be a table like { count = 10 }");
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "network");
    if (lua_istable(L, -1)) {
      cfg.network.latency_us_mean = opt_int_field(L, -1, "latency_ms", 40) * 1000;
      cfg.network.latency_us_jitter = opt_int_field(L, -1, "jitter_ms", 20) * 1000;
      cfg.network.loss_probability = opt_number_field(L, -1, "loss", 0.0);
      cfg.network.timeout_us = opt_int_field(L, -1, "timeout_ms", 5000) * 1000;
    }
    lua_pop(L, 1);
    cfg.upload_interval_us = opt_int_field(L, 1, "upload_interval_s", 60) * 1'000'000;
    cfg.trace_apdus = opt_bool_field(L, 1, "trace_apdus", false);
    cfg.certificates = opt_bool_field(L, 1, "certificates", false);
    cfg.batch_size_max = opt_int_field(L, 1, "batch_size", cfg.batch_size_max);
    cfg.commit_interval_us =
        opt_int_field(L, 1, "commit_interval_ms", cfg.commit_interval_us / 1000) * 1000;
    check(c.world.build(cfg));
    auto& knobs = c.summary.knobs;
    knobs["city.start"] = start;
    knobs["city.cards"] = cfg.cards;
    knobs["city.routes"] = cfg.routes;
    knobs["city.buses_per_route"] = cfg.buses_per_route;
    knobs["city.fare_fen"] = cfg.fare_fen;
    if (cfg.taxis > 0) knobs["city.taxis"] = cfg.taxis;
    if (cfg.certificates) knobs["city.certificates"] = true;
    const bool typed = cfg.card_mix != CityConfig{}.card_mix ||
                       cfg.card_discount_bp != CityConfig{}.card_discount_bp;
    for (std::size_t t = 0; typed && t < 4; ++t) {
      knobs[std::string("cards.mix.") + kCardTypeNames[t]] = cfg.card_mix[t];
      knobs[std::string("cards.discount_bp.") + kCardTypeNames[t]] = cfg.card_discount_bp[t];
    }
    knobs["network.latency_us_mean"] = cfg.network.latency_us_mean;
    knobs["network.latency_us_jitter"] = cfg.network.latency_us_jitter;
    knobs["network.loss_probability"] = cfg.network.loss_probability;
    knobs["network.timeout_us"] = cfg.network.timeout_us;
    knobs["terminal.upload_interval_us"] = cfg.upload_interval_us;
    knobs["terminal.batch_size_max"] = cfg.batch_size_max;
    knobs["city.commit_interval_us"] = cfg.commit_interval_us;
    return 0;
  });
}

// phase { from = "07:00", to = "09:00", swipes_per_hour = 20000 }
int l_phase(lua_State* L) {
  return guarded(L, [&] {
    require_table(L, "phase");
    ScenarioContext& c = ctx(L);
    const std::int64_t from = virtual_us_of(c, opt_string_field(L, 1, "from", ""));
    const std::int64_t to = virtual_us_of(c, opt_string_field(L, 1, "to", ""));
    const double rate = opt_number_field(L, 1, "swipes_per_hour", 0);
    std::vector<double> curve;
    lua_getfield(L, 1, "curve");
    if (lua_istable(L, -1)) {
      const lua_Integer n = luaL_len(L, -1);
      for (lua_Integer i = 1; i <= n && i <= 1001; ++i) {
        lua_rawgeti(L, -1, i);
        if (!lua_isnumber(L, -1)) throw std::invalid_argument("curve must be a list of numbers");
        curve.push_back(lua_tonumber(L, -1));
        lua_pop(L, 1);
      }
    } else if (!lua_isnil(L, -1)) {
      throw std::invalid_argument("field 'curve' must be a list of weights");
    }
    lua_pop(L, 1);
    check(c.world.add_phase(from, to, rate, curve));
    return 0;
  });
}

// run_until "08:00"
int l_run_until(lua_State* L) {
  return guarded(L, [&] {
    ScenarioContext& c = ctx(L);
    if (lua_type(L, 1) != LUA_TSTRING) throw std::invalid_argument("run_until takes \"HH:MM\"");
    const std::int64_t until = virtual_us_of(c, lua_tostring(L, 1));
    Status s = c.world.run_until(until);
    raise_callback_error(c);
    check(s);
    return 0;
  });
}

// drain([max_s = 3600]) -> true, or false and why
int l_drain(lua_State* L) {
  return guarded(L, [&] {
    const lua_Integer max_s = lua_isnoneornil(L, 1) ? 3600 : lua_tointeger(L, 1);
    if (max_s <= 0) throw std::invalid_argument("drain takes a positive number of seconds");
    Status s = ctx(L).world.drain(max_s * 1'000'000);
    raise_callback_error(ctx(L));
    lua_pushboolean(L, s.is_ok());
    if (s.is_ok()) return 1;
    lua_pushstring(L, s.message().c_str());
    return 2;
  });
}

// stats() -> { swipes=, refusals=, ... }
int l_stats(lua_State* L) {
  return guarded(L, [&] {
    const WorldStats s = ctx(L).world.stats();
    lua_createtable(L, 0, 16);
    set_int(L, "taps", static_cast<std::int64_t>(s.taps));
    set_int(L, "swipes", static_cast<std::int64_t>(s.swipes));
    set_int(L, "refusals", static_cast<std::int64_t>(s.refusals));
    set_int(L, "refusals_insufficient", static_cast<std::int64_t>(s.refusals_insufficient));
    set_int(L, "validator_amount_fen", s.validator_amount_fen);
    set_int(L, "uploaded_records", static_cast<std::int64_t>(s.uploaded_records));
    set_int(L, "duplicate_records", static_cast<std::int64_t>(s.duplicate_records));
    set_int(L, "rejected_records", static_cast<std::int64_t>(s.rejected_records));
    set_int(L, "queued_records", static_cast<std::int64_t>(s.queued_records));
    set_int(L, "batches_acked", static_cast<std::int64_t>(s.batches_acked));
    set_int(L, "upload_failures", static_cast<std::int64_t>(s.upload_failures));
    set_int(L, "backend_amount_fen", s.backend_amount_fen);
    set_int(L, "network_messages", static_cast<std::int64_t>(s.network_messages));
    set_int(L, "network_lost", static_cast<std::int64_t>(s.network_lost));
    set_int(L, "network_duplicated", static_cast<std::int64_t>(s.network_duplicated));
    set_int(L, "trips", static_cast<std::int64_t>(s.trips));
    set_int(L, "transfers", static_cast<std::int64_t>(s.transfers));
    set_int(L, "backend_crashes", static_cast<std::int64_t>(s.backend_crashes));
    set_int(L, "max_clock_error_ms", s.max_clock_error_us / 1000);
    set_int(L, "refusals_blacklisted", static_cast<std::int64_t>(s.refusals_blacklisted));
    set_int(L, "syncs", static_cast<std::int64_t>(s.syncs));
    set_int(L, "torn", static_cast<std::int64_t>(s.torn));
    set_int(L, "retaps", static_cast<std::int64_t>(s.retaps));
    set_int(L, "recovered", static_cast<std::int64_t>(s.recovered));
    set_int(L, "replacements", static_cast<std::int64_t>(s.replacements));
    set_int(L, "sync_failures", static_cast<std::int64_t>(s.sync_failures));
    lua_pushboolean(L, ctx(L).world.backend_up());
    lua_setfield(L, -2, "backend_up");
    set_int(L, "taxi_trips", static_cast<std::int64_t>(s.taxi_trips));
    set_int(L, "taxi_amount_fen", s.taxi_amount_fen);
    set_int(L, "taxi_refusals", static_cast<std::int64_t>(s.taxi_refusals));
    set_int(L, "power_losses", static_cast<std::int64_t>(s.power_losses));
    set_int(L, "refused_requests", static_cast<std::int64_t>(s.refused_requests));
    set_int(L, "refused_uploads", static_cast<std::int64_t>(s.refused_uploads));
    set_int(L, "revocations", static_cast<std::int64_t>(s.revocations));
    set_int(L, "recommissions", static_cast<std::int64_t>(s.recommissions));
    // by_type = { adult = { cards =, swipes =, amount_fen = }, student = ..., ... }
    lua_createtable(L, 0, 4);
    for (std::size_t t = 0; t < 4; ++t) {
      lua_createtable(L, 0, 3);
      set_int(L, "cards", static_cast<std::int64_t>(s.cards_by_type[t]));
      set_int(L, "swipes", static_cast<std::int64_t>(s.swipes_by_type[t]));
      set_int(L, "amount_fen", s.amount_fen_by_type[t]);
      lua_setfield(L, -2, kCardTypeNames[t]);
    }
    lua_setfield(L, -2, "by_type");
    return 1;
  });
}

// ledger() -> { balanced = bool, problem = "..." or nil, card_float_fen =, accounts = {...} }
int l_ledger(lua_State* L) {
  return guarded(L, [&] {
    ScenarioContext& c = ctx(L);
    if (!c.world.built()) throw std::invalid_argument("call city{} before ledger()");
    if (!c.world.backend_up()) throw std::runtime_error("ledger(): the backend is down");
    const Status conserved = c.world.conservation();
    auto balances = c.world.backend().ledger().balances();
    check(balances.status());
    lua_createtable(L, 0, 4);
    lua_pushboolean(L, conserved.is_ok());
    lua_setfield(L, -2, "balanced");
    if (!conserved.is_ok()) {
      lua_pushstring(L, conserved.message().c_str());
      lua_setfield(L, -2, "problem");
    }
    lua_createtable(L, 0, static_cast<int>(balances->size()));
    for (const auto& a : *balances) set_int(L, a.account.c_str(), a.balance_fen);
    lua_setfield(L, -2, "accounts");
    return 1;
  });
}

// clearing() -> { operators = { [id] = {count=, amount_fen=} }, routes = { [route] = {...} } }
int l_clearing(lua_State* L) {
  return guarded(L, [&] {
    ScenarioContext& c = ctx(L);
    if (!c.world.built()) throw std::invalid_argument("call city{} before clearing()");
    if (!c.world.backend_up()) throw std::runtime_error("clearing(): the backend is down");
    auto ops = c.world.backend().clearing().by_operator();
    check(ops.status());
    auto routes = c.world.backend().clearing().by_route();
    check(routes.status());
    lua_createtable(L, 0, 2);
    lua_createtable(L, 0, static_cast<int>(ops->size()));
    for (const auto& o : *ops) {
      lua_createtable(L, 0, 2);
      set_int(L, "count", o.count);
      set_int(L, "amount_fen", o.amount_fen);
      lua_setfield(L, -2, o.operator_id.c_str());
    }
    lua_setfield(L, -2, "operators");
    lua_createtable(L, 0, static_cast<int>(routes->size()));
    for (const auto& r : *routes) {
      lua_createtable(L, 0, 3);
      set_int(L, "count", r.count);
      set_int(L, "amount_fen", r.amount_fen);
      lua_pushstring(L, r.operator_id.c_str());
      lua_setfield(L, -2, "operator");
      lua_setfield(L, -2, r.route.c_str());
    }
    lua_setfield(L, -2, "routes");
    return 1;
  });
}

// expect(name, condition [, message]) -> condition
int l_expect(lua_State* L) {
  return guarded(L, [&] {
    ScenarioContext& c = ctx(L);
    if (lua_type(L, 1) != LUA_TSTRING) throw std::invalid_argument("expect(name, condition)");
    if (lua_gettop(L) < 2) throw std::invalid_argument("expect needs a condition");
    reports::Expectation e;
    e.name = lua_tostring(L, 1);
    e.passed = lua_toboolean(L, 2);
    if (!e.passed && lua_type(L, 3) == LUA_TSTRING) e.message = lua_tostring(L, 3);
    e.where = where(L);
    const bool passed = e.passed;
    record_expectation(c, std::move(e));
    lua_pushboolean(L, passed);
    return 1;
  });
}


// riders { count = 2000, transfer_share = 0.3,
//          morning = { from = "07:00", peak = "08:00", to = "09:30" },
//          evening = { from = "17:00", peak = "18:00", to = "19:30" } }
int l_riders(lua_State* L) {
  return guarded(L, [&] {
    require_table(L, "riders");
    ScenarioContext& c = ctx(L);
    RiderConfig r;
    r.riders = opt_int_field(L, 1, "count", 0);
    r.transfer_share = opt_number_field(L, 1, "transfer_share", r.transfer_share);
    auto window = [&](const char* name, std::int64_t& a, std::int64_t& p, std::int64_t& b) {
      lua_getfield(L, 1, name);
      if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return false;
      }
      a = virtual_us_of(c, opt_string_field(L, -1, "from", ""));
      b = virtual_us_of(c, opt_string_field(L, -1, "to", ""));
      const std::string peak = opt_string_field(L, -1, "peak", "");
      p = peak.empty() ? (a + b) / 2 : virtual_us_of(c, peak);
      lua_pop(L, 1);
      return true;
    };
    if (!window("morning", r.morning_from_us, r.morning_peak_us, r.morning_to_us)) {
      throw std::invalid_argument("riders needs a morning = { from, peak, to } window");
    }
    r.evening = window("evening", r.evening_from_us, r.evening_peak_us, r.evening_to_us);
    check(c.world.add_riders(r));
    c.summary.knobs["riders.count"] = r.riders;
    c.summary.knobs["riders.transfer_share"] = r.transfer_share;
    return 0;
  });
}

// faults { link_loss = 0.05, duplicate = 0.01, reorder = 0.01, latency_ms = 40, jitter_ms = 20,
//          timeout_ms = 5000, clock_drift_ppm = 50 }
int l_faults(lua_State* L) {
  return guarded(L, [&] {
    require_table(L, "faults");
    ScenarioContext& c = ctx(L);
    if (!c.world.built()) throw std::invalid_argument("call city{} before faults{}");
    FaultConfig f;
    f.network = c.world.config().network;
    f.network.loss_probability = opt_number_field(L, 1, "link_loss", f.network.loss_probability);
    f.network.duplicate_probability = opt_number_field(L, 1, "duplicate", 0);
    f.network.reorder_probability = opt_number_field(L, 1, "reorder", 0);
    f.network.latency_us_mean = opt_int_field(L, 1, "latency_ms", f.network.latency_us_mean / 1000) * 1000;
    f.network.latency_us_jitter = opt_int_field(L, 1, "jitter_ms", f.network.latency_us_jitter / 1000) * 1000;
    f.network.timeout_us = opt_int_field(L, 1, "timeout_ms", f.network.timeout_us / 1000) * 1000;
    f.clock_drift_ppm_stddev = opt_number_field(L, 1, "clock_drift_ppm", 0);
    f.tear_probability = opt_number_field(L, 1, "tear", 0);
    lua_getfield(L, 1, "tear_at");
    if (lua_istable(L, -1)) {
      f.tear_tap = opt_int_field(L, -1, "tap", 0);
      f.tear_apdu = opt_int_field(L, -1, "apdu", 0);
      const std::string when = opt_string_field(L, -1, "when", "after");
      using W = devices::TearingLink::When;
      if (when == "before") {
        f.tear_when = W::kBeforeCommand;
      } else if (when == "after") {
        f.tear_when = W::kAfterCommand;
      } else if (when == "during") {
        f.tear_when = W::kDuringCommand;
      } else {
        throw std::invalid_argument("tear_at.when must be \"before\", \"after\" or \"during\"");
      }
      if (f.tear_tap < 1 || f.tear_apdu < 0 || f.tear_apdu > 64) {
        throw std::invalid_argument("tear_at needs tap >= 1 and apdu in 0..64");
      }
    } else if (!lua_isnil(L, -1)) {
      throw std::invalid_argument("field 'tear_at' must be a table { tap, apdu, when }");
    }
    lua_pop(L, 1);
    check(c.world.set_faults(f));
    auto& k = c.summary.knobs;
    k["faults.link_loss_probability"] = f.network.loss_probability;
    k["faults.duplicate_probability"] = f.network.duplicate_probability;
    k["faults.reorder_probability"] = f.network.reorder_probability;
    k["faults.clock_drift_ppm_stddev"] = f.clock_drift_ppm_stddev;
    k["faults.tear_probability"] = f.tear_probability;
    if (f.tear_tap > 0) {
      k["faults.tear_at"] = {
          {"tap", f.tear_tap}, {"apdu", f.tear_apdu}, {"when", static_cast<int>(f.tear_when)}};
    }
    k["network.latency_us_mean"] = f.network.latency_us_mean;
    k["network.latency_us_jitter"] = f.network.latency_us_jitter;
    k["network.timeout_us"] = f.network.timeout_us;
    return 0;
  });
}

// outage { group = "R1", from = "07:20", to = "07:50" }   -- GPRS outage for route R1's buses
int l_outage(lua_State* L) {
  return guarded(L, [&] {
    require_table(L, "outage");
    ScenarioContext& c = ctx(L);
    const std::string group = opt_string_field(L, 1, "group", "");
    const std::int64_t from = virtual_us_of(c, opt_string_field(L, 1, "from", ""));
    const std::int64_t to = virtual_us_of(c, opt_string_field(L, 1, "to", ""));
    check(c.world.add_outage(group, from, to));
    auto& list = c.summary.knobs["faults.outages"];
    list.push_back({{"group", group}, {"from_us", from}, {"to_us", to}});
    return 0;
  });
}

// taxi_trips { from = "07:00", to = "09:00", per_hour = 300 }
int l_taxi_trips(lua_State* L) {
  return guarded(L, [&] {
    require_table(L, "taxi_trips");
    ScenarioContext& c = ctx(L);
    const std::int64_t from = virtual_us_of(c, opt_string_field(L, 1, "from", ""));
    const std::int64_t to = virtual_us_of(c, opt_string_field(L, 1, "to", ""));
    check(c.world.add_taxi_trips(from, to, opt_number_field(L, 1, "per_hour", 0)));
    return 0;
  });
}

// power_loss { taxi = "T3", at = "07:40" }
int l_power_loss(lua_State* L) {
  return guarded(L, [&] {
    require_table(L, "power_loss");
    ScenarioContext& c = ctx(L);
    const std::string taxi = opt_string_field(L, 1, "taxi", "");
    const std::int64_t at = virtual_us_of(c, opt_string_field(L, 1, "at", ""));
    check(c.world.power_loss(taxi, at));
    c.summary.knobs["faults.power_losses"].push_back({{"taxi", taxi}, {"at_us", at}});
    return 0;
  });
}

// backend_crash { at = "07:30", down_s = 120 }
int l_backend_crash(lua_State* L) {
  return guarded(L, [&] {
    require_table(L, "backend_crash");
    ScenarioContext& c = ctx(L);
    const std::int64_t at = virtual_us_of(c, opt_string_field(L, 1, "at", ""));
    const std::int64_t down = opt_int_field(L, 1, "down_s", 60) * 1'000'000;
    check(c.world.crash_backend(at, down));
    c.summary.knobs["faults.backend_crashes"].push_back({{"at_us", at}, {"down_us", down}});
    return 0;
  });
}

// at("07:30", function() ... end)   -- an operator action or a check at a time
int l_at(lua_State* L) {
  return guarded(L, [&] {
    ScenarioContext& c = ctx(L);
    if (lua_type(L, 1) != LUA_TSTRING || lua_type(L, 2) != LUA_TFUNCTION) {
      throw std::invalid_argument("at(\"HH:MM\", function)");
    }
    const std::int64_t t = virtual_us_of(c, lua_tostring(L, 1));
    lua_pushvalue(L, 2);
    const int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ScenarioContext* cp = &c;
    check(c.world.at(t, [cp, ref] { call_back(*cp, ref); }));
    return 0;
  });
}

// expect_within(name, within_s, predicate [, poll_s = 1]): passes as soon as predicate()
// is true, fails if it is still false within_s virtual seconds from now.
int l_expect_within(lua_State* L) {
  return guarded(L, [&] {
    ScenarioContext& c = ctx(L);
    if (lua_type(L, 1) != LUA_TSTRING || !lua_isnumber(L, 2) || lua_type(L, 3) != LUA_TFUNCTION) {
      throw std::invalid_argument("expect_within(name, seconds, function [, poll_s])");
    }
    const std::int64_t within_us = static_cast<std::int64_t>(lua_tonumber(L, 2) * 1e6);
    const std::int64_t poll_us =
        lua_isnumber(L, 4) ? static_cast<std::int64_t>(lua_tonumber(L, 4) * 1e6) : 1'000'000;
    if (within_us <= 0 || poll_us <= 0) throw std::invalid_argument("durations must be > 0");
    if (within_us / poll_us > 1'000'000) throw std::invalid_argument("too many polls; raise poll_s");
    lua_pushvalue(L, 3);
    const int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    const std::size_t id = c.next_pending_id++;
    const std::int64_t deadline = c.world.loop().now_us() + within_us;
    c.pending.push_back({id, lua_tostring(L, 1), where(L), deadline});
    ScenarioContext* cp = &c;
    auto poll = std::make_shared<std::function<void()>>();
    *poll = [cp, ref, id, deadline, poll_us, poll] {
      auto it = std::find_if(cp->pending.begin(), cp->pending.end(),
                             [id](const auto& p) { return p.id == id; });
      if (it == cp->pending.end()) return;
      bool ok = false;
      call_back(*cp, ref, &ok);
      const std::int64_t now = cp->world.loop().now_us();
      if (ok || now >= deadline) {
        reports::Expectation e{it->name, ok, "", it->where, now};
        if (!ok) {
          e.message = "not true within the limit (checked until " +
                      std::to_string(now / 1'000'000) + " s virtual)";
        }
        cp->pending.erase(it);
        record_expectation(*cp, std::move(e));
        return;
      }
      cp->world.loop().schedule_after(std::min(poll_us, deadline - now), *poll);
    };
    c.world.loop().schedule_after(0, *poll);
    return 0;
  });
}

// now() -> virtual seconds since the start
int l_now(lua_State* L) {
  lua_pushnumber(L, static_cast<double>(ctx(L).world.loop().now_us()) / 1e6);
  return 1;
}

// seed() -> the run's seed
int l_seed(lua_State* L) {
  lua_pushinteger(L, static_cast<lua_Integer>(ctx(L).summary.seed));
  return 1;
}

// A card argument: its 1-based number in the city.
std::size_t card_arg(lua_State* L, int idx, const char* fn) {
  if (!lua_isinteger(L, idx)) {
    throw std::invalid_argument(std::string(fn) + " takes a card number (1..cards.count)");
  }
  const lua_Integer n = lua_tointeger(L, idx);
  if (n < 1) throw std::invalid_argument(std::string(fn) + ": card numbers start at 1");
  return static_cast<std::size_t>(n - 1);
}

template <class T>
T value_or_throw(Result<T> r) {
  if (!r.is_ok()) throw std::runtime_error(r.status().message());
  return std::move(r).value();
}

// blacklist(card [, listed = true]) -> the backend's new blacklist version
int l_blacklist(lua_State* L) {
  return guarded(L, [&] {
    ScenarioContext& c = ctx(L);
    const std::size_t card = card_arg(L, 1, "blacklist");
    const bool listed = lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2);
    const std::uint64_t v = value_or_throw(c.world.blacklist_card(card, listed));
    c.summary.knobs["operator.blacklist"].push_back({{"t_us", c.world.loop().now_us()},
                                                     {"card", static_cast<std::int64_t>(card + 1)},
                                                     {"listed", listed}});
    lua_pushinteger(L, static_cast<lua_Integer>(v));
    return 1;
  });
}

// blacklist_version() -> the backend's blacklist version after the last blacklist() (0: none)
int l_blacklist_version(lua_State* L) {
  lua_pushinteger(L, static_cast<lua_Integer>(ctx(L).world.blacklist_version()));
  return 1;
}

// fare_table { route = "R1", flat_fen = 250 } -> the new parameter version
int l_fare_table(lua_State* L) {
  return guarded(L, [&] {
    require_table(L, "fare_table");
    ScenarioContext& c = ctx(L);
    const std::string route = opt_string_field(L, 1, "route", "");
    const std::int64_t fare = opt_int_field(L, 1, "flat_fen", 0);
    if (route.empty()) throw std::invalid_argument("fare_table needs a route");
    if (fare < 1 || fare > 100'000) throw std::invalid_argument("flat_fen must be 1..100000");
    const std::uint64_t v = value_or_throw(c.world.publish_flat_fare(route, fare));
    c.summary.knobs["operator.fare_tables"].push_back(
        {{"t_us", c.world.loop().now_us()}, {"route", route}, {"flat_fen", fare}});
    lua_pushinteger(L, static_cast<lua_Integer>(v));
    return 1;
  });
}

// settle { fee_bp = 20 } -> { batch_id, business_date, lines, gross_fen, fee_fen, net_fen,
//                             file_fen, confirmed_fen, differences, first_difference,
//                             settled_through }
int l_settle(lua_State* L) {
  return guarded(L, [&] {
    ScenarioContext& c = ctx(L);
    std::int64_t fee_bp = 0;
    if (lua_istable(L, 1)) {
      fee_bp = opt_int_field(L, 1, "fee_bp", 0);
    } else if (!lua_isnoneornil(L, 1)) {
      throw std::invalid_argument("settle takes a table or nothing");
    }
    const SettleOutcome o = value_or_throw(c.world.settle(fee_bp));
    lua_createtable(L, 0, 11);
    set_int(L, "batch_id", o.batch_id);
    set_int(L, "business_date", o.business_date);
    set_int(L, "lines", static_cast<std::int64_t>(o.lines));
    set_int(L, "gross_fen", o.gross_fen);
    set_int(L, "fee_fen", o.fee_fen);
    set_int(L, "net_fen", o.net_fen);
    set_int(L, "file_fen", o.file_fen);
    set_int(L, "confirmed_fen", o.confirmed_fen);
    set_int(L, "differences", static_cast<std::int64_t>(o.differences));
    lua_pushstring(L, o.first_difference.c_str());
    lua_setfield(L, -2, "first_difference");
    set_int(L, "settled_through", o.settled_through);
    return 1;
  });
}

// buses() -> { { vehicle=, route=, fare_fen=, blacklist_version=, blacklist_size=,
//                params_version=, queued_records= }, ... }
int l_buses(lua_State* L) {
  return guarded(L, [&] {
    const auto buses = ctx(L).world.buses();
    lua_createtable(L, static_cast<int>(buses.size()), 0);
    lua_Integer i = 0;
    for (const auto& b : buses) {
      lua_createtable(L, 0, 7);
      lua_pushstring(L, b.vehicle.c_str());
      lua_setfield(L, -2, "vehicle");
      lua_pushstring(L, b.route.c_str());
      lua_setfield(L, -2, "route");
      set_int(L, "fare_fen", b.fare_fen);
      set_int(L, "blacklist_version", static_cast<std::int64_t>(b.blacklist_version));
      set_int(L, "blacklist_size", static_cast<std::int64_t>(b.blacklist_size));
      set_int(L, "params_version", static_cast<std::int64_t>(b.params_version));
      set_int(L, "queued_records", static_cast<std::int64_t>(b.queued_records));
      lua_pushstring(L, b.last_failure.c_str());
      lua_setfield(L, -2, "last_failure");
      lua_rawseti(L, -2, ++i);
    }
    return 1;
  });
}

// revoke { terminal = "R2-B3", reason = "key_compromise" }
int l_revoke(lua_State* L) {
  return guarded(L, [&] {
    require_table(L, "revoke");
    ScenarioContext& c = ctx(L);
    const std::string terminal = opt_string_field(L, 1, "terminal", "");
    if (terminal.empty()) throw std::invalid_argument("revoke needs a terminal (\"R1-B2\", \"T3\")");
    const std::string reason = opt_string_field(L, 1, "reason", "key_compromise");
    static const std::pair<const char*, backend::RevocationReason> kReasons[] = {
        {"unspecified", backend::RevocationReason::kUnspecified},
        {"key_compromise", backend::RevocationReason::kKeyCompromise},
        {"affiliation_changed", backend::RevocationReason::kAffiliationChanged},
        {"superseded", backend::RevocationReason::kSuperseded},
        {"cessation_of_operation", backend::RevocationReason::kCessationOfOperation}};
    const auto* found = std::find_if(std::begin(kReasons), std::end(kReasons),
                                     [&](const auto& r) { return reason == r.first; });
    if (found == std::end(kReasons)) {
      throw std::invalid_argument("revoke: unknown reason '" + reason +
                                  "' (unspecified, key_compromise, affiliation_changed, "
                                  "superseded, cessation_of_operation)");
    }
    check(c.world.revoke(terminal, found->second));
    c.summary.knobs["operator.revocations"].push_back(
        {{"t_us", c.world.loop().now_us()}, {"terminal", terminal}, {"reason", reason}});
    return 0;
  });
}

// recommission "R2-B3": new keys and a new certificate for the terminal
int l_recommission(lua_State* L) {
  return guarded(L, [&] {
    ScenarioContext& c = ctx(L);
    if (lua_type(L, 1) != LUA_TSTRING) {
      throw std::invalid_argument("recommission takes a terminal (\"R1-B2\", \"T3\")");
    }
    const std::string terminal = lua_tostring(L, 1);
    check(c.world.recommission(terminal));
    c.summary.knobs["operator.recommissions"].push_back(
        {{"t_us", c.world.loop().now_us()}, {"terminal", terminal}});
    return 0;
  });
}

// certificate "R2-B3" -> { subject_id=, serial=, revoked=, verifies=, why=, pem= }
int l_certificate(lua_State* L) {
  return guarded(L, [&] {
    if (lua_type(L, 1) != LUA_TSTRING) {
      throw std::invalid_argument("certificate takes a terminal (\"R1-B2\", \"T3\")");
    }
    const CertificateView v = value_or_throw(ctx(L).world.certificate(lua_tostring(L, 1)));
    lua_createtable(L, 0, 6);
    lua_pushstring(L, v.subject_id.c_str());
    lua_setfield(L, -2, "subject_id");
    lua_pushstring(L, v.serial_hex.c_str());
    lua_setfield(L, -2, "serial");
    lua_pushboolean(L, v.revoked);
    lua_setfield(L, -2, "revoked");
    lua_pushboolean(L, v.verifies);
    lua_setfield(L, -2, "verifies");
    lua_pushstring(L, v.why.c_str());
    lua_setfield(L, -2, "why");
    lua_pushstring(L, v.pem.c_str());
    lua_setfield(L, -2, "pem");
    return 1;
  });
}

// tap { card = 17, vehicle = "R1-B2" } -> ok, reason (refusal name) or amount_fen
int l_tap(lua_State* L) {
  return guarded(L, [&] {
    require_table(L, "tap");
    ScenarioContext& c = ctx(L);
    lua_getfield(L, 1, "card");
    const std::size_t card = card_arg(L, -1, "tap");
    lua_pop(L, 1);
    const std::string vehicle = opt_string_field(L, 1, "vehicle", "");
    const TapOutcome o = value_or_throw(c.world.tap_card(card, vehicle));
    lua_pushboolean(L, o.ok);
    if (o.ok) {
      lua_pushinteger(L, o.amount_fen);
    } else {
      lua_pushstring(L, o.reason.c_str());
    }
    return 2;
  });
}

// replace_card(card) -> the new card's serial (hex); the rider carries the new card
int l_replace_card(lua_State* L) {
  return guarded(L, [&] {
    ScenarioContext& c = ctx(L);
    const std::size_t card = card_arg(L, 1, "replace_card");
    const std::string fresh = value_or_throw(c.world.replace_card(card));
    c.summary.knobs["operator.replacements"].push_back(
        {{"t_us", c.world.loop().now_us()}, {"card", static_cast<std::int64_t>(card + 1)}});
    lua_pushstring(L, fresh.c_str());
    return 1;
  });
}

// card_check() -> { cards, off, first_problem, opening_fen, balance_fen, recorded_fen }
int l_card_check(lua_State* L) {
  return guarded(L, [&] {
    const CardCheck k = ctx(L).world.check_cards();
    lua_createtable(L, 0, 6);
    set_int(L, "cards", static_cast<std::int64_t>(k.cards));
    set_int(L, "off", static_cast<std::int64_t>(k.off));
    lua_pushstring(L, k.first_problem.c_str());
    lua_setfield(L, -2, "first_problem");
    set_int(L, "opening_fen", k.opening_fen);
    set_int(L, "balance_fen", k.balance_fen);
    set_int(L, "recorded_fen", k.recorded_fen);
    return 1;
  });
}

// card_serial(card) -> the card's application serial, hex
int l_card_serial(lua_State* L) {
  return guarded(L, [&] {
    const std::size_t card = card_arg(L, 1, "card_serial");
    if (card >= ctx(L).world.card_count()) throw std::invalid_argument("no such card");
    lua_pushstring(L, ctx(L).world.card_serial_hex(card).c_str());
    return 1;
  });
}

}  // namespace

void record_expectation(ScenarioContext& c, reports::Expectation e) {
  c.trace.event(e.t_us, "expect",
                {{"name", e.name}, {"passed", e.passed}, {"message", e.message},
                 {"where", e.where}});
  c.summary.expectations.push_back(std::move(e));
}

void install_api(LuaSandbox& sandbox, ScenarioContext& context) {
  context.sandbox = &sandbox;
  static const luaL_Reg kApi[] = {
      {"describe", l_describe},
      {"city", l_city},
      {"phase", l_phase},
      {"run_until", l_run_until},
      {"drain", l_drain},
      {"stats", l_stats},
      {"ledger", l_ledger},
      {"clearing", l_clearing},
      {"expect", l_expect},
      {"now", l_now},
      {"seed", l_seed},
      {"riders", l_riders},
      {"faults", l_faults},
      {"outage", l_outage},
      {"taxi_trips", l_taxi_trips},
      {"power_loss", l_power_loss},
      {"backend_crash", l_backend_crash},
      {"at", l_at},
      {"expect_within", l_expect_within},
      {"blacklist", l_blacklist},
      {"blacklist_version", l_blacklist_version},
      {"fare_table", l_fare_table},
      {"buses", l_buses},
      {"tap", l_tap},
      {"revoke", l_revoke},
      {"recommission", l_recommission},
      {"certificate", l_certificate},
      {"card_serial", l_card_serial},
      {"settle", l_settle},
      {"card_check", l_card_check},
      {"replace_card", l_replace_card},
  };
  for (const auto& f : kApi) sandbox.set_global_function(f.name, f.func, &context);
}

}  // namespace citycard::scenarios
