// The clearing centre's public-key infrastructure: an offline root, working CAs (one for the
// city, one national), a registration authority (RA), the certificates they issue to readers,
// terminals, servers and card companies, and their revocation lists.
//
//   root (offline, self-signed; CA, pathlen 1; keyCertSign, cRLSign)
//   ├── national CA (CA, pathlen 0)   issues: national reader certificates
//   └── city CA, e.g. "city:3100" (CA, pathlen 0)
//         issues: RA, city reader, terminal, server and card company certificates
//
// Every certificate has basicConstraints (critical), keyUsage (critical), subject and
// authority key identifiers; leaves have extendedKeyUsage (serverAuth for servers, clientAuth
// for the rest) and subjectAltName URIs that say what they are:
//   urn:x-citycard:<role>:<subject id>     e.g. urn:x-citycard:terminal:310000000001
//   urn:x-citycard:curve:<64 hex digits>   the holder's ZeroMQ CURVE public key
// so a CURVE key proven in a ZeroMQ handshake (server.h) is vouched for by a certificate.
// `openssl verify -CAfile root.pem -untrusted city.pem leaf.pem` accepts every chain issued
// here, and with `-crl_check -CRLfile city.crl` refuses a revoked one (ca_test.cpp runs it).
//
// Contract:
// - open() on a database without a PKI creates one: the root key signs the two working CAs and
//   is then handed to the caller (root_key_pem_out) and forgotten. The database keeps the
//   root certificate only: the root is offline, as a real root's key sits in a safe. Later
//   open()s load the working CAs and the RA from the database.
// - A leaf certificate is issued only on a request the RA has approved: approve() checks the
//   request against policy (role, subject id syntax, EC P-256 key, CURVE key where the role
//   connects over ZeroMQ, a registered terminal for a terminal certificate, validity) and signs
//   it; issue() checks that signature against a valid, unrevoked RA certificate before it
//   signs. enrol() is both.
// - Validity: not-before is now by the backend's Calendar (the clock the run uses), not-after
//   is the role's validity later; X.509 times are UTC, converted with the city's UTC offset.
// - revoke() records the revocation and re-signs the issuer's CRL; the verifier() and the CURVE
//   directory() see it at once. The directory learns a certificate as it is issued, before a
//   caller's enclosing transaction commits (a certificate signed is issued, stored or not). CRLs are valid for crl_validity_days and re-signed when older
//   than crl_refresh_days (refresh_crls_if_due(), the server calls it).
// - Limits: PkiOptions::max_certificates, subject ids of at most max_subject_id_bytes
//   characters from [A-Za-z0-9._:-], validity at most max_leaf_validity_days.
//
// Threads: a CertificateAuthority is used by one thread at a time (the Backend's). The verifier
// snapshots it hands out and its CurveDirectory are thread-safe (the server's ZAP and I/O
// threads read them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "citycard/backend/calendar.h"
#include "citycard/backend/store.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"
#include "citycard/sim/zmq_transport.h"

