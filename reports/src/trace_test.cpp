#include "citycard/reports/trace.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace citycard::reports {
namespace {

TEST(Trace, SameEventsSameDigestAndBytes) {
  const std::string a_path = ::testing::TempDir() + "trace_a.jsonl";
  auto a = TraceWriter::open(a_path);
  auto b = TraceWriter::open("");
  ASSERT_TRUE(a.is_ok());
  ASSERT_TRUE(b.is_ok());
  for (auto* w : {a->get(), b->get()}) {
    w->event(0, "run_start", {{"seed", 7}});
    w->event(1500, "swipe", {{"route", "R1"}, {"amount_fen", 200}, {"ok", true}});
  }
  EXPECT_EQ((*a)->digest_hex(), (*b)->digest_hex());
  EXPECT_EQ((*a)->events(), 2u);
  ASSERT_TRUE((*a)->close().is_ok());
  std::ifstream f(a_path);
  std::stringstream ss;
  ss << f.rdbuf();
  EXPECT_EQ(ss.str(),
            "{\"ev\":\"run_start\",\"seed\":7,\"t_us\":0}\n"
            "{\"amount_fen\":200,\"ev\":\"swipe\",\"ok\":true,\"route\":\"R1\",\"t_us\":1500}\n");
}

TEST(Trace, DifferentEventsDifferentDigest) {
  auto a = TraceWriter::open("");
  auto b = TraceWriter::open("");
  (*a)->event(0, "swipe", {{"amount_fen", 200}});
  (*b)->event(0, "swipe", {{"amount_fen", 201}});
  EXPECT_NE((*a)->digest_hex(), (*b)->digest_hex());
  EXPECT_EQ((*a)->digest_hex().size(), 64u);
}

TEST(Trace, UnwritablePathIsAnError) {
  auto w = TraceWriter::open("/nonexistent-dir/trace.jsonl");
  EXPECT_EQ(w.status().code(), Errc::kIo);
}

}  // namespace
}  // namespace citycard::reports
