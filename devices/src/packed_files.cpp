#include "citycard/devices/packed_files.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>

#include "citycard/protocol/check.h"
#include "citycard/protocol/purse.h"

namespace citycard::devices {

namespace {

std::atomic<std::uint64_t> g_next_table_id{1};

// ---- per-thread cache in front of InternTable::intern -------------------------------------
struct CacheEntry {
  std::uint64_t table = 0;
  std::size_t hash = 0;
  std::uint32_t id = 0;
};
constexpr std::size_t kCacheEntries = 256;
thread_local std::array<CacheEntry, kCacheEntries> t_cache{};

// ---- varints (LEB128) ---------------------------------------------------------------------
void put_varint(std::vector<std::uint8_t>& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(v));
}
std::uint64_t get_varint(const std::uint8_t*& p) {
  std::uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    const std::uint8_t b = *p++;
    v |= std::uint64_t{b & 0x7Fu} << shift;
    if ((b & 0x80) == 0) return v;
  }
}
void skip_varint(const std::uint8_t*& p) {
  while ((*p++ & 0x80) != 0) {
  }
}
void put_u32le(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
std::uint32_t get_u32le(const std::uint8_t*& p) {
  const std::uint32_t v = std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 |
                          std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 24;
  p += 4;
  return v;
}
std::uint32_t be32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}
void put_be32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}

// ---- entry format ---------------------------------------------------------------------------
// flags: bits 0-1 log form (0: packed 06, 1: packed 09, 2: packed 02, 3: raw 23 bytes),
// bit 2 travel record present, bit 3 travel raw (48 bytes), bit 4 travel amount explicit,
// bit 5 travel date-time explicit, bit 6 the transaction used the online counter, bit 7 the
// log's terminal id is the packed travel record's (its terminal field is 00 00 + the id), so
// the log part leaves it out and the travel part follows at once.
constexpr std::uint8_t kLogRaw = 3;
constexpr std::uint8_t kHasTravel = 1u << 2;
constexpr std::uint8_t kTravelRaw = 1u << 3;
constexpr std::uint8_t kTravelAmount = 1u << 4;
constexpr std::uint8_t kTravelDateTime = 1u << 5;
constexpr std::uint8_t kOnline = 1u << 6;
constexpr std::uint8_t kLogTerminalInTravel = 1u << 7;
constexpr std::uint8_t kTypes[3] = {protocol::txn::kPurchase, protocol::txn::kCappPurchase,
                                    protocol::txn::kLoadEp};

// Travel record fields (protocol/capp.h): amount 17..20, balance 21..24, date-time 25..31.
constexpr std::size_t kTravelAmountAt = 17, kTravelBalanceAt = 21, kTravelDateTimeAt = 25;
// Metro record fields: entry date-time 8..14, exit date-time 17..23, fare 24..27.
constexpr std::size_t kMetroEntryAt = 8, kMetroExitAt = 17, kMetroFareAt = 24;

struct Cursor {
  const std::uint8_t* begin;  // first entry
  std::size_t entries;
  const std::uint8_t* metros;
  std::size_t metro_count;
};

// The decoded header of a block.
Cursor open_block(const std::uint8_t* data) {
  const std::uint8_t* p = data;
  skip_varint(p);  // length
  Cursor c{};
  c.entries = static_cast<std::size_t>(get_varint(p));
  c.metro_count = static_cast<std::size_t>(get_varint(p));
  c.metros = p;
  for (std::size_t i = 0; i < c.metro_count; ++i) {
    ++p;  // id
    const std::uint8_t flags = *p++;
    if (flags != 0) {
      p += PackedCardFiles::kMetroBytes;
    } else {
      skip_varint(p);
      p += 8;
      skip_varint(p);
    }
  }
  c.begin = p;
  return c;
}

