// A fresh, sandboxed Lua 5.4 state for one scenario.
//
// What a script gets: the base library without dofile/loadfile/load/collectgarbage, and
// string, table, math, utf8, coroutine. No io, no os but os.time/os.clock (scenario clock),
// math.random from the run's seed, `require` only of modules under the scenario library's
// lib/ folder. After set-up the globals are locked: reading or assigning an undeclared global
// is an error. Limits: an instruction budget and a wall-time limit enforced by a count hook
// that keeps raising once exceeded, so a script's pcall cannot swallow it; a memory limit in
// the allocator.
//
// Errors name the file and line ("scenarios/smoke.lua:12: ...").
// Single-threaded: a sandbox belongs to the thread that runs the scenario.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <lua.hpp>

#include "citycard/protocol/status.h"
#include "citycard/sim/clock.h"
#include "citycard/sim/rng.h"

namespace citycard::scenarios {

struct SandboxLimits {
  std::uint64_t instructions_max = 2'000'000'000;
  std::int64_t wall_ms_max = 600'000;
  std::size_t memory_bytes_max = 512u << 20;
};

class LuaSandbox {
 public:
  // `lib_root`: the folder `require "lib.x"` resolves in (lib_root/lib/x.lua).
  // `clock` gives os.clock/os.time (virtual seconds); `rng` backs math.random.
  LuaSandbox(SandboxLimits limits, std::string lib_root, const sim::Clock& clock,
             std::int64_t calendar_origin_unix_s, sim::Rng rng);
  ~LuaSandbox();
  LuaSandbox(const LuaSandbox&) = delete;
  LuaSandbox& operator=(const LuaSandbox&) = delete;

  lua_State* state() { return L_; }

  // Registers a global before lock_globals().
  void set_global_function(const char* name, lua_CFunction fn, void* upvalue);
  // After this, undeclared globals are errors. Call once the API is installed.
  void lock_globals();

  // Loads and runs a file. The error message (file:line: what) on failure.
  Status run_file(const std::string& path);
  Status run_string(const std::string& code, const std::string& chunk_name);

  std::uint64_t instructions_used() const { return instructions_; }
  bool budget_exceeded() const { return exceeded_ != Exceeded::kNo; }

  // Calls a Lua function value at stack index `idx` with no arguments, under the same
  // budget; used for callbacks a scenario registers (phases, actions).
  Status call_function_ref(int ref);

 private:
  enum class Exceeded { kNo, kInstructions, kWallTime };
  static void hook(lua_State* L, lua_Debug* ar);
  static void* alloc(void* ud, void* ptr, std::size_t osize, std::size_t nsize);
  Status pcall_top(int nargs);
  void install_libraries(std::int64_t calendar_origin_unix_s);

  SandboxLimits limits_;
  std::string lib_root_;
  const sim::Clock& clock_;
  sim::Rng rng_;
  sim::WallClock wall_;
  lua_State* L_ = nullptr;
  std::uint64_t instructions_ = 0;
  std::size_t memory_bytes_ = 0;
  Exceeded exceeded_ = Exceeded::kNo;
};

// Reads a string/integer field of the table at `idx`; throws std::invalid_argument with a
// message naming the field when it has the wrong type. Missing -> fallback.
std::string opt_string_field(lua_State* L, int idx, const char* key, const std::string& fallback);
std::int64_t opt_int_field(lua_State* L, int idx, const char* key, std::int64_t fallback);
double opt_number_field(lua_State* L, int idx, const char* key, double fallback);
bool opt_bool_field(lua_State* L, int idx, const char* key, bool fallback);

// Wraps a binding body: a C++ exception becomes a Lua error (with the script's file:line)
// after the body's C++ objects have been destroyed.
template <class F>
int guarded(lua_State* L, F&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    luaL_where(L, 1);
    lua_pushstring(L, e.what());
    lua_concat(L, 2);
  }
  return lua_error(L);
}

}  // namespace citycard::scenarios
