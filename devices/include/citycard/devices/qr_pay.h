// QR-code payment on the device side (issue 5): the phone's QR wallet and a validator that
// accepts QR codes offline. Formats and crypto: protocol/qr.h; the backend: backend/qr.h.
//
// QrWallet (in the phone): its own P-256 key pair, made on the phone; request_key() sends the
// public half with a QrKeyRequest and keeps the backend's signed Grant; show() makes a payload
// for now (seq + 1 each time) signed with the phone's private key, which never leaves it.
//
// QrValidator (on a bus validator): knows the QR issuer's public key, taken from its X.509
// certificate after checking it offline against the root and city CA (from_certificate()).
// scan() accepts a payload when: it decodes; the grant verifies under the issuer key and is
// valid now; the phone's signature verifies; it is not older than max_age_s (expired) nor more
// than future_skew_s ahead; the fare is within the grant's maximum; and (key id, seq) was not
// accepted before (replayed). Seen codes are remembered only as long as they could still pass
// the age check, so the memory is bounded by the scan rate times the window (and seen_max).
// Accepted payments wait in a queue; upload() sends them as one QrUpload (one batch in
// flight; the same batch again after a failure: the backend pays each (key id, seq) once).
//
// Single-threaded; reply callbacks run on the channel's thread (the owner's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "citycard/devices/online_load.h"
#include "citycard/protocol/qr.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/transport.h"

namespace citycard::devices {

class QrWallet {
 public:
  static Result<QrWallet> create(const protocol::Serial8& card);

  // kNotFound / kRejected / kMalformed as the backend answered (status_of_error).
  Status request_key(OnlineLoadClient& client, const protocol::TerminalId& wallet_terminal,
                     std::uint32_t validity_s, std::uint32_t max_amount_fen);
  bool has_key() const { return grant_.has_value(); }
  const std::optional<protocol::qr::Grant>& grant() const { return grant_; }
  // kRejected without a key or outside the grant's validity.
  Result<Bytes> show(std::int64_t now_epoch2000_s);

 private:
  QrWallet(protocol::Serial8 card, protocol::qr::EcKey key) : card_(card), key_(std::move(key)) {}
  protocol::Serial8 card_;
  protocol::qr::EcKey key_;
  std::optional<protocol::qr::Grant> grant_;
  Bytes grant_signature_;
  std::uint32_t seq_ = 0;
};

enum class QrRefusal : std::uint8_t {
  kMalformed,     // does not decode
  kBadGrant,      // grant not signed by the QR issuer
  kBadSignature,  // payload not signed by the granted phone key
  kGrantExpired,  // the grant is not valid now
  kExpired,       // older than max_age_s
  kFuture,        // made more than future_skew_s ahead of our clock
  kReplayed,      // this (key id, seq) was accepted before
  kOverLimit,     // the fare is above the grant's maximum per payment
  kQueueFull,     // no room to keep the payment until upload
};
const char* qr_refusal_name(QrRefusal r);

struct QrValidatorOptions {
  std::int64_t max_age_s = 60;
  std::int64_t future_skew_s = 30;
  std::size_t seen_max = 200'000;
  std::size_t queue_max = 50'000;
  std::size_t batch_max = 500;
  std::size_t grants_max = 100'000;  // verified grants remembered (cleared when full)
};

struct QrScan {
  std::optional<QrRefusal> refusal;
  std::string detail;
  citycard::wire::QrPayment payment;  // when accepted
  bool ok() const { return !refusal; }
};

struct QrCounters {
  std::uint64_t scans = 0;
  std::uint64_t accepted = 0;
  std::uint64_t refused = 0;
  std::uint64_t uploaded = 0;  // acknowledged by the backend as paid
  std::uint64_t upload_duplicates = 0;
  std::uint64_t upload_rejected = 0;
  std::uint64_t upload_failures = 0;
  std::int64_t acked_amount_fen = 0;  // the declared totals of acknowledged batches
};

class QrValidator {
 public:
  QrValidator(protocol::qr::PublicPoint issuer, protocol::TerminalId terminal,
              QrValidatorOptions options = {});
  // The issuer's key from its certificate, checked against `root_pem` and `ca_pems`.
  static Result<QrValidator> from_certificate(std::string_view issuer_cert_pem,
                                              std::string_view root_pem,
                                              const std::vector<std::string>& ca_pems,
                                              std::int64_t at_unix_s, protocol::TerminalId terminal,
                                              QrValidatorOptions options = {});
  QrValidator(QrValidator&&) noexcept = default;

  QrScan scan(ByteView qr, std::int64_t now_epoch2000_s, std::uint32_t fare_fen);
  void upload(sim::Channel& channel);

  std::size_t queued() const { return queue_.size(); }
  bool in_flight() const { return in_flight_; }
  const QrCounters& counters() const { return counters_; }
  const Status& last_failure() const { return last_failure_; }

 private:
  QrScan refuse(QrRefusal why, std::string detail);
  void forget_old(std::int64_t now_s);

  // Grants whose issuer signature verified, by key id, with the phone's parsed key: a phone
  // shows many codes under one grant, so its two checks cost one verification after the first.
  struct KnownGrant {
    Bytes grant;  // encoded, with its signature appended
    protocol::qr::PublicKey phone_key;
  };
  const KnownGrant* known_grant(const protocol::qr::Payload& p);

  protocol::qr::PublicPoint issuer_;
  std::optional<protocol::qr::PublicKey> issuer_key_;
  std::map<std::uint32_t, KnownGrant> grants_;  // bounded by grants_max
  protocol::TerminalId terminal_;
  QrValidatorOptions options_;
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::int64_t> seen_;  // -> created_s
  std::deque<citycard::wire::QrPayment> queue_;
  std::size_t batch_count_ = 0;  // payments of the batch in flight (front of the queue)
  std::uint64_t batch_no_ = 0;
  Bytes batch_frame_;
  bool in_flight_ = false;
  std::uint64_t next_request_id_ = 1;
  QrCounters counters_;
  Status last_failure_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace citycard::devices
