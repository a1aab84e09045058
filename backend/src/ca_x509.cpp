#include "ca_x509.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <ctime>

namespace citycard::backend::x509 {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using Bio = std::unique_ptr<BIO, BioFree>;

Bio read_bio(std::string_view text) {
  return Bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string drain(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

Status failure(Errc code, const std::string& what) {
  const std::string detail = openssl_errors();
  return Status(code, detail.empty() ? what : what + ": " + detail);
}

struct Asn1IntFree {
  void operator()(ASN1_INTEGER* p) const { ASN1_INTEGER_free(p); }
};
using Asn1Int = std::unique_ptr<ASN1_INTEGER, Asn1IntFree>;

Asn1Int integer_from_hex(const std::string& hex) {
  BIGNUM* bn = nullptr;
  if (BN_hex2bn(&bn, hex.c_str()) == 0) return nullptr;
  Asn1Int out(BN_to_ASN1_INTEGER(bn, nullptr));
  BN_free(bn);
  return out;
}

std::string hex_of(const ASN1_INTEGER* ai) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(ai, nullptr);
  if (bn == nullptr) return {};
  char* h = BN_bn2hex(bn);
  std::string out(h != nullptr ? h : "");
  OPENSSL_free(h);
  BN_free(bn);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::int64_t unix_of(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&tm));
}

Status add_ext(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  if (value.empty()) return Status::ok();
  X509_EXTENSION* ext = X509V3_EXT_nconf_nid(nullptr, ctx, nid, value.c_str());
  if (ext == nullptr) return failure(Errc::kInternal, std::string("extension ") + OBJ_nid2sn(nid));
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return failure(Errc::kInternal, std::string("adding ") + OBJ_nid2sn(nid));
  return Status::ok();
}

}  // namespace

std::string openssl_errors() {
  std::string out;
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

Result<Pkey> generate_key() {
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return failure(Errc::kInternal, "EC P-256 key generation failed");
  return key;
}

Result<Pkey> private_key_from_pem(std::string_view pem) {
  Bio bio = read_bio(pem);
  Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return failure(Errc::kMalformed, "not a PEM private key");
  return key;
}

Result<Pkey> public_key_from_pem(std::string_view pem) {
  Bio bio = read_bio(pem);
  Pkey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return failure(Errc::kMalformed, "not a PEM public key");
  return key;
}

std::string private_key_pem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  return drain(bio.get());
}

std::string public_key_pem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(bio.get(), key);
  return drain(bio.get());
}

bool is_p256(EVP_PKEY* key) {
  if (key == nullptr || !EVP_PKEY_is_a(key, "EC")) return false;
  char group[64] = {};
  std::size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) !=
      1) {
    return false;
  }
  return std::string_view(group, len) == "prime256v1";
}

Result<Cert> cert_from_pem(std::string_view pem) {
  Bio bio = read_bio(pem);
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return failure(Errc::kMalformed, "not a PEM certificate");
  return cert;
}

Result<Cert> cert_from_der(ByteView der) {
  const unsigned char* p = der.data();
  Cert cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert) return failure(Errc::kMalformed, "not a DER certificate");
  return cert;
}

std::string cert_pem(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  return drain(bio.get());
}

Bytes cert_der(X509* cert) {
  unsigned char* buf = nullptr;
  const int n = i2d_X509(cert, &buf);
  Bytes out;
  if (n > 0) out.assign(buf, buf + n);
  OPENSSL_free(buf);
  return out;
}

