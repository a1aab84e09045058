#include "lua_api.h"

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
  std::int64_t tod;
  if (!parse_time_of_day(text, tod)) {
    throw std::invalid_argument("'" + text + "' is not a time of day like \"07:30\"");
  }
  if (tod < c.start_time_of_day_s) {
    throw std::invalid_argument("'" + text + "' is before the city's start time");
  }
  return (tod - c.start_time_of_day_s) * 1'000'000;
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
    lua_getfield(L, 1, "network");
    if (lua_istable(L, -1)) {
      cfg.network.latency_us_mean = opt_int_field(L, -1, "latency_ms", 40) * 1000;
      cfg.network.latency_us_jitter = opt_int_field(L, -1, "jitter_ms", 20) * 1000;
      cfg.network.loss_probability = opt_number_field(L, -1, "loss", 0.0);
      cfg.network.timeout_us = opt_int_field(L, -1, "timeout_ms", 5000) * 1000;
    }
    lua_pop(L, 1);
    cfg.upload_interval_us = opt_int_field(L, 1, "upload_interval_s", 60) * 1'000'000;
    cfg.batch_size_max = opt_int_field(L, 1, "batch_size", cfg.batch_size_max);
    check(c.world.build(cfg));
    auto& knobs = c.summary.knobs;
    knobs["city.start"] = start;
    knobs["city.cards"] = cfg.cards;
    knobs["city.routes"] = cfg.routes;
    knobs["city.buses_per_route"] = cfg.buses_per_route;
    knobs["city.fare_fen"] = cfg.fare_fen;
    knobs["network.latency_us_mean"] = cfg.network.latency_us_mean;
    knobs["network.latency_us_jitter"] = cfg.network.latency_us_jitter;
    knobs["network.loss_probability"] = cfg.network.loss_probability;
    knobs["network.timeout_us"] = cfg.network.timeout_us;
    knobs["terminal.upload_interval_us"] = cfg.upload_interval_us;
    knobs["terminal.batch_size_max"] = cfg.batch_size_max;
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
    check(c.world.add_phase(from, to, rate));
    return 0;
  });
}

// run_until "08:00"
int l_run_until(lua_State* L) {
  return guarded(L, [&] {
    ScenarioContext& c = ctx(L);
    if (lua_type(L, 1) != LUA_TSTRING) throw std::invalid_argument("run_until takes \"HH:MM\"");
    check(c.world.run_until(virtual_us_of(c, lua_tostring(L, 1))));
    return 0;
  });
}

// drain([max_s = 3600]) -> true, or false and why
int l_drain(lua_State* L) {
  return guarded(L, [&] {
    const lua_Integer max_s = lua_isnoneornil(L, 1) ? 3600 : lua_tointeger(L, 1);
    if (max_s <= 0) throw std::invalid_argument("drain takes a positive number of seconds");
    Status s = ctx(L).world.drain(max_s * 1'000'000);
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
    return 1;
  });
}

// ledger() -> { balanced = bool, problem = "..." or nil, card_float_fen =, accounts = {...} }
int l_ledger(lua_State* L) {
  return guarded(L, [&] {
    ScenarioContext& c = ctx(L);
    if (!c.world.built()) throw std::invalid_argument("call city{} before ledger()");
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
    luaL_where(L, 1);
    e.where = lua_tostring(L, -1);
    lua_pop(L, 1);
    while (!e.where.empty() && (e.where.back() == ' ' || e.where.back() == ':')) e.where.pop_back();
    e.t_us = c.world.loop().now_us();
    c.trace.event(e.t_us, "expect",
                  {{"name", e.name}, {"passed", e.passed}, {"message", e.message},
                   {"where", e.where}});
    c.summary.expectations.push_back(std::move(e));
    lua_pushboolean(L, c.summary.expectations.back().passed);
    return 1;
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

}  // namespace

void install_api(LuaSandbox& sandbox, ScenarioContext& context) {
  static const luaL_Reg kApi[] = {
      {"describe", l_describe}, {"city", l_city},         {"phase", l_phase},
      {"run_until", l_run_until}, {"drain", l_drain},     {"stats", l_stats},
      {"ledger", l_ledger},     {"clearing", l_clearing}, {"expect", l_expect},
      {"now", l_now},           {"seed", l_seed},
  };
  for (const auto& f : kApi) sandbox.set_global_function(f.name, f.func, &context);
}

}  // namespace citycard::scenarios
