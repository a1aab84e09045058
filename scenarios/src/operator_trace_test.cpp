// The operator reports through the trace against the backend itself: a backend with a
// merchant, a settled day and a written bank file (backend's own money test fixture), its
// reports written into a trace, read back and rendered.
#include "operator_trace.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "citycard/reports/operator_report.h"
#include "citycard/reports/report.h"
#include "money_test_util.h"

namespace citycard::scenarios {
namespace {

namespace bt = citycard::backend::testing;
using backend::MerchantParams;

class OperatorTrace : public bt::MoneyTest {};

TEST_F(OperatorTrace, BankFileFromTheTraceIsTheFileTheBackendWrote) {
  MerchantParams shop = merchant("shop");  // settles daily
  shop.txn_fee_bp = 60;
  add_merchant(shop);
  bt::TestTerminal pos = terminal("shop");
  bt::PurseCard a = issue_card(90'000), b = issue_card(50'000);
  const auto ingest = backend->upload(bt::make_batch(
      pos, {bt::purchase(a.card, pos, 1'234, now()), bt::purchase(b.card, pos, 4'321, now())}));
  ASSERT_TRUE(ingest.ok()) << ingest.message;
  next_day();
  auto batch = backend->settlement().prepare(fin1);
  ASSERT_TRUE(batch.is_ok()) << batch.status().to_string();
  ASSERT_TRUE(backend->settlement().approve(fin2, batch->id).is_ok());
  auto file = backend->settlement().write_bank_file(fin1, batch->id);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  ASSERT_EQ(file->lines, 1);

  const std::string path = ::testing::TempDir() + "operator_trace.jsonl";
  auto trace = reports::TraceWriter::open(path);
  ASSERT_TRUE(trace.is_ok());
  trace_operator_reports(*backend, **trace, 0, &fin1);
  ASSERT_TRUE((*trace)->close().is_ok());
  auto st = reports::aggregate_trace(path);
  ASSERT_TRUE(st.is_ok()) << st.status().to_string();

  const reports::Json* settlement = nullptr;
  std::int64_t shop_day_fen = -1;
  for (const auto& ev : st->operator_events) {
    if (ev["ev"] == "settlement_batch") settlement = &ev;
    if (ev["ev"] == "op_merchant" && ev["merchant"] == "shop" && ev["period_kind"] == "day") {
      shop_day_fen = ev["purchase_fen"];
    }
  }
  ASSERT_NE(settlement, nullptr);
  EXPECT_EQ((*settlement)["state"], "file_written");
  EXPECT_EQ(reports::bank_batch_file(*settlement), file->contents);
  EXPECT_EQ(shop_day_fen, 1'234 + 4'321);
  bool bank_csv = false;
  for (const auto& [name, text] : reports::operator_csv_files(*st)) {
    if (name == "bank_batch_" + std::to_string(batch->id) + ".csv") {
      bank_csv = true;
      EXPECT_EQ(text, file->contents);
    }
  }
  EXPECT_TRUE(bank_csv);
}

}  // namespace
}  // namespace citycard::scenarios
