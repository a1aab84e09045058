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
//   checked. The masters are kept scheduled (protocol/des.h), so a derivation costs two block
//   encryptions. The maintenance (DAMK) and M1 masters are not stored either: they follow from
//   the seed, which open() has checked against the database's.
// - Rotation: rotate() makes the next version current. Issuance gives new cards and new PSAMs
//   the current version; every older version stays, so a card personalised, a record signed or
//   a batch signed under it still verifies. Versions are never deleted (a record can arrive
//   late); 255 is the last.
// - Key index: the cards answer key index 01 only (devices/cpu_card.h), so one set of masters
//   per version serves every index in use; a second index would be a second set per version.
//
// Threads: one caller at a time (the Backend's). create_version() and rotate() must not run
// inside an open transaction, because the in-memory copy is updated only once the keys are
// committed.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

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
  // Makes `version` from the seed and stores it; idempotent. A version above the current one
  // becomes current.
  Status create_version(std::uint8_t version);
  // Key rotation: creates current + 1 and returns it. kTooLarge when 255 is current.
  Result<std::uint8_t> rotate();
  // Every version held, oldest first.
  std::vector<std::uint8_t> versions() const;

  // kNotFound for a version never created.
  Result<protocol::IssuerKeys> issuer(std::uint8_t version) const;
  // Fills the card's DPK/DLK/DTK, key version and algorithm from its serial.
  Status derive_card_keys(std::uint8_t version, protocol::crypto::Algorithm alg,
                          protocol::CardImage& card) const;
  // The card's DTK, for checking its TACs.
  Result<protocol::crypto::Key16> card_tac_key(std::uint8_t version,
                                               protocol::crypto::Algorithm alg,
                                               const protocol::Serial8& serial) const;
  // The card's TAC key scheduled for MACs: what ingest checks a purchase TAC with.
  Result<protocol::crypto::MacKey> card_tac_mac_key(std::uint8_t version,
                                                    protocol::crypto::Algorithm alg,
                                                    const protocol::Serial8& serial) const;
  Result<protocol::crypto::Key16> terminal_batch_key(std::uint8_t version,
                                                     const protocol::TerminalId& terminal) const;

 private:
  // One version's masters, with the 3DES ones scheduled once.
  struct Version {
    explicit Version(const protocol::IssuerKeys& k)
        : keys(k), tac_master(k.tac), batch_master(k.batch) {}
    protocol::IssuerKeys keys;
    protocol::crypto::TdesKey tac_master;
    protocol::crypto::TdesKey batch_master;
  };

  Keys(Store& store, std::uint64_t seed) : store_(store), seed_(seed) {}
  Status load();
  Status insert(const protocol::IssuerKeys& keys);
  void hold(const protocol::IssuerKeys& keys);
  const Version* find(std::uint8_t version) const;
  static Status not_found(std::uint8_t version);

  Store& store_;
  std::uint64_t seed_;
  std::map<std::uint8_t, Version> versions_;  // never empty once open
};

}  // namespace citycard::backend