// Skips one entry; returns its flags.
std::uint8_t skip_entry(const std::uint8_t*& p) {
  const std::uint8_t flags = *p++;
  if ((flags & 3) == kLogRaw) {
    p += PackedCardFiles::kLogBytes;
  } else {
    p += 4;
    skip_varint(p);
    if ((flags & kLogTerminalInTravel) == 0) skip_varint(p);
  }
  if (flags & kHasTravel) {
    if (flags & kTravelRaw) {
      p += PackedCardFiles::kTravelBytes;
    } else {
      skip_varint(p);
      if (flags & kTravelAmount) skip_varint(p);
      if (flags & kTravelDateTime) p += 4;
      skip_varint(p);
    }
  }
  return flags;
}

bool entry_online(std::uint8_t flags) {
  return (flags & 3) == kLogRaw ? (flags & kOnline) != 0 : (flags & 3) == 2;
}

// The log part of an entry, decoded.
struct LogPart {
  std::uint32_t datetime = 0;
  std::uint32_t amount = 0;
  std::uint32_t terminal = 0;
};

}  // namespace

// ---- date-time ------------------------------------------------------------------------------

bool pack_datetime(const std::uint8_t* dt7, std::uint32_t* packed) {
  if (std::all_of(dt7, dt7 + 7, [](std::uint8_t b) { return b == 0; })) {
    *packed = kZeroDateTime;
    return true;
  }
  int v[7];
  for (int i = 0; i < 7; ++i) {
    if ((dt7[i] >> 4) > 9 || (dt7[i] & 0x0F) > 9) return false;
    v[i] = (dt7[i] >> 4) * 10 + (dt7[i] & 0x0F);
  }
  // A calendar date-time from 2000 on: exactly the ones that convert back to the same bytes.
  const int year = v[0] * 100 + v[1], month = v[2], day = v[3];
  static constexpr int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (year < 2000 || month < 1 || month > 12 || day < 1 ||
      day > kDays[month - 1] + (month == 2 && leap ? 1 : 0) || v[4] > 23 || v[5] > 59 ||
      v[6] > 59) {
    return false;
  }
  protocol::DateTime7 dt;
  std::memcpy(dt.data(), dt7, 7);
  const std::int64_t s = protocol::epoch2000_from_datetime(dt);
  if (s < 0 || s >= static_cast<std::int64_t>(kZeroDateTime)) return false;
  *packed = static_cast<std::uint32_t>(s);
  return true;
}

void unpack_datetime(std::uint32_t packed, std::uint8_t* dt7) {
  if (packed == kZeroDateTime) {
    std::memset(dt7, 0, 7);
    return;
  }
  const protocol::DateTime7 dt = protocol::datetime_from_epoch2000(packed);
  std::memcpy(dt7, dt.data(), 7);
}

// ---- InternTable ----------------------------------------------------------------------------

InternTable::InternTable()
    : chunks_(std::make_unique<std::atomic<Slot*>[]>(kMaxChunks)),
      id_(g_next_table_id.fetch_add(1)) {
  for (std::uint32_t i = 0; i < kMaxChunks; ++i) chunks_[i].store(nullptr);
}

InternTable::~InternTable() {
  for (std::uint32_t i = 0; i < kMaxChunks; ++i) delete[] chunks_[i].load();
}

InternTable& InternTable::shared() {
  static InternTable table;
  return table;
}

std::uint32_t InternTable::intern(ByteView bytes) {
  CITYCARD_CHECK(bytes.size() <= 255, "an interned string is at most 255 bytes");
  const std::string_view key(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const std::size_t hash = std::hash<std::string_view>{}(key);
  CacheEntry& e = t_cache[(hash ^ (hash >> 17) ^ id_) % kCacheEntries];
  if (e.table == id_ && e.hash == hash) {
    const ByteView have = get(e.id);
    if (have.size() == bytes.size() && std::equal(have.begin(), have.end(), bytes.begin())) {
      return e.id;
    }
  }
  std::uint32_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = intern_locked(key);
  }
  if (id != kFull) e = CacheEntry{id_, hash, id};
  return id;
}

