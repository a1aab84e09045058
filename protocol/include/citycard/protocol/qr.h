// QR-code payment (乘车码): the formats and the ECDSA P-256 crypto the backend, the phone and a
// validator share. Money never moves on a card for a QR payment: the payment debits the
// holder's online account at the backend when the validator uploads it.
//
//   Grant      the backend's "token key" for one phone: key id, card serial, the phone's
//              P-256 public key, validity (calendar seconds since 2000-01-01), the most one
//              payment may take. Signed by the backend's QR issuer key, whose X.509 certificate
//              the city CA issued; a validator holds that certificate and checks it offline
//              against the root and city CA certificates it trusts (verify_certificate()).
//   Payload    what the phone shows: the grant and its signature, a sequence number, the time
//              it was made; signed by the phone's private key. Short-lived: a validator refuses
//              one older than its max age (expired) or seen before (replayed).
//
// Encodings are fixed-layout big-endian; decode() checks every length. Signatures are DER
// ECDSA-with-SHA256 (at most 72 bytes). A full payload is about 250 bytes: one QR code.
// Thread-safe (no shared state).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "citycard/protocol/bytes.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/status.h"

namespace citycard::protocol::qr {

using PublicPoint = std::array<std::uint8_t, 65>;  // uncompressed P-256 point (04 || X || Y)
inline constexpr std::size_t kMaxSignatureBytes = 72;

struct Grant {
  std::uint32_t key_id = 0;
  Serial8 card{};
  PublicPoint phone_key{};
  std::int64_t valid_from_s = 0;  // epoch2000
  std::int64_t valid_to_s = 0;
  std::uint32_t max_amount_fen = 0;

  static constexpr std::size_t kSize = 4 + 8 + 65 + 8 + 8 + 4;
  Bytes encode() const;
  static std::optional<Grant> decode(ByteView b);
  bool operator==(const Grant&) const = default;
};

struct Payload {
  Grant grant;
  Bytes grant_signature;  // by the QR issuer key over grant.encode()
  std::uint32_t seq = 0;
  std::int64_t created_s = 0;  // epoch2000, the phone's clock
  Bytes signature;             // by the phone key over signed_part()

  Bytes signed_part() const;  // grant || u8 len || grant signature || seq || created
  Bytes encode() const;       // signed_part() || u8 len || signature
  static Result<Payload> decode(ByteView b);
};

// An EC P-256 key pair (OpenSSL EVP). Movable, not copyable.
class EcKey {
 public:
  static Result<EcKey> generate();
  static Result<EcKey> from_private_pem(std::string_view pem);
  EcKey(EcKey&&) noexcept;
  EcKey& operator=(EcKey&&) noexcept;
  ~EcKey();

  PublicPoint public_point() const;
  Result<Bytes> sign(ByteView message) const;  // DER ECDSA-with-SHA256

 private:
  struct Impl;
  explicit EcKey(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Whether `der_signature` is a valid ECDSA-with-SHA256 signature of `message` under `key`.
bool verify(const PublicPoint& key, ByteView message, ByteView der_signature);

// A parsed public key, for verifying many signatures under it (building the key is a good part
// of one verification's cost). Movable; verify() is const and thread-compatible.
class PublicKey {
 public:
  static std::optional<PublicKey> from_point(const PublicPoint& point);
  PublicKey(PublicKey&&) noexcept;
  PublicKey& operator=(PublicKey&&) noexcept;
  ~PublicKey();
  bool verify(ByteView message, ByteView der_signature) const;

 private:
  struct Impl;
  explicit PublicKey(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Checks `leaf_pem` against the trusted root and intermediate CA certificates at calendar time
// `at_unix_s` (UTC seconds) with OpenSSL's X509 verification, and returns its P-256 public key.
// kRejected (with OpenSSL's reason) when the chain does not verify; kMalformed for bad PEM or a
// key that is not P-256.
Result<PublicPoint> verify_certificate(std::string_view leaf_pem, std::string_view root_pem,
                                       const std::vector<std::string>& intermediate_pems,
                                       std::int64_t at_unix_s);

}  // namespace citycard::protocol::qr
