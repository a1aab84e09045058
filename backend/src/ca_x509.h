// The OpenSSL side of the CA (ca.h): owning handles, key pairs, certificate and CRL building,
// PEM and DER conversions, chain verification. Private to the backend; everything here is
// stateless and reentrant (OpenSSL 3 objects are not shared between calls except the
// immutable ones a Verifier holds).
//
// Keys are EC P-256 and signatures ECDSA with SHA-256: what every TLS stack, HSM and smart card
// middleware a terminal vendor uses can check. Private keys and serial numbers come from
// OpenSSL's DRBG (the operating system's entropy): a key that followed from the run's printed
// seed would be no key, and nothing a run's trace depends on is derived from them.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"

namespace citycard::backend::x509 {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct CrlFree {
  void operator()(X509_CRL* p) const { X509_CRL_free(p); }
};
struct StoreFree {
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;
using Crl = std::unique_ptr<X509_CRL, CrlFree>;

// OpenSSL's error queue as text, emptied; "" when it is empty.
std::string openssl_errors();

Result<Pkey> generate_key();
Result<Pkey> private_key_from_pem(std::string_view pem);
Result<Pkey> public_key_from_pem(std::string_view pem);
std::string private_key_pem(EVP_PKEY* key);
std::string public_key_pem(EVP_PKEY* key);
// True for an EC key on P-256: the only kind this CA certifies.
bool is_p256(EVP_PKEY* key);

Result<Cert> cert_from_pem(std::string_view pem);
Result<Cert> cert_from_der(ByteView der);
std::string cert_pem(X509* cert);
Bytes cert_der(X509* cert);
Result<Crl> crl_from_pem(std::string_view pem);
std::string crl_pem(X509_CRL* crl);

// A fresh positive 128-bit serial number, as lower-case hex (no leading zero bytes).
Result<std::string> random_serial_hex();
std::string serial_hex(X509* cert);

// What goes into a certificate. Extensions are written in OpenSSL's configuration syntax
// ("critical,CA:TRUE,pathlen:0"); an empty string leaves the extension out.
struct CertSpec {
  std::string serial_hex;
  std::vector<std::pair<std::string, std::string>> subject;  // (field, value): C, O, OU, CN
  std::int64_t not_before_unix_s = 0;
  std::int64_t not_after_unix_s = 0;
  std::string basic_constraints;
  std::string key_usage;
  std::string extended_key_usage;
  std::string subject_alt_name;
};

// Signs `subject_key` into a certificate with `issuer_key`; `issuer` null for a self-signed
// one. Adds the subject and authority key identifiers.
Result<Cert> make_cert(const CertSpec& spec, EVP_PKEY* subject_key, X509* issuer,
                       EVP_PKEY* issuer_key);

struct RevokedEntry {
  std::string serial_hex;
  std::int64_t revoked_unix_s = 0;
  int reason = 0;  // RFC 5280 CRLReason
};

// A v2 CRL signed by `issuer_key`, with a CRL number and the authority key identifier.
Result<Crl> make_crl(X509* issuer, EVP_PKEY* issuer_key, std::int64_t crl_number,
                     std::int64_t this_update_unix_s, std::int64_t next_update_unix_s,
                     const std::vector<RevokedEntry>& revoked);

// ECDSA-SHA256 over `data`, and its check.
Result<Bytes> sign(EVP_PKEY* key, ByteView data);
bool verify_signature(EVP_PKEY* key, ByteView data, ByteView signature);

// The subject alternative name URIs of a certificate.
std::vector<std::string> san_uris(X509* cert);
std::string subject_line(X509* cert);  // RFC 2253, "CN=...,OU=...,O=...,C=CN"
std::int64_t not_before_unix_s(X509* cert);
std::int64_t not_after_unix_s(X509* cert);

// Verifies `leaf` against a trust anchor, untrusted intermediates and CRLs, at a given time,
// checking revocation of the leaf (X509_V_FLAG_CRL_CHECK: the leaf's issuer must have a CRL).
// Immutable once made: verify() may run on several threads at once.
class Verifier {
 public:
  static Result<std::shared_ptr<const Verifier>> create(const std::vector<std::string>& roots_pem,
                                                        const std::vector<std::string>& cas_pem,
                                                        const std::vector<std::string>& crls_pem);
  // ok, or kRejected with OpenSSL's reason ("certificate revoked", "unable to get local
  // issuer certificate", "certificate has expired"...).
  Status verify(X509* leaf, std::int64_t at_unix_s) const;

 private:
  Verifier() = default;
  std::unique_ptr<X509_STORE, StoreFree> store_;
  std::vector<Cert> untrusted_;
};

}  // namespace citycard::backend::x509
