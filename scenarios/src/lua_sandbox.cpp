#include "citycard/scenarios/lua_sandbox.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace citycard::scenarios {

namespace {

constexpr int kHookEveryInstructions = 1000;
const char kSandboxKey = 0;  // its address keys the sandbox in the registry

LuaSandbox* self(lua_State* L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &kSandboxKey);
  auto* s = static_cast<LuaSandbox*>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return s;
}

// os.time(): calendar seconds (Unix) at the scenario clock's now. os.clock(): virtual seconds.
struct OsState {
  const sim::Clock* clock;
  std::int64_t origin_unix_s;
};
int l_os_time(lua_State* L) {
  auto* st = static_cast<OsState*>(lua_touserdata(L, lua_upvalueindex(1)));
  lua_pushinteger(L, st->origin_unix_s + st->clock->now_us() / 1'000'000);
  return 1;
}
int l_os_clock(lua_State* L) {
  auto* st = static_cast<OsState*>(lua_touserdata(L, lua_upvalueindex(1)));
  lua_pushnumber(L, static_cast<double>(st->clock->now_us()) / 1e6);
  return 1;
}

// math.random with the run's generator; same contract as Lua's: (), (m), (m, n).
int l_math_random(lua_State* L) {
  auto* rng = static_cast<sim::Rng*>(lua_touserdata(L, lua_upvalueindex(1)));
  const int n = lua_gettop(L);
  if (n == 0) {
    lua_pushnumber(L, rng->uniform01());
    return 1;
  }
  lua_Integer lo = 1, hi;
  if (n == 1) {
    hi = luaL_checkinteger(L, 1);
  } else {
    lo = luaL_checkinteger(L, 1);
    hi = luaL_checkinteger(L, 2);
  }
  luaL_argcheck(L, lo <= hi, n, "interval is empty");
  lua_pushinteger(L, rng->uniform_range(lo, hi));
  return 1;
}
int l_math_randomseed(lua_State* L) {
  return luaL_error(L, "math.randomseed is not available: the run's --seed drives randomness");
}

int l_print(lua_State* L) {
  // Scenario output goes to stderr so stdout stays the run summary.
  const int n = lua_gettop(L);
  for (int i = 1; i <= n; ++i) {
    std::size_t len;
    const char* s = luaL_tolstring(L, i, &len);
    if (i > 1) std::fputc('\t', stderr);
    std::fwrite(s, 1, len, stderr);
    lua_pop(L, 1);
  }
  std::fputc('\n', stderr);
  return 0;
}

