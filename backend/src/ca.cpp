#include "citycard/backend/ca.h"

#include <algorithm>
#include <utility>

#include "ca_x509.h"

namespace citycard::backend {
namespace {

constexpr std::int64_t kDayS = 86'400;
constexpr std::int64_t kUnixAtEpoch2000 = 946'684'800;
constexpr std::string_view kUrnPrefix = "urn:x-citycard:";
constexpr std::string_view kCurveUrn = "urn:x-citycard:curve:";
constexpr std::string_view kRoot = "root";
constexpr std::string_view kNational = "national";

struct Profile {
  const char* key_usage;
  const char* extended_key_usage;
  bool needs_curve;  // connects over ZeroMQ
  bool national;     // issued by the national CA
};

Profile profile(CertRole role) {
  switch (role) {
    case CertRole::kRa:
      return {"critical,digitalSignature,nonRepudiation", "clientAuth", false, false};
    case CertRole::kReaderNational:
      return {"critical,digitalSignature,keyAgreement", "clientAuth", true, true};
    case CertRole::kReaderCity:
      return {"critical,digitalSignature,keyAgreement", "clientAuth", true, false};
    case CertRole::kTerminal:
      return {"critical,digitalSignature,keyAgreement", "clientAuth", true, false};
    case CertRole::kServer:
      return {"critical,digitalSignature,keyAgreement", "serverAuth", true, false};
    case CertRole::kCardCompany:
      return {"critical,digitalSignature,nonRepudiation", "clientAuth", false, false};
    case CertRole::kRoot:
    case CertRole::kWorkingCa:
      break;
  }
  return {"critical,keyCertSign,cRLSign", "", false, false};
}

bool is_leaf(CertRole role) {
  return role != CertRole::kRoot && role != CertRole::kWorkingCa;
}

bool id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

std::string curve_hex(const sim::CurveKey& k) {
  return to_hex(ByteView(k.data(), k.size()));
}

std::optional<sim::CurveKey> curve_from_hex(std::string_view hex) {
  Bytes b;
  if (hex.size() != 64 || !parse_hex(hex, b) || b.size() != 32) return std::nullopt;
  sim::CurveKey k{};
  std::copy(b.begin(), b.end(), k.begin());
  return k;
}

// The role, subject id and CURVE key a certificate's subjectAltName URIs state.
struct SanFacts {
  std::optional<CertRole> role;
  std::string subject_id;
  std::optional<sim::CurveKey> curve_key;
};

SanFacts san_facts(X509* cert) {
  SanFacts f;
  for (const std::string& uri : x509::san_uris(cert)) {
    const std::string_view u(uri);
    if (u.substr(0, kCurveUrn.size()) == kCurveUrn) {
      f.curve_key = curve_from_hex(u.substr(kCurveUrn.size()));
    } else if (u.substr(0, kUrnPrefix.size()) == kUrnPrefix) {
      const std::string_view rest = u.substr(kUrnPrefix.size());
      const std::size_t colon = rest.find(':');
      if (colon == std::string_view::npos) continue;
      if (auto role = cert_role_from_name(rest.substr(0, colon))) {
        f.role = role;
        f.subject_id = std::string(rest.substr(colon + 1));
      }
    }
  }
  return f;
}

std::string authority_name_of(X509* ca) {
  const int i =
      X509_NAME_get_index_by_NID(X509_get_subject_name(ca), NID_organizationalUnitName, -1);
  if (i < 0) return {};
  const ASN1_STRING* s =
      X509_NAME_ENTRY_get_data(X509_NAME_get_entry(X509_get_subject_name(ca), i));
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<std::size_t>(ASN1_STRING_length(s)));
}

// The bytes the RA signs: every field of the request, each on its own line.
Bytes approval_input(const CertRequest& r) {
  std::string s = "citycard RA approval v1\n";
  s += cert_role_name(r.role);
  s += "\n" + r.subject_id + "\n" + r.public_key_pem + "\n";
  s += r.curve_key ? curve_hex(*r.curve_key) : std::string("-");
  s += "\n" + std::to_string(r.validity_days.value_or(0)) + "\n";
  return Bytes(s.begin(), s.end());
}

}  // namespace

const char* cert_role_name(CertRole role) {
  switch (role) {
    case CertRole::kRoot:
      return "root";
    case CertRole::kWorkingCa:
      return "working-ca";
    case CertRole::kRa:
      return "ra";
    case CertRole::kReaderNational:
      return "reader-national";
    case CertRole::kReaderCity:
      return "reader-city";
    case CertRole::kTerminal:
      return "terminal";
    case CertRole::kServer:
      return "server";
    case CertRole::kCardCompany:
      return "card-company";
  }
  return "unknown";
}

std::optional<CertRole> cert_role_from_name(std::string_view name) {
  for (int i = 0; i <= static_cast<int>(CertRole::kCardCompany); ++i) {
    const auto role = static_cast<CertRole>(i);
    if (name == cert_role_name(role)) return role;
  }
  return std::nullopt;
}

