// The terminal's blacklist cache, fed by the backend's BlacklistReply pages (wire.proto,
// BlacklistRequest/Reply: versioned deltas, or a full transfer that may reset the list).
// PurchaseEngine::set_blacklist(cache.predicate()) makes every sale consult it.
//
// Bounded: at most `entries_max` serials; a page that would go past it is refused whole
// (Errc::kTooLarge) and the version stays, so the terminal asks again rather than holding a
// silently truncated list. A page for another base version than ours is refused (kConflict).
//
// Single-threaded. predicate() refers to the cache, which must outlive the engine using it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>

#include "citycard/devices/purchase.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/status.h"
#include "citycard/protocol/wire.h"

namespace citycard::devices {

class BlacklistCache {
 public:
  explicit BlacklistCache(std::size_t entries_max = 200'000) : entries_max_(entries_max) {}

  // Applies one page. `asked_since` is the since_version the request carried.
  Status apply(const citycard::wire::BlacklistReply& page, std::uint64_t asked_since);
  bool listed(const protocol::Serial8& serial) const { return serials_.contains(serial); }
  PurchaseEngine::Blacklist predicate() const {
    return [this](const protocol::Serial8& s) { return listed(s); };
  }
  std::uint64_t version() const { return version_; }
  std::size_t size() const { return serials_.size(); }

 private:
  std::size_t entries_max_;
  std::uint64_t version_ = 0;
  std::set<protocol::Serial8> serials_;
};

}  // namespace citycard::devices
