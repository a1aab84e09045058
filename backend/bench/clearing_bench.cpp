// Clearing over a month of a big city: 15 million swipes (500,000 a day for 30 days, 20,000
// terminals of 50 operators on 500 routes, 1 million cards) in a SQLite file on disk, and the
// aggregations clearing and settlement run over them: by operator, by route, by operator and
// day (settlement's per-period totals), and the reconciliation of every operator's payable with
// its swipes.
//
//   build/bench/backend_bench --benchmark_filter=Clearing --benchmark_counters_tabular=true
//
// The rows are generated in SQL (a benchmark, not a city run), once: the file
// ($TMPDIR/citycard_clearing_bench_15m.db, about 4 GB) is kept and reused by later runs. Each
// benchmark runs its queries once (one iteration); records_per_s is swipes over wall seconds.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "citycard/backend/backend.h"
#include "citycard/sim/clock.h"

namespace {

using namespace citycard;

constexpr std::int64_t kSwipes = 15'000'000;
constexpr std::int64_t kPerBatch = 100;
constexpr std::int64_t kTerminals = 20'000;
constexpr std::int64_t kCards = 1'000'000;
constexpr int kDays = 30;

class FixedClock final : public sim::Clock {
 public:
  std::int64_t now_us() const override { return 0; }
};

void check(const Status& s, const char* what) {
  if (!s.is_ok()) {
    std::fprintf(stderr, "clearing bench setup, %s: %s\n", what, s.to_string().c_str());
    std::abort();
  }
}

// The city: terminals, cards and batches for the swipes to refer to, then the swipes. The
// secondary indexes are dropped during the load and built after it (a sorted build, much
// faster than 15 million random inserts); the unique keys stay. Each operator's payable is
// posted as one entry so the books reconcile with the swipes.
void generate(backend::Backend& be) {
  backend::Store& st = be.store();
  check(st.exec("PRAGMA foreign_keys=OFF"), "foreign keys off");  // parents come first anyway
  auto txn = st.begin();
  check(txn.status(), "begin");
  check(st.exec("DROP INDEX swipes_by_date; DROP INDEX swipes_by_batch;"), "drop indexes");
  const std::string t = std::to_string(kTerminals), c = std::to_string(kCards),
                    n = std::to_string(kSwipes), b = std::to_string(kPerBatch),
                    d = std::to_string(kDays);
  // 8- and 6-byte keys as the ASCII digits of a number: distinct, and of the checked lengths.
  check(st.exec("WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < " + t +
                " - 1) INSERT INTO terminals(terminal_id, operator_id, route, vehicle, device_id, "
                "key_version, registered_at_us) SELECT CAST(printf('%06d', i) AS BLOB), "
                "'op-' || (i % 50), 'R' || (i % 500), 'V' || i, 'D' || i, 1, 0 FROM k"),
        "terminals");
  check(st.exec("WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < " + c +
                " - 1) INSERT INTO cards(serial, card_number, family, card_type, status, "
                "key_version, algorithm_id, balance_fen, last_counter, deposit_fen, "
                "overdraft_limit_fen, valid_from, valid_to, issued_at_us) SELECT "
                "CAST(printf('%08d', i) AS BLOB), printf('3100%012d', i), 1, 0, 0, 1, 0, 0, "
                "NULL, 0, 0, 20240101, 20290101, 0 FROM k"),
        "cards");
  check(st.exec("WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < " + n +
                " / " + b +
                " - 1) INSERT INTO batches(terminal_id, batch_no, batch_mac, "
                "record_count, total_amount_fen, settlement_date, processed_at_us) SELECT "
                "CAST(printf('%06d', i % " +
                t + ") AS BLOB), i / " + t + " + 1, x'00000000', " + b + ", 0, 20240101 + i % " +
                d + ", 0 FROM k"),
        "batches");
  // Swipe i is record i % 100 of batch i / 100; card i % cards, counter i / cards.
  check(st.exec("WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < " + n +
                " - 1) INSERT INTO swipes(settlement_date, terminal_id, batch_no, card_serial, "
                "card_counter, balance_before_fen, amount_fen, fare_full_fen, txn_type, "
                "txn_datetime, tac, terminal_seq, key_version, algorithm_id, operator_id, route, "
                "vehicle, device, driver, transfer_count) SELECT 20240101 + (i / " +
                b + ") % " + d + ", CAST(printf('%06d', (i / " + b + ") % " + t +
                ") AS BLOB), (i / " + b + ") / " + t + " + 1, CAST(printf('%08d', i % " + c +
                ") AS BLOB), i / " + c +
                ", 100000, 100 + i % 300, 100 + i % 300, 6, x'20240101080000', x'01020304', i, "
                "1, 0, 'op-' || ((i / " +
                b + ") % " + t + " % 50), 'R' || ((i / " + b + ") % " + t +
                " % 500), 'V', 'D', '', i % 3 = 0 FROM k"),
        "swipes");
  check(st.exec("CREATE INDEX swipes_by_date ON swipes(settlement_date); "
                "CREATE INDEX swipes_by_batch ON swipes(terminal_id, batch_no);"),
        "indexes");
  check(txn->commit(), "commit");
  check(st.exec("PRAGMA foreign_keys=ON"), "foreign keys on");
  auto totals = be.clearing().by_operator();
  check(totals.status(), "operator totals");
  auto post = st.begin();
  for (const backend::OperatorTotal& op : *totals) {
    check(be.ledger().open_account(backend::account::payable(op.operator_id)), "account");
    auto p = be.ledger().post({"bench",
                               "generated swipes of " + op.operator_id,
                               {{std::string(backend::account::kCardFloat), op.amount_fen},
                                {backend::account::payable(op.operator_id), -op.amount_fen}}});
    check(p.status(), "posting");
  }
  check(st.query("INSERT INTO meta(key, value) VALUES ('bench_swipes', ?1)")
            .bind(1, std::to_string(kSwipes))
            .run(),
        "marker");
  check(post->commit(), "commit postings");
  // Into the database file: reads then need not look each page up in a 2 GB WAL.
  check(st.exec("PRAGMA wal_checkpoint(TRUNCATE)"), "checkpoint");
}

backend::Backend& city() {
  static FixedClock clock;
  static std::unique_ptr<backend::Backend> be = [] {
    const std::string db =
        (std::filesystem::temp_directory_path() / "citycard_clearing_bench_15m.db").string();
    backend::BackendOptions o;
    o.store.cache_size_kib = 1 << 20;  // 1 GiB: the month's index pages fit
    auto opened = backend::Backend::open(db, o, clock);
    if (!opened.is_ok()) {
      // A file from another build's schema: make it again.
      std::fprintf(stderr, "%s: %s; generating it again\n", db.c_str(),
                   opened.status().to_string().c_str());
      for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
      opened = backend::Backend::open(db, o, clock);
      check(opened.status(), "open");
    }
    auto b = std::move(opened).value();
    auto q = b->store().query("SELECT value FROM meta WHERE key = 'bench_swipes'");
    auto row = q.step();
    const bool ready = row.is_ok() && *row && q.column_text(0) == std::to_string(kSwipes);
    if (!ready) {
      std::fprintf(stderr, "generating %lld swipes into %s (once; later runs reuse it)\n",
                   static_cast<long long>(kSwipes), db.c_str());
      generate(*b);
    }
    return b;
  }();
  return *be;
}

template <class F>
void timed(benchmark::State& state, F&& f) {
  backend::Backend& be = city();
  sim::WallClock wall;
  std::int64_t us = 0;
  for (auto _ : state) {
    const std::int64_t start = wall.now_us();
    const Status s = f(be);
    us += wall.now_us() - start;
    if (!s.is_ok()) state.SkipWithError(s.to_string().c_str());
  }
  const double seconds = static_cast<double>(us) / 1e6 / static_cast<double>(state.iterations());
  state.counters["seconds"] = seconds;
  state.counters["records_per_s"] = static_cast<double>(kSwipes) / seconds;
}

void BM_ClearingByOperator(benchmark::State& state) {
  timed(state, [](backend::Backend& be) { return be.clearing().by_operator().status(); });
}
BENCHMARK(BM_ClearingByOperator)->Iterations(1)->UseRealTime()->Unit(benchmark::kSecond);

void BM_ClearingByRoute(benchmark::State& state) {
  timed(state, [](backend::Backend& be) { return be.clearing().by_route().status(); });
}
BENCHMARK(BM_ClearingByRoute)->Iterations(1)->UseRealTime()->Unit(benchmark::kSecond);

// What settlement reads: every operator's count and amount per day of the period.
void BM_ClearingSettlementDayTotals(benchmark::State& state) {
  timed(state, [](backend::Backend& be) -> Status {
    auto q = be.store().query(
        "SELECT operator_id, settlement_date, count(*), sum(amount_fen) FROM swipes "
        "WHERE settlement_date BETWEEN ?1 AND ?2 GROUP BY operator_id, settlement_date");
    q.bind(1, std::int64_t{20240101}).bind(2, std::int64_t{20240131});
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) return Status::ok();
    }
  });
}
BENCHMARK(BM_ClearingSettlementDayTotals)->Iterations(1)->UseRealTime()->Unit(benchmark::kSecond);

