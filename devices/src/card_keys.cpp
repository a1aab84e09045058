#include "citycard/devices/card_keys.h"

#include <array>
#include <atomic>
#include <cstring>

#include "citycard/protocol/check.h"

namespace citycard::devices {

namespace crypto = protocol::crypto;

const crypto::Key16& key_for(const CardKeys& keys, KeyUse use) {
  switch (use) {
    case KeyUse::kPurchase:
      return keys.dpk;
    case KeyUse::kLoad:
      return keys.dlk;
    case KeyUse::kTac:
      return keys.dtk;
    case KeyUse::kMaintenance:
      break;
  }
  return keys.damk;
}

CardKeys keys_of(const protocol::CardImage& image) {
  return CardKeys{image.dpk, image.dlk, image.dtk, image.damk};
}

// One key version with its 3DES masters scheduled once.
struct IssuerKeyTable::Version {
  explicit Version(const protocol::IssuerKeys& k)
      : keys(k), purchase(k.purchase), load(k.load), tac(k.tac), maintenance(k.maintenance) {}
  protocol::IssuerKeys keys;
  crypto::TdesKey purchase, load, tac, maintenance;
  const crypto::TdesKey& scheduled(KeyUse use) const {
    switch (use) {
      case KeyUse::kPurchase:
        return purchase;
      case KeyUse::kLoad:
        return load;
      case KeyUse::kTac:
        return tac;
      case KeyUse::kMaintenance:
        break;
    }
    return maintenance;
  }
  const crypto::Key16& raw(KeyUse use) const {
    switch (use) {
      case KeyUse::kPurchase:
        return keys.purchase;
      case KeyUse::kLoad:
        return keys.load;
      case KeyUse::kTac:
        return keys.tac;
      case KeyUse::kMaintenance:
        break;
    }
    return keys.maintenance;
  }
};

namespace {

std::atomic<std::uint64_t> next_table_id{1};

struct CacheEntry {
  std::uint64_t table_id = 0;  // 0: empty
  protocol::Serial8 serial{};
  std::uint8_t version = 0;
  crypto::Algorithm alg = crypto::Algorithm::kTripleDes;
  std::uint8_t have = 0;  // bit per KeyUse: derived already
  CardKeys keys;
};

struct ThreadCache {
  std::array<CacheEntry, IssuerKeyTable::kCacheEntries> entries{};
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
};

ThreadCache& cache() {
  thread_local ThreadCache c;
  return c;
}

std::size_t slot_of(const protocol::Serial8& serial, std::uint8_t version) {
  std::uint64_t h;
  std::memcpy(&h, serial.data(), 8);
  h ^= version;
  h *= 0x9E3779B97F4A7C15ull;  // Fibonacci hashing: serials are often consecutive
  return static_cast<std::size_t>(h >> 56) % IssuerKeyTable::kCacheEntries;
}

}  // namespace

IssuerKeyTable::IssuerKeyTable(std::vector<protocol::IssuerKeys> versions)
    : id_(next_table_id.fetch_add(1)) {
  CITYCARD_CHECK(!versions.empty(), "an issuer key table needs a key set");
  for (const auto& k : versions) {
    CITYCARD_CHECK(!has_version(k.key_version), "key versions of a table are distinct");
    versions_.push_back(std::make_unique<const Version>(k));
  }
}

IssuerKeyTable::~IssuerKeyTable() = default;

bool IssuerKeyTable::has_version(std::uint8_t v) const {
  for (const auto& p : versions_) {
    if (p->keys.key_version == v) return true;
  }
  return false;
}

const IssuerKeyTable::Version& IssuerKeyTable::version(std::uint8_t v) const {
  for (const auto& p : versions_) {
    if (p->keys.key_version == v) return *p;
  }
  CITYCARD_CHECK(false, "card key version not in its issuer key table");
  std::abort();
}

crypto::Key16 IssuerKeyTable::derive(const protocol::Serial8& serial, std::uint8_t v,
                                     crypto::Algorithm alg, KeyUse use) const {
  const Version& ver = version(v);
  if (alg == crypto::Algorithm::kTripleDes) return crypto::diversify(ver.scheduled(use), serial);
  return crypto::diversify(alg, ver.raw(use), serial);
}

crypto::Key16 IssuerKeyTable::card_key(const protocol::Serial8& serial, std::uint8_t v,
                                       crypto::Algorithm alg, KeyUse use) const {
  ThreadCache& c = cache();
  CacheEntry& e = c.entries[slot_of(serial, v)];
  const auto bit = static_cast<std::uint8_t>(1u << static_cast<unsigned>(use));
  const bool same_card = e.table_id == id_ && e.serial == serial && e.version == v && e.alg == alg;
  if (same_card && (e.have & bit) != 0) {
    ++c.hits;
    return key_for(e.keys, use);
  }
  ++c.misses;
  if (!same_card) e = CacheEntry{id_, serial, v, alg, 0, CardKeys{}};
  const crypto::Key16 k = derive(serial, v, alg, use);
  switch (use) {
    case KeyUse::kPurchase:
      e.keys.dpk = k;
      break;
    case KeyUse::kLoad:
      e.keys.dlk = k;
      break;
    case KeyUse::kTac:
      e.keys.dtk = k;
      break;
    case KeyUse::kMaintenance:
      e.keys.damk = k;
      break;
  }
  e.have |= bit;
  return k;
}

CardKeys IssuerKeyTable::card_keys(const protocol::Serial8& serial, std::uint8_t v,
                                   crypto::Algorithm alg) const {
  return CardKeys{card_key(serial, v, alg, KeyUse::kPurchase),
                  card_key(serial, v, alg, KeyUse::kLoad), card_key(serial, v, alg, KeyUse::kTac),
                  card_key(serial, v, alg, KeyUse::kMaintenance)};
}

std::uint64_t IssuerKeyTable::thread_cache_hits() {
  return cache().hits;
}
std::uint64_t IssuerKeyTable::thread_cache_misses() {
  return cache().misses;
}

}  // namespace citycard::devices