Result<Crl> crl_from_pem(std::string_view pem) {
  Bio bio = read_bio(pem);
  Crl crl(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
  if (!crl) return failure(Errc::kMalformed, "not a PEM CRL");
  return crl;
}

std::string crl_pem(X509_CRL* crl) {
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_CRL(bio.get(), crl);
  return drain(bio.get());
}

Result<std::string> random_serial_hex() {
  std::uint8_t b[16];
  if (RAND_bytes(b, sizeof b) != 1) return failure(Errc::kInternal, "RAND_bytes");
  b[0] = static_cast<std::uint8_t>((b[0] & 0x7f) | 0x40);  // positive, no leading zero byte
  return to_hex(ByteView(b, sizeof b));
}

std::string serial_hex(X509* cert) {
  return hex_of(X509_get0_serialNumber(cert));
}

Result<Cert> make_cert(const CertSpec& spec, EVP_PKEY* subject_key, X509* issuer,
                       EVP_PKEY* issuer_key) {
  Cert cert(X509_new());
  if (!cert || X509_set_version(cert.get(), 2) != 1) return failure(Errc::kInternal, "X509_new");
  Asn1Int serial = integer_from_hex(spec.serial_hex);
  if (!serial || X509_set_serialNumber(cert.get(), serial.get()) != 1) {
    return failure(Errc::kInternal, "serial number " + spec.serial_hex);
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  for (const auto& [field, value] : spec.subject) {
    if (X509_NAME_add_entry_by_txt(name, field.c_str(), MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1,
                                   0) != 1) {
      return failure(Errc::kInvalidArgument, "subject field " + field + "=" + value);
    }
  }
  if (X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name) !=
          1 ||
      ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<time_t>(spec.not_before_unix_s)) ==
          nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), static_cast<time_t>(spec.not_after_unix_s)) ==
          nullptr ||
      X509_set_pubkey(cert.get(), subject_key) != 1) {
    return failure(Errc::kInternal, "certificate fields");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : cert.get(), cert.get(), nullptr, nullptr, 0);
  for (Status s : {add_ext(cert.get(), &ctx, NID_basic_constraints, spec.basic_constraints),
                   add_ext(cert.get(), &ctx, NID_key_usage, spec.key_usage),
                   add_ext(cert.get(), &ctx, NID_ext_key_usage, spec.extended_key_usage),
                   add_ext(cert.get(), &ctx, NID_subject_key_identifier, "hash"),
                   add_ext(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always"),
                   add_ext(cert.get(), &ctx, NID_subject_alt_name, spec.subject_alt_name)}) {
    if (!s.is_ok()) return s;
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) <= 0) {
    return failure(Errc::kInternal, "signing the certificate");
  }
  return cert;
}

Result<Crl> make_crl(X509* issuer, EVP_PKEY* issuer_key, std::int64_t crl_number,
                     std::int64_t this_update_unix_s, std::int64_t next_update_unix_s,
                     const std::vector<RevokedEntry>& revoked) {
  Crl crl(X509_CRL_new());
  if (!crl || X509_CRL_set_version(crl.get(), 1) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(issuer)) != 1) {
    return failure(Errc::kInternal, "X509_CRL_new");
  }
  auto set_time = [](X509_CRL* c, std::int64_t t, bool last) {
    ASN1_TIME* a = ASN1_TIME_set(nullptr, static_cast<time_t>(t));
    const int ok = last ? X509_CRL_set1_lastUpdate(c, a) : X509_CRL_set1_nextUpdate(c, a);
    ASN1_TIME_free(a);
    return ok == 1;
  };
  if (!set_time(crl.get(), this_update_unix_s, true) ||
      !set_time(crl.get(), next_update_unix_s, false)) {
    return failure(Errc::kInternal, "CRL update times");
  }
  for (const RevokedEntry& e : revoked) {
    X509_REVOKED* r = X509_REVOKED_new();
    Asn1Int serial = integer_from_hex(e.serial_hex);
    ASN1_TIME* when = ASN1_TIME_set(nullptr, static_cast<time_t>(e.revoked_unix_s));
    bool ok = r != nullptr && serial && when != nullptr &&
              X509_REVOKED_set_serialNumber(r, serial.get()) == 1 &&
              X509_REVOKED_set_revocationDate(r, when) == 1;
    ASN1_TIME_free(when);
    if (ok && e.reason != 0) {  // RFC 5280: leave "unspecified" out
      ASN1_ENUMERATED* reason = ASN1_ENUMERATED_new();
      ok = reason != nullptr && ASN1_ENUMERATED_set(reason, e.reason) == 1 &&
           X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, reason, 0, 0) == 1;
      ASN1_ENUMERATED_free(reason);
    }
    if (!ok || X509_CRL_add0_revoked(crl.get(), r) != 1) {
      X509_REVOKED_free(r);
      return failure(Errc::kInternal, "revoked entry " + e.serial_hex);
    }
  }
  Asn1Int number(ASN1_INTEGER_new());
  if (!number || ASN1_INTEGER_set_int64(number.get(), crl_number) != 1 ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0, 0) != 1) {
    return failure(Errc::kInternal, "CRL number");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, nullptr, nullptr, crl.get(), 0);
  X509_EXTENSION* aki =
      X509V3_EXT_nconf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always");
  const bool aki_ok = aki != nullptr && X509_CRL_add_ext(crl.get(), aki, -1) == 1;
  X509_EXTENSION_free(aki);
  if (!aki_ok) return failure(Errc::kInternal, "CRL authority key identifier");
  if (X509_CRL_sort(crl.get()) != 1 || X509_CRL_sign(crl.get(), issuer_key, EVP_sha256()) <= 0) {
    return failure(Errc::kInternal, "signing the CRL");
  }
  return crl;
}

