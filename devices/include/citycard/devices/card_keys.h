// Where a simulated CPU card's diversified keys come from.
//
// A real card stores its DPK, DLK, DTK and DAMK (64 bytes). A city of 20 million simulated
// cards need not: the keys are a pure function of the issuer's master keys and the card
// serial (protocol::derive_card_keys), so a card can hold only its serial and key version and
// derive its keys when a command needs them. The IssuerKeyTable is the personalisation
// bureau's copy of the masters, shared by the cards made from it. It is a simulation device,
// not a terminal's: terminals and PSAMs never see it, and a card that derives its keys behaves
// byte for byte like one that stores them (a test holds it to that).
//
// Cost: deriving the four keys is eight 3DES blocks. A small direct-mapped cache per thread
// keeps the keys of recently used cards, so a card used again soon (a transfer, a benchmark)
// pays nothing. The cache holds only derived keys, never masters, and is keyed by the table's
// identity, so tables do not see each other's entries.
//
// Thread safety: a table is immutable after construction; card_keys() may be called from any
// thread. The table must outlive the cards that use it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "citycard/protocol/crypto.h"
#include "citycard/protocol/des.h"
#include "citycard/protocol/personalisation.h"

namespace citycard::devices {

struct CardKeys {
  protocol::crypto::Key16 dpk{};
  protocol::crypto::Key16 dlk{};
  protocol::crypto::Key16 dtk{};
  protocol::crypto::Key16 damk{};
  bool operator==(const CardKeys&) const = default;
};

enum class KeyUse : std::uint8_t { kPurchase = 0, kLoad = 1, kTac = 2, kMaintenance = 3 };
const protocol::crypto::Key16& key_for(const CardKeys& keys, KeyUse use);

// The keys a card image carries.
CardKeys keys_of(const protocol::CardImage& image);

class IssuerKeyTable {
 public:
  static constexpr std::size_t kCacheEntries = 256;  // per thread

  // At least one key set; versions must be distinct.
  explicit IssuerKeyTable(std::vector<protocol::IssuerKeys> versions);
  ~IssuerKeyTable();
  IssuerKeyTable(const IssuerKeyTable&) = delete;
  IssuerKeyTable& operator=(const IssuerKeyTable&) = delete;

  bool has_version(std::uint8_t version) const;
  // One key of a card, derived only when not in the calling thread's cache (a purchase needs
  // DPK and DTK: four 3DES blocks, not eight). An unknown version is a programmer error (the
  // card was made from this table, so its version is one of the table's).
  protocol::crypto::Key16 card_key(const protocol::Serial8& serial, std::uint8_t version,
                                   protocol::crypto::Algorithm alg, KeyUse use) const;
  // All four keys of a card.
  CardKeys card_keys(const protocol::Serial8& serial, std::uint8_t version,
                     protocol::crypto::Algorithm alg) const;
  // Cache statistics of the calling thread, for benchmarks.
  static std::uint64_t thread_cache_hits();
  static std::uint64_t thread_cache_misses();

 private:
  struct Version;
  const Version& version(std::uint8_t v) const;
  protocol::crypto::Key16 derive(const protocol::Serial8& serial, std::uint8_t version,
                                 protocol::crypto::Algorithm alg, KeyUse use) const;

  std::vector<std::unique_ptr<const Version>> versions_;
  std::uint64_t id_;  // distinguishes tables in the per-thread cache; never reused
};

}  // namespace citycard::devices
