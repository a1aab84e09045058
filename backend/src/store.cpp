#include "citycard/backend/store.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

#include "citycard/protocol/check.h"

namespace citycard::backend {

// A prepared statement and whether a live Query holds it. An uncached slot (cache full, or
// the cached one already in use by an outer Query on the same SQL) is owned by its Query.
struct Query::Slot {
  sqlite3_stmt* stmt = nullptr;
  bool in_use = false;
  bool cached = true;
  ~Slot() { sqlite3_finalize(stmt); }
};

namespace {

Errc errc_for(int rc) {
  switch (rc & 0xff) {  // primary result code; extended codes refine it
    case SQLITE_CONSTRAINT:
      return Errc::kDuplicate;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Errc::kUnavailable;
    case SQLITE_TOOBIG:
      return Errc::kTooLarge;
    case SQLITE_NOMEM:
    case SQLITE_MISUSE:
    case SQLITE_ERROR:  // a bad statement: ours
    case SQLITE_RANGE:
      return Errc::kInternal;
    default:
      return Errc::kIo;  // IOERR, FULL, CORRUPT, CANTOPEN, READONLY, NOTADB...
  }
}

}  // namespace

// ---- Query ---------------------------------------------------------------------------------

Query::Query(Store* store, Slot* slot, Status status)
    : store_(store), slot_(slot), status_(std::move(status)) {}

Query::Query(Query&& other) noexcept
    : store_(other.store_), slot_(other.slot_), status_(std::move(other.status_)) {
  other.slot_ = nullptr;
}

Query::~Query() {
  if (slot_ == nullptr) return;
  if (slot_->cached) {
    sqlite3_reset(slot_->stmt);
    sqlite3_clear_bindings(slot_->stmt);
    slot_->in_use = false;
  } else {
    delete slot_;
  }
}

Status Query::fail(int rc, const char* what) {
  if (status_.is_ok()) {
    status_ = store_->error(rc, std::string(what) + " in \"" + sqlite3_sql(slot_->stmt) + "\"");
  }
  return status_;
}

Query& Query::bind(int index, std::int64_t value) {
  if (slot_ == nullptr) return *this;
  const int rc = sqlite3_bind_int64(slot_->stmt, index, value);
  if (rc != SQLITE_OK) (void)fail(rc, "bind");
  return *this;
}

Query& Query::bind(int index, std::string_view text) {
  if (slot_ == nullptr) return *this;
  const int rc = sqlite3_bind_text64(slot_->stmt, index, text.data(), text.size(), SQLITE_TRANSIENT,
                                     SQLITE_UTF8);
  if (rc != SQLITE_OK) (void)fail(rc, "bind");
  return *this;
}

Query& Query::bind_blob(int index, ByteView blob) {
  if (slot_ == nullptr) return *this;
  // A zero-length blob must still be a blob, not NULL: SQLite binds NULL for a null pointer.
  static const std::uint8_t kEmpty = 0;
  const void* data = blob.empty() ? &kEmpty : blob.data();
  const int rc = sqlite3_bind_blob64(slot_->stmt, index, data, blob.size(), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) (void)fail(rc, "bind");
  return *this;
}

Query& Query::bind_view(int index, std::string_view text) {
  if (slot_ == nullptr) return *this;
  const int rc =
      sqlite3_bind_text64(slot_->stmt, index, text.data(), text.size(), SQLITE_STATIC, SQLITE_UTF8);
  if (rc != SQLITE_OK) (void)fail(rc, "bind");
  return *this;
}

Query& Query::bind_blob_view(int index, ByteView blob) {
  if (slot_ == nullptr) return *this;
  static const std::uint8_t kEmpty = 0;  // a zero-length blob is a blob, not NULL
  const void* data = blob.empty() ? &kEmpty : blob.data();
  const int rc = sqlite3_bind_blob64(slot_->stmt, index, data, blob.size(), SQLITE_STATIC);
  if (rc != SQLITE_OK) (void)fail(rc, "bind");
  return *this;
}

Query& Query::bind_null(int index) {
  if (slot_ == nullptr) return *this;
  const int rc = sqlite3_bind_null(slot_->stmt, index);
  if (rc != SQLITE_OK) (void)fail(rc, "bind");
  return *this;
}

Result<bool> Query::step() {
  if (!status_.is_ok()) return status_;
  const int rc = sqlite3_step(slot_->stmt);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return fail(rc, "step");
}

Status Query::run() {
  for (;;) {
    auto r = step();
    if (!r.is_ok()) return r.status();
    if (!*r) return Status::ok();
  }
}

ByteView Query::column_blob_view(int column) const {
  CITYCARD_CHECK(slot_ != nullptr, "column read of a query that failed to prepare");
  const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(slot_->stmt, column));
  const int n = sqlite3_column_bytes(slot_->stmt, column);
  return p == nullptr ? ByteView() : ByteView(p, static_cast<std::size_t>(n));
}