std::uint32_t InternTable::intern_locked(std::string_view key) {
  if (auto it = index_.find(key); it != index_.end()) return it->second;
  const std::size_t n = size_.load(std::memory_order_relaxed);
  if (n >= std::size_t{kChunkEntries} * kMaxChunks) return kFull;
  if (arena_used_ + key.size() > arena_size_) {
    if (arena_) old_arenas_.push_back(std::move(arena_));
    arena_size_ = std::max<std::size_t>(64 * 1024, key.size());
    arena_ = std::make_unique<std::uint8_t[]>(arena_size_);
    arena_used_ = 0;
    arena_bytes_ += arena_size_;
  }
  std::uint8_t* at = arena_.get() + arena_used_;
  std::memcpy(at, key.data(), key.size());
  arena_used_ += key.size();
  const auto id = static_cast<std::uint32_t>(n);
  std::atomic<Slot*>& chunk = chunks_[id / kChunkEntries];
  Slot* slots = chunk.load(std::memory_order_relaxed);
  if (slots == nullptr) {
    slots = new Slot[kChunkEntries];
    chunk.store(slots, std::memory_order_release);
  }
  slots[id % kChunkEntries] = Slot{at, static_cast<std::uint8_t>(key.size())};
  index_.emplace(std::string_view(reinterpret_cast<const char*>(at), key.size()), id);
  size_.store(n + 1, std::memory_order_release);
  return id;
}

ByteView InternTable::get(std::uint32_t id) const {
  const Slot* slots = chunks_[id / kChunkEntries].load(std::memory_order_acquire);
  const Slot& s = slots[id % kChunkEntries];
  return ByteView(s.data, s.len);
}

std::size_t InternTable::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  const std::size_t chunks =
      (size_.load() + kChunkEntries - 1) / kChunkEntries * kChunkEntries * sizeof(Slot);
  // An unordered_map node: the key view, the id, the next pointer, the cached hash; plus the
  // bucket array.
  const std::size_t map = index_.size() * (sizeof(std::string_view) + 8 + 2 * sizeof(void*)) +
                          index_.bucket_count() * sizeof(void*);
  return arena_bytes_ + chunks + map + kMaxChunks * sizeof(std::atomic<Slot*>);
}

// ---- PackedCardFiles --------------------------------------------------------------------------

std::size_t PackedCardFiles::heap_bytes() const {
  if (!data_) return 0;
  const std::uint8_t* p = data_.get();
  return static_cast<std::size_t>(get_varint(p));
}

