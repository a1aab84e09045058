#include "citycard/protocol/qr.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <cstring>

namespace citycard::protocol::qr {

namespace {

void put_u64be(Bytes& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
std::uint64_t get_u64be(ByteView in, std::size_t off) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = v << 8 | in[off + i];
  return v;
}

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

// The public key of a point, for verification.
Pkey pkey_from_point(const PublicPoint& point) {
  OSSL_PARAM params[3];
  char group[] = "prime256v1";
  params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
  params[1] = OSSL_PARAM_construct_octet_string(
      OSSL_PKEY_PARAM_PUB_KEY, const_cast<std::uint8_t*>(point.data()), point.size());
  params[2] = OSSL_PARAM_construct_end();
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
  if (!ctx) return nullptr;
  EVP_PKEY* key = nullptr;
  if (EVP_PKEY_fromdata_init(ctx) <= 0 ||
      EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
    key = nullptr;
  }
  EVP_PKEY_CTX_free(ctx);
  return Pkey(key);
}

std::optional<PublicPoint> point_of(EVP_PKEY* key) {
  char group[64] = {};
  std::size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) !=
          1 ||
      std::strcmp(group, "prime256v1") != 0) {
    return std::nullopt;
  }
  PublicPoint p{};
  std::size_t out = 0;
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, p.data(), p.size(), &out) !=
          1 ||
      out != p.size() || p[0] != 0x04) {
    return std::nullopt;
  }
  return p;
}

}  // namespace

// ---- formats ----

Bytes Grant::encode() const {
  Bytes b;
  b.reserve(kSize);
  put_u32be(b, key_id);
  put_bytes(b, card);
  put_bytes(b, phone_key);
  put_u64be(b, static_cast<std::uint64_t>(valid_from_s));
  put_u64be(b, static_cast<std::uint64_t>(valid_to_s));
  put_u32be(b, max_amount_fen);
  return b;
}

std::optional<Grant> Grant::decode(ByteView b) {
  if (b.size() != kSize) return std::nullopt;
  Grant g;
  g.key_id = get_u32be(b, 0);
  std::memcpy(g.card.data(), b.data() + 4, 8);
  std::memcpy(g.phone_key.data(), b.data() + 12, 65);
  g.valid_from_s = static_cast<std::int64_t>(get_u64be(b, 77));
  g.valid_to_s = static_cast<std::int64_t>(get_u64be(b, 85));
  g.max_amount_fen = get_u32be(b, 93);
  if (g.phone_key[0] != 0x04 || g.valid_to_s < g.valid_from_s) return std::nullopt;
  return g;
}

Bytes Payload::signed_part() const {
  Bytes b = grant.encode();
  b.push_back(static_cast<std::uint8_t>(grant_signature.size()));
  put_bytes(b, grant_signature);
  put_u32be(b, seq);
  put_u64be(b, static_cast<std::uint64_t>(created_s));
  return b;
}

Bytes Payload::encode() const {
  Bytes b = signed_part();
  b.push_back(static_cast<std::uint8_t>(signature.size()));
  put_bytes(b, signature);
  return b;
}

Result<Payload> Payload::decode(ByteView b) {
  auto bad = [](const std::string& why) { return Result<Payload>(Errc::kMalformed, "QR: " + why); };
  if (b.size() < Grant::kSize + 1) return bad("too short");
  Payload p;
  auto g = Grant::decode(b.subspan(0, Grant::kSize));
  if (!g) return bad("grant does not decode");
  p.grant = *g;
  std::size_t off = Grant::kSize;
  const std::size_t gs = b[off++];
  if (gs == 0 || gs > kMaxSignatureBytes || b.size() < off + gs + 12 + 1) {
    return bad("grant signature length");
  }
  p.grant_signature.assign(b.begin() + static_cast<std::ptrdiff_t>(off),
                           b.begin() + static_cast<std::ptrdiff_t>(off + gs));
  off += gs;
  p.seq = get_u32be(b, off);
  off += 4;
  p.created_s = static_cast<std::int64_t>(get_u64be(b, off));
  off += 8;
  const std::size_t ss = b[off++];
  if (ss == 0 || ss > kMaxSignatureBytes || b.size() != off + ss) return bad("signature length");
  p.signature.assign(b.begin() + static_cast<std::ptrdiff_t>(off), b.end());
  return p;
}

// ---- keys ----

struct EcKey::Impl {
  Pkey key;
};