namespace citycard::backend {

enum class CertRole : std::uint8_t {
  kRoot = 0,
  kWorkingCa = 1,
  kRa = 2,
  kReaderNational = 3,  // a home or desk reader's certificate under the national CA...
  kReaderCity = 4,      // ...and its second one under the city CA (readers carry both)
  kTerminal = 5,        // bus validator, gate, POS: subject id = terminal id, 12 hex digits
  kServer = 6,          // a clearing centre server: subject id = its DNS name
  kCardCompany = 7,     // a card manufacturer or personaliser
};
const char* cert_role_name(CertRole role);  // "terminal", "reader-national"...
std::optional<CertRole> cert_role_from_name(std::string_view name);

// RFC 5280 CRLReason codes used here.
enum class RevocationReason : int {
  kUnspecified = 0,
  kKeyCompromise = 1,
  kAffiliationChanged = 3,
  kSuperseded = 4,
  kCessationOfOperation = 5,
};

struct PkiOptions {
  std::string city_code = "3100";
  std::string organisation = "citycard";
  // X.509 times are UTC; the Calendar counts the city's local time (China Standard Time).
  std::int64_t city_utc_offset_s = 8 * 3600;
  int root_validity_days = 20 * 365;
  int working_ca_validity_days = 10 * 365;
  int leaf_validity_days = 2 * 365;  // when a request names none
  int max_leaf_validity_days = 5 * 365;
  int crl_validity_days = 7;
  int crl_refresh_days = 1;
  std::size_t max_subject_id_bytes = 64;
  // The CURVE directory keeps each certificate that binds a CURVE key in memory (about 1 KiB
  // of PEM each): 200,000 is a big city's readers and terminals in 200 MiB.
  std::size_t max_certificates = 200'000;
};

// A new EC P-256 key pair, for an applicant that has none (tests, the server's own identity).
struct KeyPairPem {
  std::string private_pem;  // PKCS#8
  std::string public_pem;   // SubjectPublicKeyInfo
};
Result<KeyPairPem> generate_key_pair();

// What an applicant asks for. The applicant keeps its private key; the request carries the
// public one.
struct CertRequest {
  CertRole role = CertRole::kTerminal;
  std::string subject_id;
  std::string public_key_pem;
  std::optional<sim::CurveKey> curve_key;  // required for terminals, readers and servers
  std::optional<int> validity_days;
};

// The RA's approval of one request: its signature over the request, and which RA signed.
struct RaApproval {
  std::string ra_serial_hex;
  Bytes signature;
};

struct CertificateInfo {
  std::string serial_hex;  // lower-case hex, no leading zeros
  CertRole role = CertRole::kTerminal;
  std::string subject;  // RFC 2253
  std::string subject_id;
  std::string issuer;  // the authority's name: "root", "national", "city:3100"
  std::int64_t not_before_unix_s = 0;
  std::int64_t not_after_unix_s = 0;
  std::optional<sim::CurveKey> curve_key;
  bool revoked = false;
  std::string pem;
};

// Checks certificates against the root, the working CAs and their CRLs, at a given time. Made
// from PEM text, so a terminal that has downloaded the root, its city's CA certificate and the
// CRL checks the server's certificate the same way the server checks terminals'. Immutable and
// thread-safe.
class CertificateVerifier {
 public:
  static Result<std::shared_ptr<const CertificateVerifier>> create(
      const std::string& root_pem, const std::vector<std::string>& working_cas_pem,
      const std::vector<std::string>& crls_pem);
  ~CertificateVerifier();

  // The certificate's chain, validity at `at_unix_s` and revocation; then that it is a
  // leaf of `role` (by its subjectAltName). kRejected names what failed; kMalformed for text
  // that is no certificate.
  Result<CertificateInfo> verify(std::string_view pem, CertRole role, std::int64_t at_unix_s) const;

 private:
  struct Impl;
  explicit CertificateVerifier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The CURVE keys the ZeroMQ server admits: each bound to the certificates that carry it.
// Thread-safe: the CertificateAuthority writes, the server's ZAP and I/O threads read.
class CurveDirectory {
 public:
  struct Entry {
    std::string serial_hex;
    CertRole role = CertRole::kTerminal;
    std::string subject_id;
    std::string pem;
  };
  // The holder admitted for `key` now, as "<role>:<subject id>#<serial>", or kRejected saying
  // why not (no certificate binds the key; each one that does is revoked, expired, or does not
  // chain).
  Result<std::string> admit(const sim::CurveKey& key, std::int64_t at_unix_s) const;
  // For a holder admit() returned: is its certificate still good (not revoked, not expired)?
  Status still_valid(const std::string& user_id, std::int64_t at_unix_s) const;

  // Writers (the CertificateAuthority).
  void add(const sim::CurveKey& key, Entry entry);
  void set_verifier(std::shared_ptr<const CertificateVerifier> verifier);
  void mark_revoked(const std::string& serial_hex);
  std::size_t size() const;

