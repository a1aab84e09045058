#include "citycard/backend/keys.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace citycard::backend {

namespace crypto = protocol::crypto;

namespace {

constexpr std::string_view kSeedKey = "key_seed";

crypto::Key16 kdf(std::uint64_t seed, std::uint8_t version, std::string_view label) {
  Bytes in;
  constexpr std::string_view kDomain = "citycard issuer key";
  in.insert(in.end(), kDomain.begin(), kDomain.end());
  put_u32be(in, static_cast<std::uint32_t>(seed >> 32));
  put_u32be(in, static_cast<std::uint32_t>(seed));
  put_u8(in, version);
  in.insert(in.end(), label.begin(), label.end());
  std::uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(in.data(), in.size(), digest, &n, EVP_sha256(), nullptr) != 1 || n < 16) {
    std::abort();  // SHA-256 of a small buffer cannot fail short of a broken OpenSSL
  }
  crypto::Key16 key{};
  std::memcpy(key.data(), digest, key.size());
  return key;
}

crypto::Key16 key_from_blob(const Bytes& b) {
  crypto::Key16 k{};
  if (b.size() == k.size()) std::memcpy(k.data(), b.data(), k.size());
  return k;  // the schema's CHECK guarantees the length
}

}  // namespace

protocol::IssuerKeys Keys::derive_issuer_keys(std::uint64_t seed, std::uint8_t version) {
  protocol::IssuerKeys k;
  k.key_version = version;
  k.purchase = kdf(seed, version, "purchase");
  k.load = kdf(seed, version, "load");
  k.tac = kdf(seed, version, "tac");
  k.batch = kdf(seed, version, "batch");
  k.maintenance = kdf(seed, version, "maintenance");
  k.m1 = kdf(seed, version, "m1");
  return k;
}

Status Keys::not_found(std::uint8_t version) {
  return Status(Errc::kNotFound, "no issuer keys of version " + std::to_string(version));
}

const Keys::Version* Keys::find(std::uint8_t version) const {
  auto it = versions_.find(version);
  return it == versions_.end() ? nullptr : &it->second;
}

void Keys::hold(const protocol::IssuerKeys& k) {
  versions_.erase(k.key_version);
  versions_.emplace(k.key_version, Version(k));
}

Result<std::unique_ptr<Keys>> Keys::open(Store& store, std::uint64_t seed) {
  // The seed is stored as text: SQLite integers are signed and a seed may use all 64 bits.
  auto q = store.query("SELECT value FROM meta WHERE key = ?1");
  q.bind(1, kSeedKey);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  std::unique_ptr<Keys> keys(new Keys(store, seed));
  if (*row) {
    const std::string stored = q.column_text(0);
    if (stored != std::to_string(seed)) {
      return Status(Errc::kInvalidArgument, store.path() + " was created with key seed " + stored +
                                                ", not " + std::to_string(seed));
    }
    if (Status s = keys->load(); !s.is_ok()) return s;
    if (keys->versions_.empty()) {
      return Status(Errc::kInternal, store.path() + " has a key seed but no issuer keys");
    }
    return keys;
  }
  auto txn = store.begin();
  if (!txn.is_ok()) return txn.status();
  if (Status s = store.query("INSERT INTO meta(key, value) VALUES (?1, ?2)")
                     .bind(1, kSeedKey)
                     .bind(2, std::to_string(seed))
                     .run();
      !s.is_ok()) {
    return s;
  }
  const protocol::IssuerKeys first = derive_issuer_keys(seed, kFirstVersion);
  if (Status s = keys->insert(first); !s.is_ok()) return s;
  if (Status s = txn->commit(); !s.is_ok()) return s;
  keys->hold(first);
  return keys;
}

Status Keys::load() {
  auto q = store_.query(
      "SELECT key_version, purchase, load, tac, batch FROM issuer_keys ORDER BY key_version");
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return Status::ok();
    // The unstored masters follow from the seed, which open() has checked.
    protocol::IssuerKeys k =
        derive_issuer_keys(seed_, static_cast<std::uint8_t>(q.column_int64(0)));
    k.purchase = key_from_blob(q.column_blob(1));
    k.load = key_from_blob(q.column_blob(2));
    k.tac = key_from_blob(q.column_blob(3));
    k.batch = key_from_blob(q.column_blob(4));
    hold(k);
  }
}

Status Keys::insert(const protocol::IssuerKeys& k) {
  return store_
      .query(
          "INSERT INTO issuer_keys(key_version, purchase, load, tac, batch) "
          "VALUES (?1, ?2, ?3, ?4, ?5)")
      .bind(1, std::int64_t{k.key_version})
      .bind_blob(2, k.purchase)
      .bind_blob(3, k.load)
      .bind_blob(4, k.tac)
      .bind_blob(5, k.batch)
      .run();
}

Status Keys::create_version(std::uint8_t version) {
  if (versions_.count(version) != 0) return Status::ok();
  if (store_.in_transaction()) {
    return Status(Errc::kInternal, "create_version inside an open transaction");
  }
  const protocol::IssuerKeys k = derive_issuer_keys(seed_, version);
  if (Status s = insert(k); !s.is_ok()) return s;
  hold(k);
  return Status::ok();
}

Result<std::uint8_t> Keys::rotate() {
  const std::uint8_t current = current_version();
  if (current == 0xFF) return Status(Errc::kTooLarge, "key version 255 is the last");
  const auto next = static_cast<std::uint8_t>(current + 1);
  if (Status s = create_version(next); !s.is_ok()) return s;
  return next;
}

std::vector<std::uint8_t> Keys::versions() const {
  std::vector<std::uint8_t> out;
  for (const auto& [v, _] : versions_) out.push_back(v);
  return out;
}

Result<protocol::IssuerKeys> Keys::issuer(std::uint8_t version) const {
  const Version* v = find(version);
  if (v == nullptr) return not_found(version);
  return v->keys;
}

Status Keys::derive_card_keys(std::uint8_t version, crypto::Algorithm alg,
                              protocol::CardImage& card) const {
  const Version* v = find(version);
  if (v == nullptr) return not_found(version);
  protocol::derive_card_keys(v->keys, alg, card);
  return Status::ok();
}

Result<crypto::Key16> Keys::card_tac_key(std::uint8_t version, crypto::Algorithm alg,
                                         const protocol::Serial8& serial) const {
  const Version* v = find(version);
  if (v == nullptr) return not_found(version);
  if (alg == crypto::Algorithm::kTripleDes) return crypto::diversify(v->tac_master, serial);
  return crypto::diversify(alg, v->keys.tac, serial);
}

Result<crypto::MacKey> Keys::card_tac_mac_key(std::uint8_t version, crypto::Algorithm alg,
                                              const protocol::Serial8& serial) const {
  auto dtk = card_tac_key(version, alg, serial);
  if (!dtk.is_ok()) return dtk.status();
  return crypto::MacKey(crypto::tac_key(alg, *dtk));
}

Result<crypto::Key16> Keys::terminal_batch_key(std::uint8_t version,
                                               const protocol::TerminalId& terminal) const {
  const Version* v = find(version);
  if (v == nullptr) return not_found(version);
  // protocol::terminal_batch_key's derivation, on the scheduled master.
  const protocol::Serial8 d{0,           0,           terminal[0], terminal[1],
                            terminal[2], terminal[3], terminal[4], terminal[5]};
  return crypto::diversify(v->batch_master, d);
}

}  // namespace citycard::backend