bool Query::column_is_null(int column) const {
  CITYCARD_CHECK(slot_ != nullptr, "column read of a query that failed to prepare");
  return sqlite3_column_type(slot_->stmt, column) == SQLITE_NULL;
}

std::int64_t Query::column_int64(int column) const {
  CITYCARD_CHECK(slot_ != nullptr, "column read of a query that failed to prepare");
  return sqlite3_column_int64(slot_->stmt, column);
}

std::string Query::column_text(int column) const {
  CITYCARD_CHECK(slot_ != nullptr, "column read of a query that failed to prepare");
  const auto* p = sqlite3_column_text(slot_->stmt, column);
  const int n = sqlite3_column_bytes(slot_->stmt, column);
  return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), n);
}

Bytes Query::column_blob(int column) const {
  CITYCARD_CHECK(slot_ != nullptr, "column read of a query that failed to prepare");
  const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(slot_->stmt, column));
  const int n = sqlite3_column_bytes(slot_->stmt, column);
  return p == nullptr ? Bytes() : Bytes(p, p + n);
}

// ---- the background checkpointer -----------------------------------------------------------

// Its own connection to the same file, and a thread that runs a PASSIVE checkpoint whenever the
// writer's WAL hook says the WAL has reached the threshold. PASSIVE never takes the writer's
// lock, so the writer's commits go on while it copies pages and fsyncs the database file.
class Store::Checkpointer {
 public:
  Checkpointer(sqlite3* db, int threshold_pages) : db_(db), threshold_(threshold_pages) {
    thread_ = std::thread([this] { run(); });
  }
  ~Checkpointer() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    sqlite3_close(db_);
  }

  // The writer's WAL hook: after each commit, with the pages now in the WAL.
  static int on_commit(void* self, sqlite3*, const char*, int wal_pages) {
    auto* c = static_cast<Checkpointer*>(self);
    if (wal_pages >= c->threshold_) {
      {
        std::lock_guard<std::mutex> lock(c->mu_);
        c->wanted_ = true;
      }
      c->cv_.notify_one();
    }
    return SQLITE_OK;
  }

  std::uint64_t done() const {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }
  bool wait_for(std::uint64_t count, std::chrono::milliseconds timeout) const {
    std::unique_lock<std::mutex> lock(mu_);
    return done_cv_.wait_for(lock, timeout, [&] { return done_ >= count; });
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return wanted_ || stop_; });
      if (stop_) return;
      wanted_ = false;
      lock.unlock();
      int log = 0, copied = 0;
      // BUSY (another checkpoint, a reader on an old snapshot) only means "not all of it this
      // time": the next commit over the threshold asks again.
      const int rc =
          sqlite3_wal_checkpoint_v2(db_, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
      lock.lock();
      if (rc == SQLITE_OK) ++done_;
      done_cv_.notify_all();
    }
  }

  sqlite3* db_;
  const int threshold_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  mutable std::condition_variable done_cv_;
  bool wanted_ = false;
  bool stop_ = false;
  std::uint64_t done_ = 0;
  std::thread thread_;
};

// ---- Store ---------------------------------------------------------------------------------

Store::Store(sqlite3* db, std::string path, StoreOptions options)
    : db_(db), path_(std::move(path)), options_(options) {}

Store::~Store() {
  CITYCARD_CHECK(depth_ == 0, "a Transaction outlived its Store");
  cache_.clear();  // statements must be finalized before the connection closes
  if (checkpointer_) {
    sqlite3_wal_hook(db_, nullptr, nullptr);
    checkpointer_.reset();  // its connection closes first: the last one to close tidies the WAL
  }
  sqlite3_close(db_);
}

