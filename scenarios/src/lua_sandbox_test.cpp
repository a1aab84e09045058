#include "citycard/scenarios/lua_sandbox.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "citycard/sim/event_loop.h"

namespace citycard::scenarios {
namespace {

class Sandbox : public ::testing::Test {
 protected:
  Status run(const std::string& code, SandboxLimits limits = {}) {
    box = std::make_unique<LuaSandbox>(limits, lib_root(), loop, 1'700'000'000, sim::Rng(5));
    box->lock_globals();
    return box->run_string(code, "test.lua");
  }
  static std::string lib_root() {
    const std::string root = ::testing::TempDir() + "citycard_lib_root";
    std::filesystem::create_directories(root + "/lib");
    std::ofstream(root + "/lib/helper.lua") << "local M = {}\nfunction M.twice(x) return 2 * x "
                                               "end\nreturn M\n";
    return root;
  }
  sim::EventLoop loop;
  std::unique_ptr<LuaSandbox> box;
};

TEST_F(Sandbox, PlainCodeRuns) {
  EXPECT_TRUE(run("local t = {} for i = 1, 10 do t[#t + 1] = string.format('%d', i) end\n"
                  "assert(table.concat(t, ',') == '1,2,3,4,5,6,7,8,9,10')")
                  .is_ok());
}

TEST_F(Sandbox, NoFilesNoProcessesNoLoad) {
  for (const char* code : {"io.open('/etc/passwd')", "os.execute('true')", "dofile('/x.lua')",
                           "loadfile('/x.lua')", "load('return 1')", "os.getenv('HOME')",
                           "collectgarbage()"}) {
    Status s = run(code);
    EXPECT_FALSE(s.is_ok()) << code;
  }
}

TEST_F(Sandbox, UnknownGlobalsAreErrorsWithFileAndLine) {
  Status s = run("local x = 1\nlocal y = undefined_thing + 1");
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("test.lua:2:"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("undeclared global 'undefined_thing'"), std::string::npos);
  Status w = run("leaked = 5");
  EXPECT_NE(w.message().find("assignment to undeclared global 'leaked'"), std::string::npos);
  EXPECT_FALSE(run("setmetatable(_G, nil)").is_ok());
}

TEST_F(Sandbox, SyntaxErrorNamesFileAndLine) {
  Status s = run("local a = 1\nlocal b = = 2\n");
  EXPECT_EQ(s.code(), Errc::kMalformed);
  EXPECT_NE(s.message().find("test.lua:2:"), std::string::npos) << s.message();
}

TEST_F(Sandbox, InstructionBudgetCannotBeSwallowedByPcall) {
  SandboxLimits small;
  small.instructions_max = 100'000;
  Status s = run("while true do pcall(function() while true do end end) end", small);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("instruction budget"), std::string::npos) << s.message();
  EXPECT_TRUE(box->budget_exceeded());
}

TEST_F(Sandbox, MemoryLimitStopsARunawayAllocation) {
  SandboxLimits small;
  small.memory_bytes_max = 4u << 20;
  Status s = run("local t = {} for i = 1, 1e8 do t[i] = string.rep('x', 100) .. i end", small);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("not enough memory"), std::string::npos) << s.message();
}

TEST_F(Sandbox, RandomComesFromTheSeedAndCannotBeReseeded) {
  ASSERT_TRUE(run("local a = math.random(1, 1000000)").is_ok());
  // Same seed, same first draw: compare two fresh sandboxes.
  auto draw = [&] {
    box = std::make_unique<LuaSandbox>(SandboxLimits{}, lib_root(), loop, 0, sim::Rng(5));
    lua_State* L = box->state();
    EXPECT_EQ(luaL_dostring(L, "return math.random(1, 1000000)"), LUA_OK);
    const auto v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
  };
  EXPECT_EQ(draw(), draw());
  EXPECT_FALSE(run("math.randomseed(1)").is_ok());
}

TEST_F(Sandbox, TimeIsTheScenarioClock) {
  loop.schedule_at(90'000'000, [] {});
  loop.run();
  EXPECT_TRUE(run("assert(os.clock() == 90)\nassert(os.time() == 1700000090)").is_ok());
}

TEST_F(Sandbox, RequireOnlyFromTheScenarioLibrary) {
  EXPECT_TRUE(run("local h = require 'lib.helper'\nassert(h.twice(21) == 42)\n"
                  "assert(require 'lib.helper' == h)")
                  .is_ok());
  Status s = run("require 'os'");
  EXPECT_NE(s.message().find("only modules of the scenario library"), std::string::npos);
  EXPECT_FALSE(run("require 'lib/../../etc/passwd'").is_ok());
  EXPECT_FALSE(run("require 'lib.nope'").is_ok());
}

}  // namespace
}  // namespace citycard::scenarios
