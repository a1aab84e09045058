// The city of a load run: issued by the backend (cards personalised, buses registered), kept
// as the images the device models need, saved to a file for an external backend's runs and
// sent to agents.
//
// Threads: the Backend passed in must not be used by another thread meanwhile.
#pragma once

#include <cstdint>
#include <string>

#include "citycard/backend/backend.h"
#include "citycard/protocol/status.h"
#include "citycard/scenarios/world.h"
#include "load.pb.h"

namespace citycard::scenarios {

// Issues `config`'s cards (balances drawn from `seed`) and one registered terminal per bus,
// in one transaction.
Result<citycard::load::City> issue_city(backend::Backend& backend, const CityConfig& config,
                                        std::uint64_t seed);

// A city file holds at most this many bytes (about ten million cards).
inline constexpr std::size_t kCityFileBytesMax = std::size_t{1} << 30;
Status write_city_file(const std::string& path, const citycard::load::City& city);
Result<citycard::load::City> read_city_file(const std::string& path);

}  // namespace citycard::scenarios