namespace {

// Appends one entry for `txn` in packed form where it can, verbatim where it cannot.
void encode_entry(std::vector<std::uint8_t>& out, const PackedCardFiles::Context& after,
                  const PackedCardFiles::Txn& txn) {
  InternTable& table = InternTable::shared();
  const std::uint8_t* log = txn.log;
  const std::uint8_t* t = txn.travel;
  const std::size_t flags_at = out.size();
  out.push_back(0);
  std::uint8_t flags = txn.online ? kOnline : 0;

  // The travel record: its static part interned, the date-time packed.
  std::uint32_t travel_id = InternTable::kFull;
  std::uint32_t tdt = 0;
  if (t != nullptr) {
    std::array<std::uint8_t, PackedCardFiles::kTravelBytes> key;
    std::memcpy(key.data(), t, key.size());
    std::memset(key.data() + kTravelAmountAt, 0, kTravelDateTimeAt + 7 - kTravelAmountAt);
    if (pack_datetime(t + kTravelDateTimeAt, &tdt)) {
      travel_id = table.intern(ByteView(key.data(), key.size()));
    }
  }
  const bool travel_packed = travel_id != InternTable::kFull;

  // The log record: packed when the card could rebuild it exactly.
  int kind = -1;
  for (int k = 0; k < 3; ++k) {
    if (log[9] == kTypes[k]) kind = k;
  }
  const std::uint16_t counter =
      static_cast<std::uint16_t>((txn.online ? after.online_counter : after.offline_counter) - 1);
  const std::uint32_t overdraft = after.overdraft_limit_fen & 0xFFFFFF;
  // The travel record's terminal field is 00 00 + the log's terminal id: stored once.
  const bool terminal_in_travel =
      travel_packed && t[1] == 0 && t[2] == 0 && std::memcmp(t + 3, log + 10, 6) == 0;
  std::uint32_t dt = 0;
  std::uint32_t terminal = 0;
  const bool packable = kind >= 0 && (kind == 2) == txn.online && log[0] == (counter >> 8) &&
                        log[1] == (counter & 0xFF) && log[2] == (overdraft >> 16) &&
                        log[3] == ((overdraft >> 8) & 0xFF) && log[4] == (overdraft & 0xFF) &&
                        pack_datetime(log + 16, &dt) &&
                        (terminal_in_travel ||
                         (terminal = table.intern(ByteView(log + 10, 6))) != InternTable::kFull);
  const std::uint32_t amount = be32(log + 5);
  if (packable) {
    flags = static_cast<std::uint8_t>(flags | kind);
    put_u32le(out, dt);
    put_varint(out, amount);
    if (terminal_in_travel) {
      flags |= kLogTerminalInTravel;
    } else {
      put_varint(out, terminal);
    }
  } else {
    flags = static_cast<std::uint8_t>(flags | kLogRaw);
    out.insert(out.end(), log, log + PackedCardFiles::kLogBytes);
  }

  if (t != nullptr) {
    flags |= kHasTravel;
    if (!travel_packed) {
      flags |= kTravelRaw;
      out.insert(out.end(), t, t + PackedCardFiles::kTravelBytes);
    } else {
      put_varint(out, travel_id);
      const std::uint32_t tamount = be32(t + kTravelAmountAt);
      if (!packable || tamount != amount) {
        flags |= kTravelAmount;
        put_varint(out, tamount);
      }
      if (!packable || tdt != dt) {
        flags |= kTravelDateTime;
        put_u32le(out, tdt);
      }
      put_varint(out, be32(t + kTravelBalanceAt));
    }
  }
  out[flags_at] = flags;
}

void encode_metro(std::vector<std::uint8_t>& out, std::uint8_t id, const std::uint8_t* m) {
  InternTable& table = InternTable::shared();
  out.push_back(id);
  std::array<std::uint8_t, PackedCardFiles::kMetroBytes> key;
  std::memcpy(key.data(), m, key.size());
  std::memset(key.data() + kMetroEntryAt, 0, 7);
  std::memset(key.data() + kMetroExitAt, 0, kMetroFareAt + 4 - kMetroExitAt);
  std::uint32_t entry = 0, exit = 0, sid = InternTable::kFull;
  if (pack_datetime(m + kMetroEntryAt, &entry) && pack_datetime(m + kMetroExitAt, &exit) &&
      (sid = table.intern(ByteView(key.data(), key.size()))) != InternTable::kFull) {
    out.push_back(0);
    put_varint(out, sid);
    put_u32le(out, entry);
    put_u32le(out, exit);
    put_varint(out, be32(m + kMetroFareAt));
  } else {
    out.push_back(1);
    out.insert(out.end(), m, m + PackedCardFiles::kMetroBytes);
  }
}

const std::uint8_t* metro_end(const std::uint8_t* p) {
  ++p;
  if (*p++ != 0) return p + PackedCardFiles::kMetroBytes;
  skip_varint(p);
  p += 8;
  skip_varint(p);
  return p;
}

}  // namespace