bool valid_module_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || name.front() == '.' || name.back() == '.') return false;
  for (char c : name) {
    if (!(c == '_' || c == '.' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  }
  return name.find("..") == std::string::npos;
}

// require "lib.fares" -> <lib_root>/lib/fares.lua, loaded once per state.
int l_require(lua_State* L) {
  const std::string name = luaL_checkstring(L, 1);
  const auto* root = static_cast<const std::string*>(lua_touserdata(L, lua_upvalueindex(1)));
  if (!valid_module_name(name) || name.rfind("lib.", 0) != 0) {
    return luaL_error(L, "require '%s': only modules of the scenario library (lib.<name>) can "
                      "be required", name.c_str());
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "citycard.loaded");
  lua_getfield(L, -1, name.c_str());
  if (!lua_isnil(L, -1)) return 1;
  lua_pop(L, 1);
  std::string path = name;
  for (char& c : path) c = c == '.' ? '/' : c;
  path = *root + "/" + path + ".lua";
  if (luaL_loadfilex(L, path.c_str(), "t") != LUA_OK) return lua_error(L);
  lua_call(L, 0, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name.c_str());
  return 1;
}

int l_locked_index(lua_State* L) {
  return luaL_error(L, "undeclared global '%s' (globals are locked; use local)",
                    luaL_tolstring(L, 2, nullptr));
}
int l_locked_newindex(lua_State* L) {
  return luaL_error(L, "assignment to undeclared global '%s' (globals are locked; use local)",
                    luaL_tolstring(L, 2, nullptr));
}

int message_handler(lua_State* L) {
  const char* msg = lua_tostring(L, 1);
  if (!msg) msg = luaL_tolstring(L, 1, nullptr);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

}  // namespace

LuaSandbox::LuaSandbox(SandboxLimits limits, std::string lib_root, const sim::Clock& clock,
                       std::int64_t calendar_origin_unix_s, sim::Rng rng)
    : limits_(limits), lib_root_(std::move(lib_root)), clock_(clock), rng_(rng) {
  L_ = lua_newstate(&LuaSandbox::alloc, this);
  if (!L_) throw std::runtime_error("cannot create a Lua state");
  lua_pushlightuserdata(L_, this);
  lua_rawsetp(L_, LUA_REGISTRYINDEX, &kSandboxKey);
  install_libraries(calendar_origin_unix_s);
  lua_sethook(L_, &LuaSandbox::hook, LUA_MASKCOUNT, kHookEveryInstructions);
}

LuaSandbox::~LuaSandbox() {
  if (L_) lua_close(L_);
}

void* LuaSandbox::alloc(void* ud, void* ptr, std::size_t osize, std::size_t nsize) {
  auto* s = static_cast<LuaSandbox*>(ud);
  if (ptr == nullptr) osize = 0;  // osize is a type tag then
  if (nsize == 0) {
    s->memory_bytes_ -= osize;
    std::free(ptr);
    return nullptr;
  }
  if (nsize > osize && s->memory_bytes_ + (nsize - osize) > s->limits_.memory_bytes_max) {
    return nullptr;  // Lua raises "not enough memory"
  }
  void* p = std::realloc(ptr, nsize);
  if (p) s->memory_bytes_ = s->memory_bytes_ - osize + nsize;
  return p;
}

void LuaSandbox::hook(lua_State* L, lua_Debug*) {
  LuaSandbox* s = self(L);
  s->instructions_ += kHookEveryInstructions;
  if (s->exceeded_ == Exceeded::kNo) {
    if (s->instructions_ > s->limits_.instructions_max) {
      s->exceeded_ = Exceeded::kInstructions;
    } else if (s->wall_.now_us() / 1000 > s->limits_.wall_ms_max) {
      s->exceeded_ = Exceeded::kWallTime;
    }
    if (s->exceeded_ != Exceeded::kNo) {
      // From now on raise at every instruction, so a pcall in the script that caught the
      // first error gets another at once and cannot keep going.
      lua_sethook(L, &LuaSandbox::hook, LUA_MASKCOUNT, 1);
    }
  }
  if (s->exceeded_ == Exceeded::kInstructions) {
    luaL_error(L, "instruction budget of %I exceeded",
               static_cast<lua_Integer>(s->limits_.instructions_max));
  } else if (s->exceeded_ == Exceeded::kWallTime) {
    luaL_error(L, "wall-time limit of %I ms exceeded",
               static_cast<lua_Integer>(s->limits_.wall_ms_max));
  }
}

void LuaSandbox::install_libraries(std::int64_t calendar_origin_unix_s) {
  static const luaL_Reg kLibs[] = {{LUA_GNAME, luaopen_base},        {LUA_TABLIBNAME, luaopen_table},
                                   {LUA_STRLIBNAME, luaopen_string}, {LUA_MATHLIBNAME, luaopen_math},
                                   {LUA_UTF8LIBNAME, luaopen_utf8},  {LUA_COLIBNAME, luaopen_coroutine}};
  for (const auto& lib : kLibs) {
    luaL_requiref(L_, lib.name, lib.func, 1);
    lua_pop(L_, 1);
  }
  // Remove what reaches files or lets code in unchecked.
  for (const char* name : {"dofile", "loadfile", "load", "collectgarbage"}) {
    lua_pushnil(L_);
    lua_setglobal(L_, name);
  }
  lua_pushcfunction(L_, l_print);
  lua_setglobal(L_, "print");

  lua_getglobal(L_, "math");
  lua_pushlightuserdata(L_, &rng_);
  lua_pushcclosure(L_, l_math_random, 1);
  lua_setfield(L_, -2, "random");
  lua_pushcfunction(L_, l_math_randomseed);
  lua_setfield(L_, -2, "randomseed");
  lua_pop(L_, 1);

  auto* os_state = static_cast<OsState*>(lua_newuserdatauv(L_, sizeof(OsState), 0));
  *os_state = OsState{&clock_, calendar_origin_unix_s};
  lua_setfield(L_, LUA_REGISTRYINDEX, "citycard.os_state");
  lua_newtable(L_);
  lua_getfield(L_, LUA_REGISTRYINDEX, "citycard.os_state");
  lua_pushcclosure(L_, l_os_time, 1);
  lua_setfield(L_, -2, "time");
  lua_getfield(L_, LUA_REGISTRYINDEX, "citycard.os_state");
  lua_pushcclosure(L_, l_os_clock, 1);
  lua_setfield(L_, -2, "clock");
  lua_setglobal(L_, "os");

  lua_newtable(L_);
  lua_setfield(L_, LUA_REGISTRYINDEX, "citycard.loaded");
  lua_pushlightuserdata(L_, &lib_root_);
  lua_pushcclosure(L_, l_require, 1);
  lua_setglobal(L_, "require");
}

void LuaSandbox::set_global_function(const char* name, lua_CFunction fn, void* upvalue) {
  lua_pushlightuserdata(L_, upvalue);
  lua_pushcclosure(L_, fn, 1);
  lua_setglobal(L_, name);
}

void LuaSandbox::lock_globals() {
  lua_pushglobaltable(L_);
  lua_newtable(L_);
  lua_pushcfunction(L_, l_locked_index);
  lua_setfield(L_, -2, "__index");
  lua_pushcfunction(L_, l_locked_newindex);
  lua_setfield(L_, -2, "__newindex");
  lua_pushboolean(L_, 0);
  lua_setfield(L_, -2, "__metatable");  // getmetatable(_G) cannot unlock it
  lua_setmetatable(L_, -2);
  lua_pop(L_, 1);
}

Status LuaSandbox::pcall_top(int nargs) {
  const int base = lua_gettop(L_) - nargs;
  lua_pushcfunction(L_, message_handler);
  lua_insert(L_, base);
  const int rc = lua_pcall(L_, nargs, 0, base);
  lua_remove(L_, base);
  if (rc != LUA_OK) {
    std::string msg = lua_tostring(L_, -1) ? lua_tostring(L_, -1) : "error object is not a string";
    lua_pop(L_, 1);
    return Status(Errc::kRejected, msg);
  }
  if (exceeded_ != Exceeded::kNo) {
    // The script swallowed every error and still returned; the run is over all the same.
    return Status(Errc::kTooLarge, exceeded_ == Exceeded::kInstructions
                                       ? "instruction budget exceeded"
                                       : "wall-time limit exceeded");
  }
  return Status::ok();
}

Status LuaSandbox::run_file(const std::string& path) {
  if (luaL_loadfilex(L_, path.c_str(), "t") != LUA_OK) {
    std::string msg = lua_tostring(L_, -1);
    lua_pop(L_, 1);
    return Status(Errc::kMalformed, msg);
  }
  return pcall_top(0);
}

Status LuaSandbox::run_string(const std::string& code, const std::string& chunk_name) {
  if (luaL_loadbufferx(L_, code.data(), code.size(), ("@" + chunk_name).c_str(), "t") != LUA_OK) {
    std::string msg = lua_tostring(L_, -1);
    lua_pop(L_, 1);
    return Status(Errc::kMalformed, msg);
  }
  return pcall_top(0);
}

Status LuaSandbox::call_function_ref(int ref) {
  lua_rawgeti(L_, LUA_REGISTRYINDEX, ref);
  return pcall_top(0);
}

namespace {
// Pushes t[key]; throws when the value has a type other than `want` (nil is fine).
bool field_of_type(lua_State* L, int idx, const char* key, int want, const char* want_name) {
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx)) throw std::invalid_argument("expected a table of options");
  lua_getfield(L, idx, key);
  const int t = lua_type(L, -1);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return false;
  }
  if (t != want && !(want == LUA_TNUMBER && t == LUA_TSTRING && lua_isnumber(L, -1))) {
    const std::string msg = std::string("field '") + key + "' must be a " + want_name + ", not a " +
                            lua_typename(L, t);
    lua_pop(L, 1);
    throw std::invalid_argument(msg);
  }
  return true;
}
}  // namespace

std::string opt_string_field(lua_State* L, int idx, const char* key, const std::string& fallback) {
  if (!field_of_type(L, idx, key, LUA_TSTRING, "string")) return fallback;
  std::string v = lua_tostring(L, -1);
  lua_pop(L, 1);
  return v;
}

std::int64_t opt_int_field(lua_State* L, int idx, const char* key, std::int64_t fallback) {
  if (!field_of_type(L, idx, key, LUA_TNUMBER, "number")) return fallback;
  int isnum = 0;
  const lua_Integer v = lua_tointegerx(L, -1, &isnum);
  lua_pop(L, 1);
  if (!isnum) throw std::invalid_argument(std::string("field '") + key + "' must be an integer");
  return v;
}

double opt_number_field(lua_State* L, int idx, const char* key, double fallback) {
  if (!field_of_type(L, idx, key, LUA_TNUMBER, "number")) return fallback;
  const double v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

bool opt_bool_field(lua_State* L, int idx, const char* key, bool fallback) {
  if (!field_of_type(L, idx, key, LUA_TBOOLEAN, "boolean")) return fallback;
  const bool v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

}  // namespace citycard::scenarios