void BM_ClearingReconcileWithLedger(benchmark::State& state) {
  timed(state, [](backend::Backend& be) { return be.clearing().reconcile_with_ledger(); });
}
BENCHMARK(BM_ClearingReconcileWithLedger)->Iterations(1)->UseRealTime()->Unit(benchmark::kSecond);

// One day of the month, as a daily clearing run does it.
void BM_ClearingOneDayByRoute(benchmark::State& state) {
  timed(state, [](backend::Backend& be) {
    return be.clearing().by_route({20240115, 20240115}).status();
  });
}
BENCHMARK(BM_ClearingOneDayByRoute)->Iterations(1)->UseRealTime()->Unit(benchmark::kSecond);

// The month's clearing and settlement figures together: by operator, by route, settlement's
// day totals and the reconciliation with the ledger. The goal is under 60 s.
void BM_ClearingAndSettlementOfTheMonth(benchmark::State& state) {
  timed(state, [](backend::Backend& be) -> Status {
    if (auto r = be.clearing().by_operator(); !r.is_ok()) return r.status();
    if (auto r = be.clearing().by_route(); !r.is_ok()) return r.status();
    auto q = be.store().query(
        "SELECT operator_id, settlement_date, count(*), sum(amount_fen) FROM swipes "
        "WHERE settlement_date BETWEEN ?1 AND ?2 GROUP BY operator_id, settlement_date");
    q.bind(1, std::int64_t{20240101}).bind(2, std::int64_t{20240131});
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
    }
    return be.clearing().reconcile_with_ledger();
  });
}
BENCHMARK(BM_ClearingAndSettlementOfTheMonth)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kSecond);

}  // namespace