 private:
  mutable std::mutex mu_;
  std::map<sim::CurveKey, std::vector<Entry>> entries_;
  std::map<std::string, std::int64_t> not_after_;  // by serial
  std::map<std::string, bool> revoked_;            // by serial
  std::shared_ptr<const CertificateVerifier> verifier_;
};

// The server's own identity: its CURVE key pair and the certificate that binds the public
// half, kept in the database so a restarted server is the same server to its terminals.
struct ServerIdentity {
  sim::CurveKeyPair curve_keys;
  CertificateInfo certificate;
  std::string private_key_pem;
};

class CertificateAuthority {
 public:
  // See the contract above. `root_key_pem_out` receives the root's private key when the PKI is
  // created now (else it is left empty); it may be null only for a database that has a PKI.
  static Result<std::unique_ptr<CertificateAuthority>> open(Store& store, const Calendar& calendar,
                                                            PkiOptions options,
                                                            std::string* root_key_pem_out);
  ~CertificateAuthority();

  const std::string& root_pem() const;
  const std::string& city_ca_pem() const;
  const std::string& national_ca_pem() const;
  const std::string& ra_pem() const;
  // The current signed CRL of "city:<code>" or "national".
  Result<std::string> crl_pem(std::string_view authority) const;

  Result<RaApproval> approve(const CertRequest& request);
  Result<CertificateInfo> issue(const CertRequest& request, const RaApproval& approval);
  Result<CertificateInfo> enrol(const CertRequest& request);  // approve, then issue

  // kNotFound for a serial never issued; revoking twice is ok (the first reason stands).
  Status revoke(const std::string& serial_hex, RevocationReason reason);
  Result<CertificateInfo> certificate(const std::string& serial_hex) const;
  Result<std::int64_t> certificate_count() const;

  // A certificate issued by this PKI elsewhere (a backup, another instance of the same city
  // CA) to be known here: it must verify now and bind a CURVE key to be useful. Forged,
  // foreign, revoked or expired certificates are refused (kRejected).
  Result<CertificateInfo> import(std::string_view pem, CertRole role);

  // Loads the server identity `name` (a DNS name), creating it the first time.
  Result<ServerIdentity> server_identity(const std::string& name);

  std::shared_ptr<const CertificateVerifier> verifier() const { return verifier_; }
  std::shared_ptr<CurveDirectory> directory() const { return directory_; }
  // Re-signs CRLs older than crl_refresh_days; cheap when none is (the server calls it often).
  Status refresh_crls_if_due();

  // The Calendar's now as X.509 (UTC) seconds.
  std::int64_t now_unix_s() const;
  const PkiOptions& options() const { return options_; }

 private:
  struct Authority;
  CertificateAuthority(Store& store, const Calendar& calendar, PkiOptions options);
  Status create(std::string* root_key_pem_out);
  Status load();
  Status load_directory();
  // Re-signs the CRLs that are due; rebuilds the verifier (and hands it to the directory) when
  // one was, or when `rebuild`.
  Status publish(bool rebuild);
  bool crl_due(const Authority& a) const;
  Result<std::string> sign_crl(Authority& a, bool force);
  Authority* authority(std::string_view name);
  Result<CertificateInfo> record(const std::string& pem, const std::string& issuer, CertRole role,
                                 const std::string& subject_id,
                                 const std::optional<sim::CurveKey>& curve_key);
  Status check_request(const CertRequest& request) const;

  Store& store_;
  const Calendar& calendar_;
  PkiOptions options_;
  std::string root_pem_;
  std::vector<std::unique_ptr<Authority>> authorities_;  // national, city
  std::string ra_serial_;
  std::string ra_pem_;
  std::string ra_key_pem_;
  std::shared_ptr<const CertificateVerifier> verifier_;
  std::shared_ptr<CurveDirectory> directory_;
};

}  // namespace citycard::backend
