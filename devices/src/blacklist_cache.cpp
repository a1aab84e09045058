#include "citycard/devices/blacklist_cache.h"

#include <string>

namespace citycard::devices {

Status BlacklistCache::apply(const citycard::wire::BlacklistReply& page,
                             std::uint64_t asked_since) {
  if (!page.reset() && asked_since != version_) {
    return Status(Errc::kConflict, "page for version " + std::to_string(asked_since) +
                                       ", we hold " + std::to_string(version_));
  }
  std::set<protocol::Serial8> next = page.reset() ? std::set<protocol::Serial8>{} : serials_;
  for (const std::string& f : page.removed()) {
    protocol::Serial8 s{};
    if (!protocol::wire::to_serial(f, s)) return Status(Errc::kMalformed, "removed serial");
    next.erase(s);
  }
  for (const std::string& f : page.added()) {
    protocol::Serial8 s{};
    if (!protocol::wire::to_serial(f, s)) return Status(Errc::kMalformed, "added serial");
    next.insert(s);
    if (next.size() > entries_max_) {
      return Status(Errc::kTooLarge, "blacklist past " + std::to_string(entries_max_));
    }
  }
  serials_ = std::move(next);
  version_ = page.version();
  return Status::ok();
}

}  // namespace citycard::devices