Result<KeyPairPem> generate_key_pair() {
  auto key = x509::generate_key();
  if (!key.is_ok()) return key.status();
  return KeyPairPem{x509::private_key_pem(key->get()), x509::public_key_pem(key->get())};
}

// ---- CertificateVerifier ---------------------------------------------------------------------

struct CertificateVerifier::Impl {
  std::shared_ptr<const x509::Verifier> verifier;
  std::vector<std::pair<std::string, x509::Cert>> authorities;  // (name, certificate)
};

CertificateVerifier::CertificateVerifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CertificateVerifier::~CertificateVerifier() = default;

Result<std::shared_ptr<const CertificateVerifier>> CertificateVerifier::create(
    const std::string& root_pem, const std::vector<std::string>& working_cas_pem,
    const std::vector<std::string>& crls_pem) {
  auto impl = std::make_unique<Impl>();
  auto v = x509::Verifier::create({root_pem}, working_cas_pem, crls_pem);
  if (!v.is_ok()) return v.status();
  impl->verifier = std::move(v).value();
  for (const std::string& pem : working_cas_pem) {
    auto c = x509::cert_from_pem(pem);
    if (!c.is_ok()) return c.status();
    std::string name = authority_name_of(c->get());
    impl->authorities.emplace_back(std::move(name), std::move(c).value());
  }
  return std::shared_ptr<const CertificateVerifier>(new CertificateVerifier(std::move(impl)));
}

Result<CertificateInfo> CertificateVerifier::verify(std::string_view pem, CertRole role,
                                                    std::int64_t at_unix_s) const {
  auto cert = x509::cert_from_pem(pem);
  if (!cert.is_ok()) return cert.status();
  X509* c = cert->get();
  const std::string who = x509::subject_line(c) + " (serial " + x509::serial_hex(c) + ")";
  if (Status s = impl_->verifier->verify(c, at_unix_s); !s.is_ok()) {
    return Status(Errc::kRejected, "certificate " + who + ": " + s.message());
  }
  const SanFacts f = san_facts(c);
  if (!f.role || *f.role != role) {
    return Status(Errc::kRejected, "certificate " + who + " is " +
                                       (f.role ? std::string("a ") + cert_role_name(*f.role)
                                               : std::string("not a citycard")) +
                                       " certificate, not a " + cert_role_name(role) + " one");
  }
  // A leaf must not be a CA, and must be for the use its role has.
  const int purpose = role == CertRole::kServer ? X509_PURPOSE_SSL_SERVER : X509_PURPOSE_SSL_CLIENT;
  if (X509_check_ca(c) != 0 || X509_check_purpose(c, purpose, 0) != 1) {
    return Status(Errc::kRejected, "certificate " + who + " is not a " + cert_role_name(role) +
                                       " leaf (basicConstraints or extendedKeyUsage)");
  }
  CertificateInfo info;
  info.serial_hex = x509::serial_hex(c);
  info.role = role;
  info.subject = x509::subject_line(c);
  info.subject_id = f.subject_id;
  for (const auto& [name, ca] : impl_->authorities) {
    if (X509_check_issued(ca.get(), c) == X509_V_OK) info.issuer = name;
  }
  info.not_before_unix_s = x509::not_before_unix_s(c);
  info.not_after_unix_s = x509::not_after_unix_s(c);
  info.curve_key = f.curve_key;
  info.pem = std::string(pem);
  return info;
}

// ---- CurveDirectory --------------------------------------------------------------------------

Result<std::string> CurveDirectory::admit(const sim::CurveKey& key, std::int64_t at_unix_s) const {
  std::vector<Entry> candidates;
  std::shared_ptr<const CertificateVerifier> verifier;
  std::map<std::string, bool> revoked;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      return Status(Errc::kRejected, "no certificate binds CURVE key " + sim::z85_encode(key));
    }
    candidates = it->second;
    verifier = verifier_;
    for (const Entry& e : candidates) revoked[e.serial_hex] = revoked_.count(e.serial_hex) != 0;
  }
  if (!verifier) return Status(Errc::kUnavailable, "the PKI is not loaded");
  // Verification (signatures, CRL) runs outside the lock: the I/O thread must not wait on it.
  std::string reasons;
  for (auto e = candidates.rbegin(); e != candidates.rend(); ++e) {
    Status why;
    if (revoked[e->serial_hex]) {
      why = Status(Errc::kRejected, "certificate " + e->serial_hex + " is revoked");
    } else if (auto v = verifier->verify(e->pem, e->role, at_unix_s); !v.is_ok()) {
      why = v.status();
    } else {
      return std::string(cert_role_name(e->role)) + ":" + e->subject_id + "#" + e->serial_hex;
    }
    if (!reasons.empty()) reasons += "; ";
    reasons += why.message();
  }
  return Status(Errc::kRejected, reasons);
}