Result<Bytes> sign(EVP_PKEY* key, ByteView data) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::size_t len = 0;
  Bytes sig;
  bool ok = ctx != nullptr && EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestSign(ctx, nullptr, &len, data.data(), data.size()) == 1;
  if (ok) {
    sig.resize(len);
    ok = EVP_DigestSign(ctx, sig.data(), &len, data.data(), data.size()) == 1;
    sig.resize(len);
  }
  EVP_MD_CTX_free(ctx);
  if (!ok) return failure(Errc::kInternal, "signing");
  return sig;
}

bool verify_signature(EVP_PKEY* key, ByteView data, ByteView signature) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok =
      ctx != nullptr && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
      EVP_DigestVerify(ctx, signature.data(), signature.size(), data.data(), data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();  // a bad signature is an answer, not an error to carry along
  return ok;
}

std::vector<std::string> san_uris(X509* cert) {
  std::vector<std::string> out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type != GEN_URI) continue;
    const ASN1_IA5STRING* s = n->d.uniformResourceIdentifier;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<std::size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(names);
  return out;
}

std::string subject_line(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  return drain(bio.get());
}

std::int64_t not_before_unix_s(X509* cert) {
  return unix_of(X509_get0_notBefore(cert));
}

std::int64_t not_after_unix_s(X509* cert) {
  return unix_of(X509_get0_notAfter(cert));
}

Result<std::shared_ptr<const Verifier>> Verifier::create(const std::vector<std::string>& roots_pem,
                                                         const std::vector<std::string>& cas_pem,
                                                         const std::vector<std::string>& crls_pem) {
  std::shared_ptr<Verifier> v(new Verifier());
  v->store_.reset(X509_STORE_new());
  if (!v->store_) return failure(Errc::kInternal, "X509_STORE_new");
  for (const std::string& pem : roots_pem) {
    auto c = cert_from_pem(pem);
    if (!c.is_ok()) return c.status();
    if (X509_STORE_add_cert(v->store_.get(), c->get()) != 1) {
      return failure(Errc::kInternal, "adding a trust anchor");
    }
  }
  for (const std::string& pem : cas_pem) {
    auto c = cert_from_pem(pem);
    if (!c.is_ok()) return c.status();
    v->untrusted_.push_back(std::move(c).value());
  }
  for (const std::string& pem : crls_pem) {
    auto crl = crl_from_pem(pem);
    if (!crl.is_ok()) return crl.status();
    if (X509_STORE_add_crl(v->store_.get(), crl->get()) != 1) {
      return failure(Errc::kInternal, "adding a CRL");
    }
  }
  return std::shared_ptr<const Verifier>(std::move(v));
}

Status Verifier::verify(X509* leaf, std::int64_t at_unix_s) const {
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  STACK_OF(X509)* chain = sk_X509_new_null();
  if (ctx == nullptr || chain == nullptr) {
    X509_STORE_CTX_free(ctx);
    sk_X509_free(chain);
    return failure(Errc::kInternal, "X509_STORE_CTX_new");
  }
  for (const Cert& c : untrusted_) sk_X509_push(chain, c.get());
  Status result;
  if (X509_STORE_CTX_init(ctx, store_.get(), leaf, chain) != 1) {
    result = failure(Errc::kInternal, "X509_STORE_CTX_init");
  } else {
    X509_VERIFY_PARAM* p = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_time(p, static_cast<time_t>(at_unix_s));
    X509_VERIFY_PARAM_set_flags(p, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_X509_STRICT);
    if (X509_verify_cert(ctx) != 1) {
      const int err = X509_STORE_CTX_get_error(ctx);
      result = Status(Errc::kRejected, X509_verify_cert_error_string(err));
      ERR_clear_error();
    }
  }
  X509_STORE_CTX_free(ctx);
  sk_X509_free(chain);  // the certificates belong to untrusted_
  return result;
}

}  // namespace citycard::backend::x509
