// Key management: the issuer's master keys, one set per key version, and everything derived
// from them on demand (card keys by serial, terminal batch keys by terminal id).
//
// Contract:
// - Master keys are made deterministically from the run's key seed: the same seed gives the
//   same keys on every machine, so a run replays. Our derivation (not a standard's):
//   key = first 16 bytes of SHA-256("citycard issuer key" | seed (8, BE) | version (1) | label).
// - They are persisted in the Store; a reopened database has the same keys. A database
//   created with another seed is refused (kInvalidArgument) rather than silently mixing keys.
// - Derived keys are never stored: a card's DTK is recomputed from the master when a TAC is
//   checked.
//
// Threads: one caller at a time (the Backend's). create_version() must not run inside an open
// transaction, because the in-memory copy is updated only once the keys are committed.
#pragma once

#include <cstdint>
#include <map>
#include <memory>

#include "citycard/backend/store.h"
#include "citycard/protocol/crypto.h"
#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/status.h"

namespace citycard::backend {

class Keys {
 public:
  static constexpr std::uint8_t kFirstVersion = 1;

  // Loads the stored key versions, or creates version 1 from `seed` in a new database.
  static Result<std::unique_ptr<Keys>> open(Store& store, std::uint64_t seed);
  // The pure derivation behind open() and create_version().
  static protocol::IssuerKeys derive_issuer_keys(std::uint64_t seed, std::uint8_t version);

  std::uint64_t seed() const { return seed_; }
  // The newest version: what new cards and terminals get.
  std::uint8_t current_version() const { return versions_.rbegin()->first; }
  // Key rotation: makes `version` from the seed and stores it; idempotent.
  Status create_version(std::uint8_t version);

  // kNotFound for a version never created.
  Result<protocol::IssuerKeys> issuer(std::uint8_t version) const;
  // Fills the card's DPK/DLK/DTK, key version and algorithm from its serial.
  Status derive_card_keys(std::uint8_t version, protocol::crypto::Algorithm alg,
                          protocol::CardImage& card) const;
  // The card's DTK, for checking its TACs.
  Result<protocol::crypto::Key16> card_tac_key(std::uint8_t version,
                                               protocol::crypto::Algorithm alg,
                                               const protocol::Serial8& serial) const;
  Result<protocol::crypto::Key16> terminal_batch_key(std::uint8_t version,
                                                     const protocol::TerminalId& terminal) const;

 private:
  Keys(Store& store, std::uint64_t seed) : store_(store), seed_(seed) {}
  Status load();
  Status insert(const protocol::IssuerKeys& keys);

  Store& store_;
  std::uint64_t seed_;
  std::map<std::uint8_t, protocol::IssuerKeys> versions_;  // never empty once open
};

}  // namespace citycard::backend