Status CurveDirectory::still_valid(const std::string& user_id, std::int64_t at_unix_s) const {
  const std::size_t hash = user_id.rfind('#');
  if (hash == std::string::npos) return Status(Errc::kRejected, "unknown peer " + user_id);
  const std::string serial = user_id.substr(hash + 1);
  std::lock_guard<std::mutex> lock(mu_);
  if (revoked_.count(serial) != 0) {
    return Status(Errc::kRejected,
                  "certificate " + serial + " of " + user_id.substr(0, hash) + " has been revoked");
  }
  auto it = not_after_.find(serial);
  if (it == not_after_.end()) return Status(Errc::kRejected, "unknown certificate " + serial);
  if (at_unix_s > it->second) {
    return Status(Errc::kRejected,
                  "certificate " + serial + " of " + user_id.substr(0, hash) + " has expired");
  }
  return Status::ok();
}

void CurveDirectory::add(const sim::CurveKey& key, Entry entry) {
  auto cert = x509::cert_from_pem(entry.pem);
  std::lock_guard<std::mutex> lock(mu_);
  not_after_[entry.serial_hex] = cert.is_ok() ? x509::not_after_unix_s(cert->get()) : 0;
  entries_[key].push_back(std::move(entry));
}

void CurveDirectory::set_verifier(std::shared_ptr<const CertificateVerifier> verifier) {
  std::lock_guard<std::mutex> lock(mu_);
  verifier_ = std::move(verifier);
}

void CurveDirectory::mark_revoked(const std::string& serial_hex) {
  std::lock_guard<std::mutex> lock(mu_);
  revoked_[serial_hex] = true;
}

std::size_t CurveDirectory::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return not_after_.size();
}

// ---- CertificateAuthority --------------------------------------------------------------------

struct CertificateAuthority::Authority {
  std::string name;  // "national", "city:<code>"
  std::string cert_pem;
  x509::Cert cert;
  x509::Pkey key;
  std::int64_t crl_number = 0;
  std::string crl_pem;
  std::int64_t crl_this_update_s = 0;
};

CertificateAuthority::CertificateAuthority(Store& store, const Calendar& calendar,
                                           PkiOptions options)
    : store_(store),
      calendar_(calendar),
      options_(std::move(options)),
      directory_(std::make_shared<CurveDirectory>()) {}

CertificateAuthority::~CertificateAuthority() = default;

std::int64_t CertificateAuthority::now_unix_s() const {
  return calendar_.now_epoch2000_s() + kUnixAtEpoch2000 - options_.city_utc_offset_s;
}

const std::string& CertificateAuthority::root_pem() const {
  return root_pem_;
}
const std::string& CertificateAuthority::national_ca_pem() const {
  return authorities_[0]->cert_pem;
}
const std::string& CertificateAuthority::city_ca_pem() const {
  return authorities_[1]->cert_pem;
}
const std::string& CertificateAuthority::ra_pem() const {
  return ra_pem_;
}

CertificateAuthority::Authority* CertificateAuthority::authority(std::string_view name) {
  for (auto& a : authorities_) {
    if (a->name == name) return a.get();
  }
  return nullptr;
}

Result<std::string> CertificateAuthority::crl_pem(std::string_view authority_name) const {
  for (const auto& a : authorities_) {
    if (a->name == authority_name) return a->crl_pem;
  }
  return Status(Errc::kNotFound, "no authority " + std::string(authority_name));
}

Result<std::unique_ptr<CertificateAuthority>> CertificateAuthority::open(
    Store& store, const Calendar& calendar, PkiOptions options, std::string* root_key_pem_out) {
  if (options.city_code.size() != 4 ||
      !std::all_of(options.city_code.begin(), options.city_code.end(),
                   [](char c) { return c >= '0' && c <= '9'; })) {
    return Status(Errc::kInvalidArgument, "PKI city code must be 4 digits");
  }
  if (options.leaf_validity_days < 1 ||
      options.leaf_validity_days > options.max_leaf_validity_days ||
      options.crl_validity_days < 1 || options.crl_refresh_days < 1 ||
      options.crl_refresh_days >= options.crl_validity_days) {
    return Status(Errc::kInvalidArgument,
                  "PKI validity options out of range (leaf 1..max, CRL refresh < CRL validity)");
  }
  std::unique_ptr<CertificateAuthority> ca(
      new CertificateAuthority(store, calendar, std::move(options)));
  auto q = store.query("SELECT count(*) FROM pki_authorities");
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  const bool exists = q.column_int64(0) > 0;
  if (!exists) {
    if (root_key_pem_out == nullptr) {
      return Status(Errc::kInvalidArgument,
                    store.path() + " has no PKI, and there is nowhere to hand its root key");
    }
    if (Status s = ca->create(root_key_pem_out); !s.is_ok()) return s;
  } else if (root_key_pem_out != nullptr) {
    root_key_pem_out->clear();
  }
  if (Status s = ca->load(); !s.is_ok()) return s;
  if (Status s = ca->load_directory(); !s.is_ok()) return s;
  if (Status s = ca->publish(true); !s.is_ok()) return s;
  return ca;
}