Status Store::start_checkpointer() {
  sqlite3* db = nullptr;
  const int rc =
      sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = "cannot open database " + path_ + " for checkpoints: " + sqlite3_errstr(rc);
    sqlite3_close(db);
    return Status(Errc::kIo, std::move(msg));
  }
  sqlite3_busy_timeout(db, options_.busy_timeout_ms);
  // The checkpoint fsyncs the database file as the writer's synchronous setting asks.
  const std::string sync =
      std::string("PRAGMA synchronous=") + (options_.synchronous_off    ? "OFF"
                                            : options_.synchronous_full ? "FULL"
                                                                        : "NORMAL");
  if (sqlite3_exec(db, sync.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return Status(Errc::kIo, "cannot configure the checkpoint connection of " + path_);
  }
  checkpointer_ =
      std::make_unique<Checkpointer>(db, std::max(1, options_.wal_autocheckpoint_pages));
  // Replaces the automatic checkpoint (which is itself a WAL hook) on the writer's connection.
  sqlite3_wal_hook(db_, &Checkpointer::on_commit, checkpointer_.get());
  return Status::ok();
}

std::uint64_t Store::background_checkpoints() const {
  return checkpointer_ ? checkpointer_->done() : 0;
}

bool Store::wait_for_background_checkpoints(std::uint64_t count,
                                            std::chrono::milliseconds timeout) const {
  return checkpointer_ && checkpointer_->wait_for(count, timeout);
}

Status Store::error(int rc, std::string_view what) const {
  std::string msg(what);
  msg += ": ";
  msg += sqlite3_errstr(rc);
  const char* detail = sqlite3_errmsg(db_);
  if (detail != nullptr && std::string_view(detail) != sqlite3_errstr(rc)) {
    msg += " (";
    msg += detail;
    msg += ")";
  }
  return Status(errc_for(rc), std::move(msg));
}

StoreOptions StoreOptions::simulation() {
  StoreOptions o;
  o.synchronous_full = false;
  o.synchronous_off = true;
  o.exclusive_locking = true;
  o.cache_size_kib = 256 * 1024;
  o.wal_autocheckpoint_pages = 16'384;  // 64 MiB of 4 KiB pages
  return o;
}

Result<std::unique_ptr<Store>> Store::open(const std::string& path, StoreOptions options) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = "cannot open database " + path + ": " + sqlite3_errstr(rc);
    sqlite3_close(db);  // a handle is returned even on failure
    return Status(Errc::kIo, std::move(msg));
  }
  sqlite3_extended_result_codes(db, 1);
  std::unique_ptr<Store> store(new Store(db, path, options));
  sqlite3_busy_timeout(db, options.busy_timeout_ms);

  // WAL lets readers run beside the one writer and makes a commit a single append + fsync.
  // An in-memory database answers "memory", which is fine for tests.
  // Exclusive locking before the journal mode: WAL then keeps its index in heap memory.
  if (options.exclusive_locking) {
    if (Status s = store->exec("PRAGMA locking_mode=EXCLUSIVE"); !s.is_ok()) return s;
  }
  std::string mode;
  {
    auto q = store->query("PRAGMA journal_mode=WAL");
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (*row) mode = q.column_text(0);
  }
  if (mode != "wal" && mode != "memory") {
    return Status(Errc::kIo, "database " + path + " refused WAL mode (journal mode " + mode + ")");
  }
  const std::string pragmas =
      std::string("PRAGMA synchronous=") +
      (options.synchronous_off    ? "OFF"
       : options.synchronous_full ? "FULL"
                                  : "NORMAL") +
      "; PRAGMA foreign_keys=ON; PRAGMA cache_size=" + std::to_string(-options.cache_size_kib) +
      "; PRAGMA wal_autocheckpoint=" + std::to_string(options.wal_autocheckpoint_pages) +
      // Savepoints (each batch inside a group commit, each ingest pass) keep the pages they
      // change in a sub-journal: in memory, not a temporary file written through the kernel
      // for every page. It holds one savepoint's pages and is emptied when it is released.
      "; PRAGMA temp_store=MEMORY;";
  if (Status s = store->exec(pragmas); !s.is_ok()) return s;
  if (options.checkpoint_in_background && mode == "wal" && !options.exclusive_locking) {
    if (Status s = store->start_checkpointer(); !s.is_ok()) return s;
  }
  return store;
}

Status Store::exec(std::string_view sql) {
  const std::string text(sql);
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status::ok();
  std::string msg = "exec \"" + text.substr(0, 200) + "\": " + sqlite3_errstr(rc);
  if (err != nullptr) {
    msg += std::string(" (") + err + ")";
    sqlite3_free(err);
  }
  return Status(errc_for(rc), std::move(msg));
}

