#include "citycard/backend/store.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "schema.h"
#include "test_city.h"

namespace citycard::backend {
namespace {

constexpr Migration kTwoSteps[] = {
    {1, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL UNIQUE);"},
    {2, "ALTER TABLE t ADD COLUMN note TEXT NOT NULL DEFAULT '';"},
};

std::unique_ptr<Store> open_or_die(const std::string& path, StoreOptions o = {}) {
  auto s = Store::open(path, o);
  EXPECT_TRUE(s.is_ok()) << s.status().to_string();
  return s.is_ok() ? std::move(s).value() : nullptr;
}

std::int64_t count_rows(Store& s) {
  auto q = s.query("SELECT count(*) FROM t");
  auto row = q.step();
  EXPECT_TRUE(row.is_ok() && *row);
  return q.column_int64(0);
}

Status insert(Store& s, std::int64_t v) {
  return s.query("INSERT INTO t(v) VALUES (?1)").bind(1, v).run();
}

TEST(Store, MigratesInOrderAndRecordsTheVersion) {
  auto s = open_or_die(":memory:");
  ASSERT_TRUE(s->migrate(std::span(kTwoSteps, 1)).is_ok());
  EXPECT_EQ(*s->schema_version(), 1);
  ASSERT_TRUE(s->migrate(kTwoSteps).is_ok());
  EXPECT_EQ(*s->schema_version(), 2);
  EXPECT_TRUE(s->exec("INSERT INTO t(v, note) VALUES (1, 'x')").is_ok());
  ASSERT_TRUE(s->migrate(kTwoSteps).is_ok());  // idempotent
  EXPECT_EQ(count_rows(*s), 1);
}

TEST(Store, RefusesADatabaseFromANewerBuild) {
  auto s = open_or_die(":memory:");
  ASSERT_TRUE(s->migrate(kTwoSteps).is_ok());
  const Status st = s->migrate(std::span(kTwoSteps, 1));
  EXPECT_EQ(st.code(), Errc::kInvalidArgument) << st.to_string();
}

TEST(Store, AFailedMigrationLeavesTheVersionAlone) {
  auto s = open_or_die(":memory:");
  constexpr Migration kBad[] = {{1, "CREATE TABLE a(x); CREATE TABLE a(x);"}};
  EXPECT_FALSE(s->migrate(kBad).is_ok());
  EXPECT_EQ(*s->schema_version(), 0);
  EXPECT_FALSE(s->exec("SELECT * FROM a").is_ok());  // the first CREATE rolled back too
}

TEST(Store, TransactionGuardRollsBackUnlessCommitted) {
  auto s = open_or_die(":memory:");
  ASSERT_TRUE(s->migrate(kTwoSteps).is_ok());
  {
    auto txn = s->begin();
    ASSERT_TRUE(txn.is_ok());
    ASSERT_TRUE(insert(*s, 1).is_ok());
  }
  EXPECT_EQ(count_rows(*s), 0);
  EXPECT_FALSE(s->in_transaction());
  {
    auto txn = s->begin();
    ASSERT_TRUE(insert(*s, 1).is_ok());
    ASSERT_TRUE(txn->commit().is_ok());
  }
  EXPECT_EQ(count_rows(*s), 1);
}

TEST(Store, NestedTransactionsAreSavepoints) {
  auto s = open_or_die(":memory:");
  ASSERT_TRUE(s->migrate(kTwoSteps).is_ok());
  {
    auto outer = s->begin();
    ASSERT_TRUE(insert(*s, 1).is_ok());
    {
      auto inner = s->begin();
      ASSERT_TRUE(insert(*s, 2).is_ok());
      // dropped: only the inner insert goes
    }
    {
      auto inner = s->begin();
      ASSERT_TRUE(insert(*s, 3).is_ok());
      ASSERT_TRUE(inner->commit().is_ok());
    }
    EXPECT_EQ(count_rows(*s), 2);
    ASSERT_TRUE(outer->commit().is_ok());
  }
  EXPECT_EQ(count_rows(*s), 2);
  {
    auto outer = s->begin();
    auto inner = s->begin();
    ASSERT_TRUE(insert(*s, 4).is_ok());
    ASSERT_TRUE(inner->commit().is_ok());
    // the outer one is dropped: the committed savepoint goes with it
  }
  EXPECT_EQ(count_rows(*s), 2);
}

TEST(Store, ConstraintViolationIsADuplicateStatusNotACrash) {
  auto s = open_or_die(":memory:");
  ASSERT_TRUE(s->migrate(kTwoSteps).is_ok());
  ASSERT_TRUE(insert(*s, 7).is_ok());
  const Status st = insert(*s, 7);
  EXPECT_EQ(st.code(), Errc::kDuplicate) << st.to_string();
  EXPECT_NE(st.message().find("UNIQUE"), std::string::npos) << st.message();
  EXPECT_TRUE(insert(*s, 8).is_ok());  // the cached statement was reset and works again
}

TEST(Store, BadSqlIsAStatusAtStep) {
  auto s = open_or_die(":memory:");
  auto q = s->query("SELECT nonsense FROM nowhere");
  auto row = q.step();
  EXPECT_FALSE(row.is_ok());
  EXPECT_EQ(row.status().code(), Errc::kInternal);
}

TEST(Store, CachesStatementsAndAllowsTheSameSqlNested) {
  auto s = open_or_die(":memory:");
  ASSERT_TRUE(s->migrate(kTwoSteps).is_ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(insert(*s, i).is_ok());
  const std::size_t cached = s->cached_statements();
  for (int i = 5; i < 10; ++i) ASSERT_TRUE(insert(*s, i).is_ok());
  EXPECT_EQ(s->cached_statements(), cached);

  // An outer query still stepping, and the same SQL again inside: each gets its own statement.
  const char* sql = "SELECT v FROM t WHERE v >= ?1 ORDER BY v";
  auto outer = s->query(sql);
  outer.bind(1, std::int64_t{8});
  ASSERT_TRUE(*outer.step());
  {
    auto inner = s->query(sql);
    inner.bind(1, std::int64_t{9});
    ASSERT_TRUE(*inner.step());
    EXPECT_EQ(inner.column_int64(0), 9);
  }
  EXPECT_EQ(outer.column_int64(0), 8);
  ASSERT_TRUE(*outer.step());
  EXPECT_EQ(outer.column_int64(0), 9);
}

TEST(Store, StatementCacheHasALimit) {
  StoreOptions o;
  o.statement_cache_max = 2;
  auto s = open_or_die(":memory:", o);
  for (int i = 0; i < 10; ++i) {
    auto q = s->query("SELECT " + std::to_string(i));
    ASSERT_TRUE(*q.step());
    EXPECT_EQ(q.column_int64(0), i);
  }
  EXPECT_EQ(s->cached_statements(), 2u);
}

TEST(Store, BlobsTextAndNullRoundTrip) {
  auto s = open_or_die(":memory:");
  ASSERT_TRUE(s->exec("CREATE TABLE b(x BLOB, y TEXT, z INTEGER)").is_ok());
  const Bytes blob{0x00, 0xff, 0x10};
  ASSERT_TRUE(s->query("INSERT INTO b VALUES (?1, ?2, ?3)")
                  .bind_blob(1, blob)
                  .bind(2, std::string_view("公交\0x", 8))
                  .bind_null(3)
                  .run()
                  .is_ok());
  ASSERT_TRUE(s->query("INSERT INTO b VALUES (?1, '', 1)").bind_blob(1, Bytes{}).run().is_ok());
  auto q = s->query("SELECT x, y, z, typeof(x) FROM b ORDER BY rowid");
  ASSERT_TRUE(*q.step());
  EXPECT_EQ(q.column_blob(0), blob);
  EXPECT_EQ(q.column_text(1), std::string("公交\0x", 8));
  EXPECT_TRUE(q.column_is_null(2));
  ASSERT_TRUE(*q.step());
  EXPECT_TRUE(q.column_blob(0).empty());
  EXPECT_EQ(q.column_text(3), "blob");  // an empty blob is not NULL
}

TEST(Store, FileDatabaseIsWalFullSyncWithForeignKeysAndSurvivesReopen) {
  testing::TempDir dir;
  const std::string path = dir.file("store.db");
  {
    auto s = open_or_die(path);
    ASSERT_TRUE(s->migrate(kTwoSteps).is_ok());
    auto pragma = [&](const char* sql) {
      auto q = s->query(sql);
      EXPECT_TRUE(*q.step());
      return q.column_text(0);
    };
    EXPECT_EQ(pragma("PRAGMA journal_mode"), "wal");
    EXPECT_EQ(pragma("PRAGMA synchronous"), "2");  // FULL
    EXPECT_EQ(pragma("PRAGMA foreign_keys"), "1");
    ASSERT_TRUE(insert(*s, 42).is_ok());
  }
  auto s = open_or_die(path);
  ASSERT_TRUE(s->migrate(kTwoSteps).is_ok());
  EXPECT_EQ(*s->schema_version(), 2);
  EXPECT_EQ(count_rows(*s), 1);
}

// The writer's commits do not checkpoint; the background connection does, and what it copied
// into the database file is all of the WAL, and every commit is there after a reopen.
TEST(Store, BackgroundCheckpointsCopyTheWalAndKeepEveryCommit) {
  testing::TempDir dir;
  const std::string path = dir.file("bg.db");
  StoreOptions o;
  o.checkpoint_in_background = true;
  o.wal_autocheckpoint_pages = 8;
  {
    auto s = open_or_die(path, o);
    ASSERT_TRUE(s->migrate(kTwoSteps).is_ok());
    for (int i = 0; i < 200; ++i) {
      auto txn = s->begin();
      ASSERT_TRUE(txn.is_ok());
      for (int j = 0; j < 20; ++j) ASSERT_TRUE(insert(*s, i * 100 + j).is_ok());
      ASSERT_TRUE(txn->commit().is_ok());
    }
    ASSERT_TRUE(s->wait_for_background_checkpoints(1, std::chrono::seconds(20)));
    EXPECT_GE(s->background_checkpoints(), 1u);
    EXPECT_EQ(count_rows(*s), 4'000);
  }
  // A store without the option has no checkpointer, and the file holds every commit.
  auto s = open_or_die(path);
  EXPECT_EQ(s->background_checkpoints(), 0u);
  EXPECT_FALSE(s->wait_for_background_checkpoints(1, std::chrono::milliseconds(0)));
  ASSERT_TRUE(s->migrate(kTwoSteps).is_ok());
  EXPECT_EQ(count_rows(*s), 4'000);
  // In memory there is no WAL to checkpoint: the option is ignored.
  auto m = open_or_die(":memory:", o);
  EXPECT_EQ(m->background_checkpoints(), 0u);
}

TEST(Store, SimulationOptionsAreSyncOffExclusiveAndACloseReopenKeepsEveryCommit) {
  testing::TempDir dir;
  const std::string path = dir.file("sim.db");
  {
    auto opened = Store::open(path, StoreOptions::simulation());
    ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
    auto& s = *opened;
    ASSERT_TRUE(s->migrate(kTwoSteps).is_ok());
    auto pragma = [&](const char* sql) {
      auto q = s->query(sql);
      EXPECT_TRUE(*q.step());
      return q.column_text(0);
    };
    EXPECT_EQ(pragma("PRAGMA journal_mode"), "wal");
    EXPECT_EQ(pragma("PRAGMA synchronous"), "0");  // OFF
    EXPECT_EQ(pragma("PRAGMA locking_mode"), "exclusive");
    EXPECT_EQ(pragma("PRAGMA wal_autocheckpoint"), "16384");
    ASSERT_TRUE(insert(*s, 42).is_ok());
    // Exclusive: a second connection cannot read the database while this one is open.
    StoreOptions no_wait;
    no_wait.busy_timeout_ms = 0;
    auto other = Store::open(path, no_wait);
    if (other.is_ok()) {
      EXPECT_FALSE((*other)->schema_version().is_ok());
    }
  }
  // The simulated crash closes the store; what was committed is there after the reopen.
  auto s = open_or_die(path);
  ASSERT_TRUE(s->migrate(kTwoSteps).is_ok());
  EXPECT_EQ(count_rows(*s), 1);
}

TEST(Store, ForeignKeysAreEnforced) {
  auto s = open_or_die(":memory:");
  ASSERT_TRUE(s->migrate(schema::migrations()).is_ok());
  const Status st =
      s->exec("INSERT INTO entries(posting_id, account_id, amount_fen) VALUES (999, 999, 5)");
  EXPECT_EQ(st.code(), Errc::kDuplicate) << st.to_string();  // a constraint, FOREIGN KEY
  EXPECT_NE(st.message().find("FOREIGN KEY"), std::string::npos) << st.message();
}

// Migration 4 rebuilds swipes without its foreign-key clauses (ingest guarantees the parents;
// the three lookups per insert were a fifth of ingest's SQLite time). Rows, both unique keys
// and the two indexes survive the rebuild.
TEST(Store, SwipesRebuiltWithoutForeignKeysKeepRowsKeysAndIndexes) {
  auto s = open_or_die(":memory:");
  const auto all = schema::migrations();
  ASSERT_GE(all.size(), 4u);
  ASSERT_EQ(all[3].version, 4);
  ASSERT_TRUE(s->migrate(all.first(3)).is_ok());
  const char* insert =
      "INSERT INTO swipes(settlement_date, terminal_id, batch_no, card_serial, card_counter, "
      "balance_before_fen, amount_fen, fare_full_fen, txn_type, txn_datetime, tac, terminal_seq, "
      "key_version, algorithm_id, operator_id, route, vehicle, device, driver, transfer_count, "
      "suspicious, suspicion, reconciled, posting_id) VALUES (20261122, x'010203040506', 7, "
      "x'0102030405060708', %d, 1000, 200, 200, 6, x'20261122080000', x'AABBCCDD', %d, 1, 0, "
      "'OP1', 'R1', 'V1', 'D1', '', 0, 1, 'counter gap', 1, 999)";
  char sql[1024];
  // Under version 3 the clauses refuse a swipe whose card, batch and posting do not exist.
  std::snprintf(sql, sizeof sql, insert, 5, 42);
  EXPECT_EQ(s->exec(sql).code(), Errc::kDuplicate);
  ASSERT_TRUE(s->exec("PRAGMA foreign_keys=OFF").is_ok());
  ASSERT_TRUE(s->exec(sql).is_ok());
  ASSERT_TRUE(s->exec("PRAGMA foreign_keys=ON").is_ok());

  ASSERT_TRUE(s->migrate(all).is_ok());
  EXPECT_EQ(*s->schema_version(), all.back().version);
  {
    auto q = s->query(
        "SELECT card_counter, terminal_seq, suspicion, reconciled, posting_id, hex(tac) FROM "
        "swipes");
    auto row = q.step();
    ASSERT_TRUE(row.is_ok() && *row);
    EXPECT_EQ(q.column_int64(0), 5);
    EXPECT_EQ(q.column_int64(1), 42);
    EXPECT_EQ(q.column_text(2), "counter gap");
    EXPECT_EQ(q.column_int64(3), 1);
    EXPECT_EQ(q.column_int64(4), 999);
    EXPECT_EQ(q.column_text(5), "AABBCCDD");
  }
  // No parent lookups any more: a second swipe with the same missing parents goes in.
  std::snprintf(sql, sizeof sql, insert, 6, 43);
  EXPECT_TRUE(s->exec(sql).is_ok());
  // Both replay keys still hold.
  std::snprintf(sql, sizeof sql, insert, 6, 44);
  EXPECT_EQ(s->exec(sql).code(), Errc::kDuplicate);
  std::snprintf(sql, sizeof sql, insert, 7, 43);
  EXPECT_EQ(s->exec(sql).code(), Errc::kDuplicate);
  auto q = s->query(
      "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'swipes' AND "
      "name IN ('swipes_by_date', 'swipes_by_batch')");
  ASSERT_TRUE(*q.step());
  EXPECT_EQ(q.column_int64(0), 2);
}

TEST(Store, UnopenablePathIsAnIoStatus) {
  auto s = Store::open("/nonexistent-dir/for/sure/x.db");
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.status().code(), Errc::kIo);
}

}  // namespace
}  // namespace citycard::backend