Status CertificateAuthority::create(std::string* root_key_pem_out) {
  const std::int64_t now = now_unix_s();
  const std::string& org = options_.organisation;
  auto root_key = x509::generate_key();
  if (!root_key.is_ok()) return root_key.status();
  auto serial = x509::random_serial_hex();
  if (!serial.is_ok()) return serial.status();
  x509::CertSpec spec;
  spec.serial_hex = *serial;
  spec.subject = {{"C", "CN"}, {"O", org}, {"OU", std::string(kRoot)}, {"CN", org + " Root CA"}};
  spec.not_before_unix_s = now;
  spec.not_after_unix_s = now + options_.root_validity_days * kDayS;
  spec.basic_constraints = "critical,CA:TRUE,pathlen:1";
  spec.key_usage = "critical,keyCertSign,cRLSign";
  auto root = x509::make_cert(spec, root_key->get(), nullptr, root_key->get());
  if (!root.is_ok()) return root.status();
  const std::int64_t root_not_after = spec.not_after_unix_s;

  auto txn = store_.begin();
  if (!txn.is_ok()) return txn.status();
  auto insert_authority = [&](std::string_view name, CertRole role, const std::string& cert_pem,
                              const std::optional<std::string>& key_pem) {
    auto q = store_.query(
        "INSERT INTO pki_authorities(name, role, cert_pem, key_pem) VALUES (?1, ?2, ?3, ?4)");
    q.bind(1, name).bind(2, static_cast<std::int64_t>(role)).bind(3, cert_pem);
    if (key_pem) {
      q.bind(4, *key_pem);
    } else {
      q.bind_null(4);
    }
    return q.run();
  };
  // The root's key is not stored: it leaves through root_key_pem_out.
  if (Status s =
          insert_authority(kRoot, CertRole::kRoot, x509::cert_pem(root->get()), std::nullopt);
      !s.is_ok()) {
    return s;
  }
  const std::string city = "city:" + options_.city_code;
  x509::Cert city_cert;
  x509::Pkey city_key;
  for (const std::string& name : {std::string(kNational), city}) {
    auto key = x509::generate_key();
    if (!key.is_ok()) return key.status();
    auto ca_serial = x509::random_serial_hex();
    if (!ca_serial.is_ok()) return ca_serial.status();
    x509::CertSpec ca;
    ca.serial_hex = *ca_serial;
    ca.subject = {{"C", "CN"},
                  {"O", org},
                  {"OU", name},
                  {"CN", org + (name == kNational ? std::string(" National CA")
                                                  : " City CA " + options_.city_code)}};
    ca.not_before_unix_s = now;
    ca.not_after_unix_s = std::min(now + options_.working_ca_validity_days * kDayS, root_not_after);
    ca.basic_constraints = "critical,CA:TRUE,pathlen:0";
    ca.key_usage = "critical,keyCertSign,cRLSign";
    auto cert = x509::make_cert(ca, key->get(), root->get(), root_key->get());
    if (!cert.is_ok()) return cert.status();
    if (Status s = insert_authority(name, CertRole::kWorkingCa, x509::cert_pem(cert->get()),
                                    x509::private_key_pem(key->get()));
        !s.is_ok()) {
      return s;
    }
    if (name == city) {
      city_cert = std::move(cert).value();
      city_key = std::move(key).value();
    }
  }

  // The RA: a certificate from the city CA, and its key beside the CAs' (the backend is its
  // own registration desk).
  auto ra_key = x509::generate_key();
  if (!ra_key.is_ok()) return ra_key.status();
  auto ra_serial = x509::random_serial_hex();
  if (!ra_serial.is_ok()) return ra_serial.status();
  const std::string ra_id = "ra-" + options_.city_code;
  x509::CertSpec ra;
  ra.serial_hex = *ra_serial;
  ra.subject = {{"C", "CN"}, {"O", org}, {"OU", city}, {"CN", "RA " + options_.city_code}};
  ra.not_before_unix_s = now;
  ra.not_after_unix_s = std::min(now + options_.working_ca_validity_days * kDayS, root_not_after);
  ra.basic_constraints = "critical,CA:FALSE";
  ra.key_usage = profile(CertRole::kRa).key_usage;
  ra.extended_key_usage = profile(CertRole::kRa).extended_key_usage;
  ra.subject_alt_name = "URI:" + std::string(kUrnPrefix) + "ra:" + ra_id;
  auto ra_cert = x509::make_cert(ra, ra_key->get(), city_cert.get(), city_key.get());
  if (!ra_cert.is_ok()) return ra_cert.status();
  const std::string ra_pem = x509::cert_pem(ra_cert->get());
  auto recorded = record(ra_pem, city, CertRole::kRa, ra_id, std::nullopt);
  if (!recorded.is_ok()) return recorded.status();
  if (Status s = insert_authority("ra:" + options_.city_code, CertRole::kRa, ra_pem,
                                  x509::private_key_pem(ra_key->get()));
      !s.is_ok()) {
    return s;
  }
  if (Status s = txn->commit(); !s.is_ok()) return s;
  *root_key_pem_out = x509::private_key_pem(root_key->get());
  return Status::ok();
}