void PackedCardFiles::push(const Context& after, const Txn& txn) {
  CITYCARD_CHECK(txn.log != nullptr, "every transaction writes a log record");
  // Built in per-thread scratch buffers (their capacity stays), then copied into one block.
  thread_local std::vector<std::uint8_t> metros, entries, head;
  metros.clear();
  entries.clear();
  head.clear();
  Cursor old{};
  if (data_) old = open_block(data_.get());

  // Metro records, by id.
  std::size_t metro_count = 0;
  {
    const std::uint8_t* p = old.metros;
    bool placed = txn.metro_id == 0;
    for (std::size_t i = 0; i < old.metro_count; ++i) {
      const std::uint8_t* end = metro_end(p);
      if (!placed && txn.metro_id <= *p) {
        encode_metro(metros, txn.metro_id, txn.metro);
        ++metro_count;
        placed = true;
        if (txn.metro_id == *p) {
          p = end;
          continue;
        }
      }
      metros.insert(metros.end(), p, end);
      ++metro_count;
      p = end;
    }
    if (!placed) {
      encode_metro(metros, txn.metro_id, txn.metro);
      ++metro_count;
    }
  }

  // The new entry, then the old ones still holding a log or a travel record.
  encode_entry(entries, after, txn);
  std::size_t entry_count = 1;
  std::size_t travels = txn.travel != nullptr ? 1 : 0;
  const std::uint8_t* p = old.begin;
  for (std::size_t i = 0; i < old.entries; ++i) {
    const std::uint8_t* start = p;
    const std::uint8_t flags = skip_entry(p);
    const bool in_log = i + 1 < after.log_records;
    const bool travel = (flags & kHasTravel) != 0 && travels < after.travel_records;
    if (flags & kHasTravel) ++travels;
    if (in_log || travel) {
      entries.insert(entries.end(), start, p);
      ++entry_count;
    }
  }

  put_varint(head, entry_count);
  put_varint(head, metro_count);
  const std::size_t content = head.size() + metros.size() + entries.size();
  // The length counts itself.
  std::size_t total = content + 1;
  while (total - content < (total < 0x80 ? 1u : total < 0x4000 ? 2u : 3u)) ++total;
  const std::size_t len_at = head.size();
  put_varint(head, total);
  const std::size_t len_bytes = head.size() - len_at;
  CITYCARD_CHECK(len_bytes + content == total, "packed block length");
  std::unique_ptr<std::uint8_t[]> block(new std::uint8_t[total]);
  std::uint8_t* w = block.get();
  std::memcpy(w, head.data() + len_at, len_bytes);
  w += len_bytes;
  std::memcpy(w, head.data(), len_at);
  w += len_at;
  if (!metros.empty()) std::memcpy(w, metros.data(), metros.size());
  w += metros.size();
  std::memcpy(w, entries.data(), entries.size());
  data_ = std::move(block);
}

std::uint8_t PackedCardFiles::log_count(const Context& c) const {
  if (!data_) return 0;
  return static_cast<std::uint8_t>(
      std::min<std::size_t>(open_block(data_.get()).entries, c.log_records));
}

std::uint8_t PackedCardFiles::travel_count(const Context& c) const {
  if (!data_) return 0;
  const Cursor cur = open_block(data_.get());
  const std::uint8_t* p = cur.begin;
  std::size_t n = 0;
  for (std::size_t i = 0; i < cur.entries; ++i) {
    if (skip_entry(p) & kHasTravel) ++n;
  }
  return static_cast<std::uint8_t>(std::min<std::size_t>(n, c.travel_records));
}

namespace {

// Decodes the log part of the entry at p (advancing past it), writing the wire record when
// out23 is given. `counter` is the counter the transaction used.
LogPart read_log_part(const std::uint8_t*& p, std::uint8_t flags, std::uint16_t counter,
                      std::uint32_t overdraft, std::uint8_t* out23) {
  LogPart part;
  if ((flags & 3) == kLogRaw) {
    if (out23) std::memcpy(out23, p, PackedCardFiles::kLogBytes);
    p += PackedCardFiles::kLogBytes;
    return part;
  }
  part.datetime = get_u32le(p);
  part.amount = static_cast<std::uint32_t>(get_varint(p));
  if ((flags & kLogTerminalInTravel) == 0)
    part.terminal = static_cast<std::uint32_t>(get_varint(p));
  if (out23) {
    out23[0] = static_cast<std::uint8_t>(counter >> 8);
    out23[1] = static_cast<std::uint8_t>(counter);
    out23[2] = static_cast<std::uint8_t>(overdraft >> 16);
    out23[3] = static_cast<std::uint8_t>(overdraft >> 8);
    out23[4] = static_cast<std::uint8_t>(overdraft);
    put_be32(out23 + 5, part.amount);
    out23[9] = kTypes[flags & 3];
    if (flags & kLogTerminalInTravel) {
      const std::uint8_t* q = p;  // the travel part: its static id first
      const ByteView key = InternTable::shared().get(static_cast<std::uint32_t>(get_varint(q)));
      std::memcpy(out23 + 10, key.data() + 3, 6);
    } else {
      const ByteView terminal = InternTable::shared().get(part.terminal);
      std::memcpy(out23 + 10, terminal.data(), 6);
    }
    unpack_datetime(part.datetime, out23 + 16);
  }
  return part;
}

}  // namespace

