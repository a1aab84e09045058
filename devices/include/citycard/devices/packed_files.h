// The record files of a simulated CPU card (0x18 log, 0x1E travel, 0x1A metro) kept packed,
// so that a city of 20 million cards fits in memory (issue 3: at most 256 bytes per card).
//
// A real card stores 10 x 23 + 10 x 48 + 128 = 838 bytes of records. Most of those bytes are
// either derivable from the card's own state or repeat across the city:
// - a log record's counter follows from the card's counters and the newer records (every
//   DEBIT and CREDIT writes one record and increments one counter), its overdraft field is
//   the card's overdraft limit;
// - terminal ids, and the static part of a travel or metro record (terminal, station, city,
//   institution, line, padding), repeat: they are interned in a shared InternTable and the
//   card keeps a small id;
// - a date-time (7 BCD bytes) is a 32-bit count of seconds since 2000;
// - a travel record written by a composite purchase normally repeats the DEBIT's date-time
//   and amount: a flag says so.
// Whatever does not fit that form (a date-time that is not a valid BCD date, a counter or
// overdraft field the card would not have written, an amount past 32 bits in a varint, an
// intern table that is full) is kept verbatim: the answer to READ RECORD is always the exact
// bytes that were written. A property test compares the packed files with plain byte rings
// over random histories (packed_files_test.cpp).
//
// Layout: one heap block, exactly as long as its content: its length (2 bytes), entry count, varint
// metro count, the metro records (id, flags, packed or 128 raw bytes), then one entry per
// transaction, newest first: flags, the log record (packed or 23 raw bytes), and the travel
// record the same DEBIT wrote, if any (packed or 48 raw bytes). The newest `log_records`
// entries are the 0x18 log; older entries are kept only while they hold one of the newest
// `travel_records` travel records. Each entry is self-contained, so writing a transaction
// copies the kept entries behind the new one and decodes nothing.
//
// Thread safety: an InternTable may be used from any thread (interning takes a lock, with a
// per-thread cache in front; reading an id takes none). PackedCardFiles: one thread at a time.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "citycard/protocol/bytes.h"

namespace citycard::devices {

// Append-only table of byte strings (up to 255 bytes each), each given a dense id on first
// sight. Entries are never removed: a city's terminals and stations are a bounded set.
class InternTable {
 public:
  static constexpr std::uint32_t kChunkEntries = 4096;
  static constexpr std::uint32_t kMaxChunks = 4096;  // 16.7 M entries
  static constexpr std::uint32_t kFull = UINT32_MAX;

  InternTable();
  ~InternTable();
  InternTable(const InternTable&) = delete;
  InternTable& operator=(const InternTable&) = delete;

  // The process-wide table the simulated cards use.
  static InternTable& shared();

  // The id of `bytes`, added if new; kFull if the table is full (the caller keeps the bytes
  // itself then).
  std::uint32_t intern(ByteView bytes);
  // The bytes of an id intern() returned.
  ByteView get(std::uint32_t id) const;
  std::size_t size() const { return size_.load(std::memory_order_acquire); }
  // Memory the table holds (entries, index, hash map), for the benchmarks.
  std::size_t bytes() const;

 private:
  struct Slot {
    const std::uint8_t* data;
    std::uint8_t len;
  };
  std::uint32_t intern_locked(std::string_view key);

  mutable std::mutex mu_;
  std::unordered_map<std::string_view, std::uint32_t> index_;
  std::unique_ptr<std::atomic<Slot*>[]> chunks_;
  std::atomic<std::size_t> size_{0};
  std::size_t arena_bytes_ = 0;
  std::unique_ptr<std::uint8_t[]> arena_;  // current arena block
  std::size_t arena_used_ = 0;
  std::size_t arena_size_ = 0;
  std::vector<std::unique_ptr<std::uint8_t[]>> old_arenas_;
  std::uint64_t id_;  // distinguishes tables in the per-thread cache
};

class PackedCardFiles {
 public:
  static constexpr std::size_t kLogBytes = 23;
  static constexpr std::size_t kTravelBytes = 48;
  static constexpr std::size_t kMetroBytes = 128;

  // What the card knows that the packed records leave out.
  struct Context {
    std::uint8_t log_records = 10;
    std::uint8_t travel_records = 10;
    std::uint16_t offline_counter = 0;  // the card's counters now (after the newest record)
    std::uint16_t online_counter = 0;
    std::uint32_t overdraft_limit_fen = 0;
  };
  // One transaction's writes: the 0x18 record (always), the 0x1E record and the 0x1A record
  // (metro_id 1..n) when the DEBIT wrote them.
  struct Txn {
    const std::uint8_t* log = nullptr;     // 23 bytes
    bool online = false;                   // a CREDIT (online counter), else a DEBIT
    const std::uint8_t* travel = nullptr;  // 48 bytes or null
    std::uint8_t metro_id = 0;             // 0: none
    const std::uint8_t* metro = nullptr;   // 128 bytes
  };

  // Ids refer to InternTable::shared().
  PackedCardFiles() = default;

  // Adds a transaction as the newest; `after` holds the counters after it.
  void push(const Context& after, const Txn& txn);

  std::uint8_t log_count(const Context& c) const;
  std::uint8_t travel_count(const Context& c) const;
  // Record `index` (0 = newest) as the card answers READ RECORD; false if there is none.
  bool read_log(const Context& c, std::size_t index, std::uint8_t* out23) const;
  bool read_travel(const Context& c, std::size_t index, std::uint8_t* out48) const;
  // A metro record by id; zeros if never written.
  void read_metro(std::uint8_t id, std::uint8_t* out128) const;

  // Heap held (the block's length, which its first two bytes hold).
  std::size_t heap_bytes() const;

 private:
  std::unique_ptr<std::uint8_t[]> data_;  // null: no record written yet
};

// Seconds since 2000 for a valid BCD date-time that converts back to the same 7 bytes,
// kZeroDateTime for 7 zero bytes; nullopt otherwise. For the packed records, and tests.
inline constexpr std::uint32_t kZeroDateTime = UINT32_MAX;
bool pack_datetime(const std::uint8_t* dt7, std::uint32_t* packed);
void unpack_datetime(std::uint32_t packed, std::uint8_t* dt7);

}  // namespace citycard::devices