Status CertificateAuthority::load() {
  authorities_.clear();
  authorities_.push_back(std::make_unique<Authority>());
  authorities_.push_back(std::make_unique<Authority>());
  authorities_[0]->name = std::string(kNational);
  authorities_[1]->name = "city:" + options_.city_code;
  bool seen[2] = {false, false};
  auto q = store_.query(
      "SELECT name, cert_pem, key_pem, crl_number, crl_pem, crl_this_update_s "
      "FROM pki_authorities");
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) break;
    const std::string name = q.column_text(0);
    if (name == kRoot) {
      root_pem_ = q.column_text(1);
      continue;
    }
    if (name == "ra:" + options_.city_code) {
      ra_pem_ = q.column_text(1);
      ra_key_pem_ = q.column_text(2);
      auto c = x509::cert_from_pem(ra_pem_);
      if (!c.is_ok()) return c.status();
      ra_serial_ = x509::serial_hex(c->get());
      continue;
    }
    for (int i = 0; i < 2; ++i) {
      Authority& a = *authorities_[static_cast<std::size_t>(i)];
      if (a.name != name) continue;
      a.cert_pem = q.column_text(1);
      auto c = x509::cert_from_pem(a.cert_pem);
      if (!c.is_ok()) return c.status();
      auto k = x509::private_key_from_pem(q.column_text(2));
      if (!k.is_ok()) return k.status();
      a.cert = std::move(c).value();
      a.key = std::move(k).value();
      a.crl_number = q.column_int64(3);
      a.crl_pem = q.column_is_null(4) ? std::string() : q.column_text(4);
      a.crl_this_update_s = q.column_int64(5);
      seen[i] = true;
    }
  }
  if (root_pem_.empty() || !seen[0] || !seen[1] || ra_pem_.empty()) {
    return Status(Errc::kInvalidArgument, store_.path() + " has no complete PKI for city " +
                                              options_.city_code +
                                              " (a database made for another city?)");
  }
  return Status::ok();
}

Status CertificateAuthority::load_directory() {
  auto q = store_.query(
      "SELECT serial, role, subject_id, curve_key, cert_pem, revoked_at_s FROM certificates "
      "WHERE curve_key IS NOT NULL");
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return Status::ok();
    const Bytes k = q.column_blob(3);
    sim::CurveKey key{};
    if (k.size() != key.size()) continue;  // the schema's CHECK makes this impossible
    std::copy(k.begin(), k.end(), key.begin());
    CurveDirectory::Entry e{q.column_text(0), static_cast<CertRole>(q.column_int64(1)),
                            q.column_text(2), q.column_text(4)};
    const bool revoked = !q.column_is_null(5);
    const std::string serial = e.serial_hex;
    directory_->add(key, std::move(e));
    if (revoked) directory_->mark_revoked(serial);
  }
}

bool CertificateAuthority::crl_due(const Authority& a) const {
  const std::int64_t now = now_unix_s();
  // A clock that went back (a restart with another origin) makes the CRL not yet valid: due.
  return a.crl_pem.empty() || now < a.crl_this_update_s ||
         now - a.crl_this_update_s >= options_.crl_refresh_days * kDayS;
}

Result<std::string> CertificateAuthority::sign_crl(Authority& a, bool force) {
  if (!force && !crl_due(a)) return a.crl_pem;
  const std::int64_t now = now_unix_s();
  std::vector<x509::RevokedEntry> revoked;
  {
    auto q = store_.query(
        "SELECT serial, revoked_at_s, revocation_reason FROM certificates "
        "WHERE issuer = ?1 AND revoked_at_s IS NOT NULL ORDER BY serial");
    q.bind(1, a.name);
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      revoked.push_back({q.column_text(0), q.column_int64(1), static_cast<int>(q.column_int64(2))});
    }
  }
  const std::int64_t number = a.crl_number + 1;
  auto crl = x509::make_crl(a.cert.get(), a.key.get(), number, now,
                            now + options_.crl_validity_days * kDayS, revoked);
  if (!crl.is_ok()) return crl.status();
  std::string pem = x509::crl_pem(crl->get());
  if (Status s = store_
                     .query("UPDATE pki_authorities SET crl_number = ?2, crl_pem = ?3, "
                            "crl_this_update_s = ?4 WHERE name = ?1")
                     .bind(1, a.name)
                     .bind(2, number)
                     .bind(3, pem)
                     .bind(4, now)
                     .run();
      !s.is_ok()) {
    return s;
  }
  a.crl_number = number;
  a.crl_pem = pem;
  a.crl_this_update_s = now;
  return pem;
}

