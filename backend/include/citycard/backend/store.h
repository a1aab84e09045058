// The backend's storage: a thin RAII wrapper over one SQLite database.
//
// Contract:
// - Store::open opens (or creates) a database file, or ":memory:" for tests, in WAL mode with
//   foreign keys on. With synchronous FULL (the default) a COMMIT that returned ok is on disk:
//   an acknowledged upload survives kill -9 and power loss.
// - Errors are Status values carrying SQLite's message and the statement that failed; a
//   failed statement never leaves a half-applied transaction behind if the caller uses
//   Transaction (the guard rolls back unless commit() succeeded).
// - Transactions nest: the outermost is BEGIN IMMEDIATE ... COMMIT, inner ones are SAVEPOINTs,
//   so a component can open its own Transaction and still commit together with the caller's
//   (a batch's postings commit with the batch). Guards must end in reverse order of creation.
// - Prepared statements are cached by SQL text (up to StoreOptions::statement_cache_max);
//   a Query borrows one and resets it when destroyed.
// - The schema is a list of Migrations applied in order and recorded in `schema_version`; a
//   database from a newer build (a version this build does not know) is refused.
//
// Threads: a Store is used by one thread at a time (the Backend's caller), so the connection is
// opened without SQLite's own mutex (SQLITE_OPEN_NOMUTEX). Queries and Transactions must not
// outlive their Store. With checkpoint_in_background the Store owns one more thread, with its
// own connection, that only checkpoints the WAL; background_checkpoints() and
// wait_for_background_checkpoints() may be called from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace citycard::backend {

struct StoreOptions {
  // FULL fsyncs the WAL on every commit (durable against power loss); NORMAL only at
  // checkpoints (durable against kill -9, not power loss), for load tests that want speed.
  bool synchronous_full = true;
  // How long a writer waits for another connection's lock before kUnavailable.
  int busy_timeout_ms = 5'000;
  // Our SQL is a fixed set of literals; more distinct statements than this means SQL is being
  // built at run time, and the extra ones are prepared per use instead of cached.
  std::size_t statement_cache_max = 256;
  // SQLite's page cache (PRAGMA cache_size), in KiB. SQLite's default of 2 MiB makes a busy
  // ingest read back the index pages it has just written; pages are allocated only as used.
  std::int64_t cache_size_kib = 64 * 1024;
  // WAL pages after which a commit checkpoints (PRAGMA wal_autocheckpoint). Larger means fewer
  // checkpoints, each writing a hot page once for several commits, and a longer WAL file.
  int wal_autocheckpoint_pages = 4'096;
  // OFF hands every write to the OS without any fsync, even at checkpoints: a commit survives
  // the process's death (kill -9, or a simulated crash that closes the Store) but not the
  // machine's. Overrides synchronous_full. For virtual-time simulations only.
  bool synchronous_off = false;
  // PRAGMA locking_mode=EXCLUSIVE: the connection takes the file lock once and keeps it, and
  // WAL's index lives in heap memory instead of the -shm file. No other connection (not even
  // the sqlite3 shell) can open the database while this Store is open.
  bool exclusive_locking = false;
  // Checkpoints on a thread of their own, with a second connection, instead of in the commit
  // that crosses wal_autocheckpoint_pages: the writer's commits then never wait for the
  // checkpoint's writes to the database file and its fsync (a latency spike for whichever
  // acknowledgement happened to trigger it). A PASSIVE checkpoint is started each time a
  // commit leaves at least wal_autocheckpoint_pages in the WAL. Durability is unchanged (a
  // commit is durable once in the WAL). Ignored for ":memory:" and with exclusive_locking.
  // `citycard backend` and `citycard load`'s embedded backend turn it on.
  bool checkpoint_in_background = false;

  // What a virtual-time simulation that owns its database file wants (the scenarios' World):
  // synchronous OFF, exclusive locking, a 256 MiB cache and a 64 MiB WAL between checkpoints.
  // A "crash" there closes and reopens the Store, so every committed batch is still there; a
  // real `citycard backend` keeps the defaults (synchronous FULL).
  static StoreOptions simulation();
};

// One step of the schema: `sql` (one or more statements) takes the database to `version`.
struct Migration {
  int version;
  const char* sql;
};