bool PackedCardFiles::read_log(const Context& c, std::size_t index, std::uint8_t* out23) const {
  if (!data_ || index >= c.log_records) return false;
  const Cursor cur = open_block(data_.get());
  if (index >= cur.entries) return false;
  const std::uint8_t* p = cur.begin;
  std::uint16_t offline = c.offline_counter, online = c.online_counter;
  for (std::size_t i = 0; i < index; ++i) {
    const std::uint8_t flags = skip_entry(p);
    if (entry_online(flags)) {
      --online;
    } else {
      --offline;
    }
  }
  const std::uint8_t flags = *p++;
  const std::uint16_t counter =
      static_cast<std::uint16_t>((entry_online(flags) ? online : offline) - 1);
  read_log_part(p, flags, counter, c.overdraft_limit_fen & 0xFFFFFF, out23);
  return true;
}

bool PackedCardFiles::read_travel(const Context& c, std::size_t index, std::uint8_t* out48) const {
  if (!data_ || index >= c.travel_records) return false;
  const Cursor cur = open_block(data_.get());
  const std::uint8_t* p = cur.begin;
  std::size_t seen = 0;
  for (std::size_t i = 0; i < cur.entries; ++i) {
    const std::uint8_t* start = p;
    const std::uint8_t flags = skip_entry(p);
    if ((flags & kHasTravel) == 0) continue;
    if (seen++ < index) continue;
    // This one.
    const std::uint8_t* q = start + 1;
    const LogPart log = read_log_part(q, flags, 0, 0, nullptr);
    if (flags & kTravelRaw) {
      std::memcpy(out48, q, kTravelBytes);
      return true;
    }
    const ByteView key = InternTable::shared().get(static_cast<std::uint32_t>(get_varint(q)));
    std::memcpy(out48, key.data(), kTravelBytes);
    const std::uint32_t amount =
        (flags & kTravelAmount) ? static_cast<std::uint32_t>(get_varint(q)) : log.amount;
    const std::uint32_t dt = (flags & kTravelDateTime) ? get_u32le(q) : log.datetime;
    const auto balance = static_cast<std::uint32_t>(get_varint(q));
    put_be32(out48 + kTravelAmountAt, amount);
    put_be32(out48 + kTravelBalanceAt, balance);
    unpack_datetime(dt, out48 + kTravelDateTimeAt);
    return true;
  }
  return false;
}

void PackedCardFiles::read_metro(std::uint8_t id, std::uint8_t* out128) const {
  std::memset(out128, 0, kMetroBytes);
  if (!data_) return;
  const Cursor cur = open_block(data_.get());
  const std::uint8_t* p = cur.metros;
  for (std::size_t i = 0; i < cur.metro_count; ++i) {
    const std::uint8_t* end = metro_end(p);
    if (*p == id) {
      const std::uint8_t* q = p + 2;
      if (p[1] != 0) {
        std::memcpy(out128, q, kMetroBytes);
        return;
      }
      const ByteView key = InternTable::shared().get(static_cast<std::uint32_t>(get_varint(q)));
      std::memcpy(out128, key.data(), kMetroBytes);
      unpack_datetime(get_u32le(q), out128 + kMetroEntryAt);
      unpack_datetime(get_u32le(q), out128 + kMetroExitAt);
      put_be32(out128 + kMetroFareAt, static_cast<std::uint32_t>(get_varint(q)));
      return;
    }
    p = end;
  }
}

}  // namespace citycard::devices