Status CertificateAuthority::publish(bool rebuild) {
  std::vector<std::string> cas, crls;
  for (auto& a : authorities_) {
    if (crl_due(*a)) rebuild = true;
    auto crl = sign_crl(*a, false);
    if (!crl.is_ok()) return crl.status();
    cas.push_back(a->cert_pem);
    crls.push_back(*crl);
  }
  if (!rebuild) return Status::ok();
  auto v = CertificateVerifier::create(root_pem_, cas, crls);
  if (!v.is_ok()) return v.status();
  verifier_ = std::move(v).value();
  directory_->set_verifier(verifier_);
  return Status::ok();
}

Status CertificateAuthority::refresh_crls_if_due() {
  return publish(false);
}

Status CertificateAuthority::check_request(const CertRequest& r) const {
  if (!is_leaf(r.role) || r.role == CertRole::kRa) {
    return Status(Errc::kInvalidArgument, std::string("the RA does not take requests for ") +
                                              cert_role_name(r.role) + " certificates");
  }
  if (r.subject_id.empty() || r.subject_id.size() > options_.max_subject_id_bytes ||
      !std::all_of(r.subject_id.begin(), r.subject_id.end(), id_char)) {
    return Status(Errc::kInvalidArgument, "subject id must be 1.." +
                                              std::to_string(options_.max_subject_id_bytes) +
                                              " characters of [A-Za-z0-9._:-]");
  }
  if (r.role == CertRole::kTerminal) {
    Bytes id;
    if (r.subject_id.size() != 12 || !parse_hex(r.subject_id, id)) {
      return Status(Errc::kInvalidArgument, "a terminal's subject id is its 12-hex-digit id");
    }
  }
  const Profile p = profile(r.role);
  if (p.needs_curve && !r.curve_key) {
    return Status(Errc::kInvalidArgument, std::string(cert_role_name(r.role)) +
                                              " certificates bind a CURVE key; none was given");
  }
  const int days = r.validity_days.value_or(options_.leaf_validity_days);
  if (days < 1 || days > options_.max_leaf_validity_days) {
    return Status(
        Errc::kInvalidArgument,
        "validity must be 1.." + std::to_string(options_.max_leaf_validity_days) + " days");
  }
  auto key = x509::public_key_from_pem(r.public_key_pem);
  if (!key.is_ok()) return Status(Errc::kInvalidArgument, key.status().message());
  if (!x509::is_p256(key->get())) {
    return Status(Errc::kInvalidArgument, "only EC P-256 keys are certified");
  }
  return Status::ok();
}

Result<RaApproval> CertificateAuthority::approve(const CertRequest& r) {
  if (Status s = check_request(r); !s.is_ok()) return s;
  if (r.role == CertRole::kTerminal) {
    Bytes id;
    (void)parse_hex(r.subject_id, id);
    auto q = store_.query("SELECT 1 FROM terminals WHERE terminal_id = ?1");
    q.bind_blob(1, id);
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) {
      return Status(Errc::kNotFound, "terminal " + r.subject_id + " is not registered");
    }
  }
  auto key = x509::private_key_from_pem(ra_key_pem_);
  if (!key.is_ok()) return key.status();
  auto sig = x509::sign(key->get(), approval_input(r));
  if (!sig.is_ok()) return sig.status();
  return RaApproval{ra_serial_, std::move(sig).value()};
}