class Store;

// A prepared statement in use: bind parameters (1-based), step through rows, read columns
// (0-based). Errors in bind() are remembered and returned by the next step()/run().
class Query {
 public:
  Query(Query&& other) noexcept;
  Query& operator=(Query&&) = delete;
  Query(const Query&) = delete;
  ~Query();  // resets the statement and clears its bindings (or finalizes an uncached one)

  Query& bind(int index, std::int64_t value);
  Query& bind(int index, std::string_view text);
  Query& bind_blob(int index, ByteView blob);
  Query& bind_null(int index);
  // Without copying: SQLite reads `text` / `blob` where it is, so it must stay alive and
  // unchanged until this Query is destroyed (which clears the bindings). For hot paths that
  // bind fields of objects outliving the statement (ingest's swipe insert).
  Query& bind_view(int index, std::string_view text);
  Query& bind_blob_view(int index, ByteView blob);

  // true: a row is ready to read; false: the statement is done.
  Result<bool> step();
  // Steps to the end, for statements that return no rows (INSERT, UPDATE...).
  Status run();

  bool column_is_null(int column) const;
  std::int64_t column_int64(int column) const;
  std::string column_text(int column) const;
  Bytes column_blob(int column) const;
  // The column's bytes where SQLite holds them: valid until the next step() or the Query's end.
  ByteView column_blob_view(int column) const;

 private:
  friend class Store;
  struct Slot;
  Query(Store* store, Slot* slot, Status status);
  Status fail(int rc, const char* what);

  Store* store_;
  Slot* slot_;  // null when preparation failed (then status_ says why)
  Status status_;
};

class Store {
 public:
  // RAII transaction guard; see the contract above.
  class Transaction {
   public:
    Transaction(Transaction&& other) noexcept;
    Transaction& operator=(Transaction&&) = delete;
    Transaction(const Transaction&) = delete;
    ~Transaction();  // rolls back unless committed
    Status commit();
    void rollback();

   private:
    friend class Store;
    Transaction(Store* store, int depth) : store_(store), depth_(depth) {}
    Store* store_;  // null once finished or moved from
    int depth_;
  };

  static Result<std::unique_ptr<Store>> open(const std::string& path, StoreOptions options = {});
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Runs SQL text that returns no rows (may hold several statements); not cached.
  Status exec(std::string_view sql);
  // A cached prepared statement for `sql`. Preparation errors surface at step()/run().
  Query query(std::string_view sql);
  Result<Transaction> begin();
  bool in_transaction() const { return depth_ > 0; }

  // Applies every migration whose version is above the recorded one, each in its own
  // transaction, in order. Versions must be strictly increasing.
  Status migrate(std::span<const Migration> migrations);
  Result<int> schema_version();

  std::int64_t last_insert_rowid() const;
  // Rows the last INSERT, UPDATE or DELETE changed (0: an upsert that did nothing).
  std::int64_t changes() const;
  const std::string& path() const { return path_; }
  std::size_t cached_statements() const { return cache_.size(); }

  // With checkpoint_in_background: checkpoints the background thread has completed, and a
  // wait (on a condition variable) until at least `count` have, or `timeout`; false on timeout
  // or when there is no background checkpointer.
  std::uint64_t background_checkpoints() const;
  bool wait_for_background_checkpoints(std::uint64_t count,
                                       std::chrono::milliseconds timeout) const;

 private:
  friend class Query;
  class Checkpointer;
  Store(sqlite3* db, std::string path, StoreOptions options);
  Status error(int rc, std::string_view what) const;
  void end_transaction(int depth, bool commit, Status* result);
  Status start_checkpointer();

  sqlite3* db_;
  std::string path_;
  StoreOptions options_;
  // Looked up by string_view without building a string (the SQL of a hot insert is long).
  struct SqlHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view sql) const {
      return std::hash<std::string_view>()(sql);
    }
  };
  std::unordered_map<std::string, std::unique_ptr<Query::Slot>, SqlHash, std::equal_to<>> cache_;
  int depth_ = 0;
  std::unique_ptr<Checkpointer> checkpointer_;  // stopped before db_ closes
};

}  // namespace citycard::backend