Query Store::query(std::string_view sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end() && !it->second->in_use) {
    it->second->in_use = true;
    return Query(this, it->second.get(), Status::ok());
  }
  auto slot = std::make_unique<Query::Slot>();
  const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &slot->stmt, nullptr);
  if (rc != SQLITE_OK) {
    return Query(this, nullptr, error(rc, "prepare \"" + std::string(sql) + "\""));
  }
  slot->in_use = true;
  if (it == cache_.end() && cache_.size() < options_.statement_cache_max) {
    Query::Slot* raw = slot.get();
    cache_.emplace(std::string(sql), std::move(slot));
    return Query(this, raw, Status::ok());
  }
  slot->cached = false;  // the Query owns it
  return Query(this, slot.release(), Status::ok());
}

Result<Store::Transaction> Store::begin() {
  const int depth = depth_ + 1;
  const std::string sql =
      depth == 1 ? std::string("BEGIN IMMEDIATE") : "SAVEPOINT sp" + std::to_string(depth);
  if (Status s = exec(sql); !s.is_ok()) return s;
  depth_ = depth;
  return Transaction(this, depth);
}

void Store::end_transaction(int depth, bool commit, Status* result) {
  CITYCARD_CHECK(depth == depth_, "transactions must end in reverse order of creation");
  const std::string sp = "sp" + std::to_string(depth);
  Status s;
  if (commit) {
    s = exec(depth == 1 ? std::string("COMMIT") : "RELEASE " + sp);
    if (s.is_ok()) {
      depth_ = depth - 1;
      if (result != nullptr) *result = s;
      return;
    }
  }
  // Rolling back: errors here leave nothing better to do; SQLite has already rolled back the
  // whole transaction if it could not keep it.
  if (depth == 1) {
    if (sqlite3_get_autocommit(db_) == 0) (void)exec("ROLLBACK");
  } else {
    (void)exec("ROLLBACK TO " + sp);
    (void)exec("RELEASE " + sp);
  }
  depth_ = depth - 1;
  if (result != nullptr) *result = s;
}

Store::Transaction::Transaction(Transaction&& other) noexcept
    : store_(other.store_), depth_(other.depth_) {
  other.store_ = nullptr;
}

Store::Transaction::~Transaction() {
  rollback();
}

Status Store::Transaction::commit() {
  CITYCARD_CHECK(store_ != nullptr, "commit of a finished transaction");
  Status result;
  store_->end_transaction(depth_, true, &result);
  store_ = nullptr;
  return result;
}

void Store::Transaction::rollback() {
  if (store_ == nullptr) return;
  store_->end_transaction(depth_, false, nullptr);
  store_ = nullptr;
}

Result<int> Store::schema_version() {
  auto q = query("SELECT version FROM schema_version");
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return Status(Errc::kInternal, "schema_version has no row");
  return static_cast<int>(q.column_int64(0));
}

Status Store::migrate(std::span<const Migration> migrations) {
  CITYCARD_CHECK(depth_ == 0, "migrate inside a transaction");
  {
    auto txn = begin();
    if (!txn.is_ok()) return txn.status();
    if (Status s = exec("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL);"
                        "INSERT INTO schema_version(version) SELECT 0 WHERE NOT EXISTS "
                        "(SELECT 1 FROM schema_version);");
        !s.is_ok()) {
      return s;
    }
    if (Status s = txn->commit(); !s.is_ok()) return s;
  }
  auto current = schema_version();
  if (!current.is_ok()) return current.status();
  int known = 0;
  for (const Migration& m : migrations) {
    CITYCARD_CHECK(m.version > known, "migrations must have increasing versions");
    known = m.version;
  }
  if (*current > known) {
    return Status(Errc::kInvalidArgument,
                  path_ + " has schema version " + std::to_string(*current) +
                      ", newer than this build knows (" + std::to_string(known) + ")");
  }
  for (const Migration& m : migrations) {
    if (m.version <= *current) continue;
    auto txn = begin();
    if (!txn.is_ok()) return txn.status();
    if (Status s = exec(m.sql); !s.is_ok()) {
      return Status(s.code(), "migration to version " + std::to_string(m.version) +
                                  " failed: " + s.message());
    }
    if (Status s =
            query("UPDATE schema_version SET version = ?1").bind(1, std::int64_t{m.version}).run();
        !s.is_ok()) {
      return s;
    }
    if (Status s = txn->commit(); !s.is_ok()) return s;
  }
  return Status::ok();
}

std::int64_t Store::last_insert_rowid() const {
  return sqlite3_last_insert_rowid(db_);
}

std::int64_t Store::changes() const {
  return sqlite3_changes64(db_);
}

}  // namespace citycard::backend