Result<CertificateInfo> CertificateAuthority::record(const std::string& pem,
                                                     const std::string& issuer, CertRole role,
                                                     const std::string& subject_id,
                                                     const std::optional<sim::CurveKey>& curve) {
  auto cert = x509::cert_from_pem(pem);
  if (!cert.is_ok()) return cert.status();
  CertificateInfo info;
  info.serial_hex = x509::serial_hex(cert->get());
  info.role = role;
  info.subject = x509::subject_line(cert->get());
  info.subject_id = subject_id;
  info.issuer = issuer;
  info.not_before_unix_s = x509::not_before_unix_s(cert->get());
  info.not_after_unix_s = x509::not_after_unix_s(cert->get());
  info.curve_key = curve;
  info.pem = pem;
  auto q = store_.query(
      "INSERT INTO certificates(serial, issuer, role, subject, subject_id, not_before_s, "
      "not_after_s, curve_key, cert_pem, issued_at_us) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
  q.bind(1, info.serial_hex)
      .bind(2, issuer)
      .bind(3, static_cast<std::int64_t>(role))
      .bind(4, info.subject)
      .bind(5, subject_id)
      .bind(6, info.not_before_unix_s)
      .bind(7, info.not_after_unix_s)
      .bind(9, pem)
      .bind(10, calendar_.now_us());
  if (curve) {
    q.bind_blob(8, ByteView(curve->data(), curve->size()));
  } else {
    q.bind_null(8);
  }
  if (Status s = q.run(); !s.is_ok()) return s;
  return info;
}

Result<CertificateInfo> CertificateAuthority::issue(const CertRequest& r,
                                                    const RaApproval& approval) {
  if (Status s = check_request(r); !s.is_ok()) return s;
  // The approval must come from an RA certificate this PKI issued, valid and unrevoked now.
  auto ra = certificate(approval.ra_serial_hex);
  if (!ra.is_ok()) {
    return Status(Errc::kRejected, "approval by unknown RA certificate " + approval.ra_serial_hex);
  }
  if (ra->role != CertRole::kRa || ra->revoked) {
    return Status(Errc::kRejected, "approval by RA certificate " + approval.ra_serial_hex +
                                       (ra->revoked ? ", which is revoked" : ", not an RA's"));
  }
  if (auto v = verifier_->verify(ra->pem, CertRole::kRa, now_unix_s()); !v.is_ok()) {
    return Status(Errc::kRejected, "approving RA: " + v.status().message());
  }
  auto ra_cert = x509::cert_from_pem(ra->pem);
  if (!ra_cert.is_ok()) return ra_cert.status();
  if (!x509::verify_signature(X509_get0_pubkey(ra_cert->get()), approval_input(r),
                              approval.signature)) {
    return Status(Errc::kRejected, "the RA's approval does not match this request");
  }
  auto count = certificate_count();
  if (!count.is_ok()) return count.status();
  if (static_cast<std::size_t>(*count) >= options_.max_certificates) {
    return Status(Errc::kTooLarge,
                  "the PKI holds " + std::to_string(*count) + " certificates, its limit");
  }

  const Profile p = profile(r.role);
  Authority* a = authority(p.national ? kNational : "city:" + options_.city_code);
  auto key = x509::public_key_from_pem(r.public_key_pem);
  if (!key.is_ok()) return key.status();
  auto serial = x509::random_serial_hex();
  if (!serial.is_ok()) return serial.status();
  const std::int64_t now = now_unix_s();
  x509::CertSpec spec;
  spec.serial_hex = *serial;
  spec.subject = {{"C", "CN"},
                  {"O", options_.organisation},
                  {"OU", a->name},
                  {"CN", std::string(cert_role_name(r.role)) + " " + r.subject_id}};
  spec.not_before_unix_s = now;
  // A leaf does not outlive its CA.
  spec.not_after_unix_s =
      std::min(now + r.validity_days.value_or(options_.leaf_validity_days) * kDayS,
               x509::not_after_unix_s(a->cert.get()));
  spec.basic_constraints = "critical,CA:FALSE";
  spec.key_usage = p.key_usage;
  spec.extended_key_usage = p.extended_key_usage;
  spec.subject_alt_name =
      "URI:" + std::string(kUrnPrefix) + cert_role_name(r.role) + ":" + r.subject_id;
  if (r.curve_key)
    spec.subject_alt_name += ",URI:" + std::string(kCurveUrn) + curve_hex(*r.curve_key);
  if (r.role == CertRole::kServer) spec.subject_alt_name += ",DNS:" + r.subject_id;
  auto cert = x509::make_cert(spec, key->get(), a->cert.get(), a->key.get());
  if (!cert.is_ok()) return cert.status();
  const std::string pem = x509::cert_pem(cert->get());
  auto info = record(pem, a->name, r.role, r.subject_id, r.curve_key);
  if (!info.is_ok()) return info.status();
  if (r.curve_key) {
    directory_->add(*r.curve_key,
                    CurveDirectory::Entry{info->serial_hex, r.role, r.subject_id, pem});
  }
  return info;
}

Result<CertificateInfo> CertificateAuthority::enrol(const CertRequest& r) {
  auto approval = approve(r);
  if (!approval.is_ok()) return approval.status();
  return issue(r, *approval);
}

Status CertificateAuthority::revoke(const std::string& serial_hex, RevocationReason reason) {
  auto cert = certificate(serial_hex);
  if (!cert.is_ok()) return cert.status();
  if (cert->revoked) return Status::ok();
  Authority* a = authority(cert->issuer);
  if (a == nullptr) {
    return Status(Errc::kInvalidArgument, "certificate " + serial_hex + " was issued by " +
                                              cert->issuer +
                                              "; only the offline root revokes a working CA");
  }
  {
    auto txn = store_.begin();
    if (!txn.is_ok()) return txn.status();
    if (Status s = store_
                       .query("UPDATE certificates SET revoked_at_s = ?2, revocation_reason = ?3 "
                              "WHERE serial = ?1")
                       .bind(1, serial_hex)
                       .bind(2, now_unix_s())
                       .bind(3, static_cast<std::int64_t>(reason))
                       .run();
        !s.is_ok()) {
      return s;
    }
    auto crl = sign_crl(*a, true);
    if (!crl.is_ok()) return crl.status();
    if (Status s = txn->commit(); !s.is_ok()) {
      // The CRL in memory is ahead of the database: sign it again from what is stored.
      a->crl_pem.clear();
      return s;
    }
  }
  directory_->mark_revoked(serial_hex);
  return publish(true);
}

Result<CertificateInfo> CertificateAuthority::certificate(const std::string& serial_hex) const {
  auto q = store_.query(
      "SELECT issuer, role, subject, subject_id, not_before_s, not_after_s, curve_key, cert_pem, "
      "revoked_at_s FROM certificates WHERE serial = ?1");
  q.bind(1, serial_hex);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return Status(Errc::kNotFound, "no certificate " + serial_hex);
  CertificateInfo info;
  info.serial_hex = serial_hex;
  info.issuer = q.column_text(0);
  info.role = static_cast<CertRole>(q.column_int64(1));
  info.subject = q.column_text(2);
  info.subject_id = q.column_text(3);
  info.not_before_unix_s = q.column_int64(4);
  info.not_after_unix_s = q.column_int64(5);
  if (!q.column_is_null(6)) {
    const Bytes k = q.column_blob(6);
    sim::CurveKey key{};
    if (k.size() == key.size()) std::copy(k.begin(), k.end(), key.begin());
    info.curve_key = key;
  }
  info.pem = q.column_text(7);
  info.revoked = !q.column_is_null(8);
  return info;
}

Result<std::int64_t> CertificateAuthority::certificate_count() const {
  auto q = store_.query("SELECT count(*) FROM certificates");
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  return q.column_int64(0);
}

Result<CertificateInfo> CertificateAuthority::import(std::string_view pem, CertRole role) {
  auto info = verifier_->verify(pem, role, now_unix_s());
  if (!info.is_ok()) return info.status();
  auto known = certificate(info->serial_hex);
  if (known.is_ok()) return *known;
  if (known.status().code() != Errc::kNotFound) return known.status();
  auto count = certificate_count();
  if (!count.is_ok()) return count.status();
  if (static_cast<std::size_t>(*count) >= options_.max_certificates) {
    return Status(Errc::kTooLarge,
                  "the PKI holds " + std::to_string(*count) + " certificates, its limit");
  }
  auto recorded = record(std::string(pem), info->issuer, role, info->subject_id, info->curve_key);
  if (!recorded.is_ok()) return recorded.status();
  if (info->curve_key) {
    directory_->add(*info->curve_key, CurveDirectory::Entry{info->serial_hex, role,
                                                            info->subject_id, std::string(pem)});
  }
  return recorded;
}

Result<ServerIdentity> CertificateAuthority::server_identity(const std::string& name) {
  {
    auto q = store_.query(
        "SELECT curve_secret, key_pem, cert_serial FROM server_identities WHERE name = ?1");
    q.bind(1, name);
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (*row) {
      ServerIdentity id;
      const Bytes secret = q.column_blob(0);
      if (secret.size() != id.curve_keys.secret_key.size()) {
        return Status(Errc::kInternal, "server identity " + name + " has a bad CURVE key");
      }
      std::copy(secret.begin(), secret.end(), id.curve_keys.secret_key.begin());
      auto pub = sim::curve_public_key(id.curve_keys.secret_key);
      if (!pub.is_ok()) return pub.status();
      id.curve_keys.public_key = *pub;
      id.private_key_pem = q.column_text(1);
      const std::string serial = q.column_text(2);
      auto cert = certificate(serial);
      if (!cert.is_ok()) return cert.status();
      // A revoked or expiring certificate is replaced, with fresh keys: a server keeps serving.
      if (!cert->revoked && cert->not_after_unix_s > now_unix_s() + kDayS) {
        id.certificate = std::move(cert).value();
        return id;
      }
    }
  }
  auto curve = sim::generate_curve_key_pair();
  if (!curve.is_ok()) return curve.status();
  auto key = generate_key_pair();
  if (!key.is_ok()) return key.status();
  auto txn = store_.begin();
  if (!txn.is_ok()) return txn.status();
  auto cert = enrol({CertRole::kServer, name, key->public_pem, curve->public_key, std::nullopt});
  if (!cert.is_ok()) return cert.status();
  if (Status s = store_
                     .query("INSERT INTO server_identities(name, curve_secret, key_pem, "
                            "cert_serial) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(name) DO UPDATE SET "
                            "curve_secret = excluded.curve_secret, key_pem = excluded.key_pem, "
                            "cert_serial = excluded.cert_serial")
                     .bind(1, name)
                     .bind_blob(2, ByteView(curve->secret_key.data(), curve->secret_key.size()))
                     .bind(3, key->private_pem)
                     .bind(4, cert->serial_hex)
                     .run();
      !s.is_ok()) {
    return s;
  }
  if (Status s = txn->commit(); !s.is_ok()) return s;
  return ServerIdentity{*curve, std::move(cert).value(), key->private_pem};
}

}  // namespace citycard::backend