EcKey::EcKey(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EcKey::EcKey(EcKey&&) noexcept = default;
EcKey& EcKey::operator=(EcKey&&) noexcept = default;
EcKey::~EcKey() = default;

Result<EcKey> EcKey::generate() {
  EVP_PKEY* k = EVP_EC_gen("prime256v1");
  if (!k) return Status(Errc::kInternal, "EC key generation: " + openssl_error());
  auto impl = std::make_unique<Impl>();
  impl->key.reset(k);
  return EcKey(std::move(impl));
}

Result<EcKey> EcKey::from_private_pem(std::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) return Status(Errc::kInternal, "BIO");
  EVP_PKEY* k = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!k) return Status(Errc::kMalformed, "private key PEM: " + openssl_error());
  Pkey key(k);
  if (!point_of(k)) return Status(Errc::kMalformed, "not a P-256 key");
  auto impl = std::make_unique<Impl>();
  impl->key = std::move(key);
  return EcKey(std::move(impl));
}

PublicPoint EcKey::public_point() const {
  return *point_of(impl_->key.get());
}

Result<Bytes> EcKey::sign(ByteView message) const {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx) return Status(Errc::kInternal, "EVP_MD_CTX");
  Bytes sig(kMaxSignatureBytes);
  std::size_t len = sig.size();
  const bool ok = EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, impl_->key.get()) == 1 &&
                  EVP_DigestSign(ctx, sig.data(), &len, message.data(), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) return Status(Errc::kInternal, "ECDSA sign: " + openssl_error());
  sig.resize(len);
  return sig;
}

bool verify(const PublicPoint& key, ByteView message, ByteView der_signature) {
  if (der_signature.empty() || der_signature.size() > kMaxSignatureBytes) return false;
  Pkey pkey = pkey_from_point(key);
  if (!pkey) {
    ERR_clear_error();
    return false;
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx) return false;
  const bool ok = EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, pkey.get()) == 1 &&
                  EVP_DigestVerify(ctx, der_signature.data(), der_signature.size(), message.data(),
                                   message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

struct PublicKey::Impl {
  Pkey key;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

PublicKey::PublicKey(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PublicKey::PublicKey(PublicKey&&) noexcept = default;
PublicKey& PublicKey::operator=(PublicKey&&) noexcept = default;
PublicKey::~PublicKey() = default;

std::optional<PublicKey> PublicKey::from_point(const PublicPoint& point) {
  Pkey key = pkey_from_point(point);
  if (!key) {
    ERR_clear_error();
    return std::nullopt;
  }
  auto impl = std::make_unique<Impl>();
  impl->key = std::move(key);
  if (!impl->ctx) return std::nullopt;
  return PublicKey(std::move(impl));
}

bool PublicKey::verify(ByteView message, ByteView der_signature) const {
  if (der_signature.empty() || der_signature.size() > kMaxSignatureBytes) return false;
  EVP_MD_CTX_reset(impl_->ctx);
  const bool ok =
      EVP_DigestVerifyInit(impl_->ctx, nullptr, EVP_sha256(), nullptr, impl_->key.get()) == 1 &&
      EVP_DigestVerify(impl_->ctx, der_signature.data(), der_signature.size(), message.data(),
                       message.size()) == 1;
  ERR_clear_error();
  return ok;
}

// ---- certificates ----

namespace {
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

X509Ptr read_cert(std::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) return nullptr;
  X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return X509Ptr(x);
}
}  // namespace

Result<PublicPoint> verify_certificate(std::string_view leaf_pem, std::string_view root_pem,
                                       const std::vector<std::string>& intermediate_pems,
                                       std::int64_t at_unix_s) {
  X509Ptr leaf = read_cert(leaf_pem);
  X509Ptr root = read_cert(root_pem);
  if (!leaf || !root) return Status(Errc::kMalformed, "certificate PEM: " + openssl_error());
  std::vector<X509Ptr> mids;
  STACK_OF(X509)* chain = sk_X509_new_null();
  for (const std::string& p : intermediate_pems) {
    X509Ptr x = read_cert(p);
    if (!x) {
      sk_X509_free(chain);
      return Status(Errc::kMalformed, "intermediate PEM: " + openssl_error());
    }
    sk_X509_push(chain, x.get());
    mids.push_back(std::move(x));
  }
  X509_STORE* store = X509_STORE_new();
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  Status result = Status::ok();
  if (!store || !ctx || X509_STORE_add_cert(store, root.get()) != 1 ||
      X509_STORE_CTX_init(ctx, store, leaf.get(), chain) != 1) {
    result = Status(Errc::kInternal, "X509 store: " + openssl_error());
  } else {
    X509_STORE_CTX_set_time(ctx, 0, static_cast<time_t>(at_unix_s));
    if (X509_verify_cert(ctx) != 1) {
      result =
          Status(Errc::kRejected, std::string("certificate does not verify: ") +
                                      X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    }
  }
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  sk_X509_free(chain);
  if (!result) return result;
  EVP_PKEY* key = X509_get0_pubkey(leaf.get());
  if (!key) return Status(Errc::kMalformed, "certificate has no public key");
  auto point = point_of(key);
  if (!point) return Status(Errc::kMalformed, "certificate key is not P-256");
  return *point;
}

}  // namespace citycard::protocol::qr
