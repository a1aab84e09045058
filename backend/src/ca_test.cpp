#include "citycard/backend/ca.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "ca_x509.h"
#include "test_city.h"

namespace citycard::backend {
namespace {

// Runs a command, returning its exit status and what it printed (stdout and stderr).
std::pair<int, std::string> run(const std::string& command) {
  std::string out;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

class CaTest : public testing::BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    open_ca();
    ASSERT_FALSE(root_key.empty());
    bus = add_terminal("bus-co", "15");
  }
  void open_ca() {
    ca.reset();
    auto c = CertificateAuthority::open(backend->store(), backend->calendar(), pki, &root_key);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    ca = std::move(c).value();
  }
  std::string terminal_id() const { return to_hex(bus.psam.terminal_id); }
  CertRequest request(CertRole role, const std::string& id) {
    auto key = generate_key_pair();
    EXPECT_TRUE(key.is_ok());
    CertRequest r;
    r.role = role;
    r.subject_id = id;
    r.public_key_pem = key->public_pem;
    r.curve_key = sim::generate_curve_key_pair()->public_key;
    return r;
  }
  CertificateInfo enrol(CertRole role, const std::string& id) {
    auto info = ca->enrol(request(role, id));
    EXPECT_TRUE(info.is_ok()) << info.status().to_string();
    return info.is_ok() ? *info : CertificateInfo{};
  }
  // `openssl verify` at the PKI's own time (the certificates' validity follows the run's
  // clock, not the machine's).
  std::pair<int, std::string> openssl_verify(const CertificateInfo& leaf, bool crl_check) {
    const std::string root = dir.file("root.pem"), inter = dir.file("inter.pem"),
                      crl = dir.file("crl.pem"), cert = dir.file("leaf.pem");
    write(root, ca->root_pem());
    write(inter, leaf.issuer == "national" ? ca->national_ca_pem() : ca->city_ca_pem());
    write(crl, *ca->crl_pem(leaf.issuer));
    write(cert, leaf.pem);
    std::string cmd = "openssl verify -attime " + std::to_string(ca->now_unix_s()) + " -CAfile " +
                      root + " -untrusted " + inter;
    if (crl_check) cmd += " -crl_check -CRLfile " + crl;
    return run(cmd + " " + cert);
  }

  PkiOptions pki;
  std::string root_key;
  std::unique_ptr<CertificateAuthority> ca;
  testing::TestTerminal bus;
  testing::TempDir dir;
};

TEST_F(CaTest, OpensslVerifyAcceptsEveryChainItIssues) {
  const std::vector<CertificateInfo> leaves = {
      enrol(CertRole::kTerminal, terminal_id()),
      enrol(CertRole::kServer, "backend.citycard.test"),
      enrol(CertRole::kReaderCity, "reader-0001"),
      enrol(CertRole::kReaderNational, "reader-0001"),
      enrol(CertRole::kCardCompany, "card-works"),
      *ca->certificate(ca->approve(request(CertRole::kCardCompany, "x"))->ra_serial_hex),
  };
  for (const CertificateInfo& leaf : leaves) {
    SCOPED_TRACE(std::string(cert_role_name(leaf.role)) + " " + leaf.subject);
    const auto [code, out] = openssl_verify(leaf, false);
    EXPECT_EQ(code, 0) << out;
    EXPECT_NE(out.find(": OK"), std::string::npos) << out;
    const auto [code_crl, out_crl] = openssl_verify(leaf, true);
    EXPECT_EQ(code_crl, 0) << out_crl;
  }
  // The two reader certificates: one under each working CA.
  EXPECT_EQ(leaves[2].issuer, "city:3100");
  EXPECT_EQ(leaves[3].issuer, "national");
}

TEST_F(CaTest, CertificatesCarryTheExtensionsTheirRoleNeeds) {
  const CertificateInfo t = enrol(CertRole::kTerminal, terminal_id());
  write(dir.file("t.pem"), t.pem);
  write(dir.file("city.pem"), ca->city_ca_pem());
  write(dir.file("root.pem"), ca->root_pem());
  const auto [c1, leaf] = run("openssl x509 -noout -text -in " + dir.file("t.pem"));
  ASSERT_EQ(c1, 0) << leaf;
  for (const char* want : {"X509v3 Basic Constraints: critical", "CA:FALSE",
                           "X509v3 Key Usage: critical", "Digital Signature, Key Agreement",
                           "TLS Web Client Authentication", "X509v3 Subject Key Identifier",
                           "X509v3 Authority Key Identifier", "URI:urn:x-citycard:terminal:",
                           "URI:urn:x-citycard:curve:", "ecdsa-with-SHA256", "NIST CURVE: P-256"}) {
    EXPECT_NE(leaf.find(want), std::string::npos) << want << "\n" << leaf;
  }
  const auto [c2, city] = run("openssl x509 -noout -text -in " + dir.file("city.pem"));
  EXPECT_NE(city.find("CA:TRUE, pathlen:0"), std::string::npos) << city;
  EXPECT_NE(city.find("Certificate Sign, CRL Sign"), std::string::npos) << city;
  const auto [c3, root] = run("openssl x509 -noout -text -in " + dir.file("root.pem"));
  EXPECT_NE(root.find("CA:TRUE, pathlen:1"), std::string::npos) << root;
  const CertificateInfo s = enrol(CertRole::kServer, "backend.citycard.test");
  write(dir.file("s.pem"), s.pem);
  const auto [c4, server] = run("openssl x509 -noout -text -in " + dir.file("s.pem"));
  EXPECT_NE(server.find("TLS Web Server Authentication"), std::string::npos) << server;
  EXPECT_NE(server.find("DNS:backend.citycard.test"), std::string::npos) << server;
}

TEST_F(CaTest, RevokedCertificateIsRefusedByOpensslTheVerifierAndTheCurveDirectory) {
  const CertificateInfo kept = enrol(CertRole::kTerminal, terminal_id());
  const CertificateInfo gone = enrol(CertRole::kTerminal, terminal_id());
  const auto admitted = ca->directory()->admit(*gone.curve_key, ca->now_unix_s());
  ASSERT_TRUE(admitted.is_ok()) << admitted.status().to_string();
  EXPECT_EQ(*admitted, "terminal:" + terminal_id() + "#" + gone.serial_hex);

  ASSERT_TRUE(ca->revoke(gone.serial_hex, RevocationReason::kKeyCompromise).is_ok());
  EXPECT_TRUE(ca->certificate(gone.serial_hex)->revoked);
  const auto [code, out] = openssl_verify(gone, true);
  EXPECT_NE(code, 0) << out;
  EXPECT_NE(out.find("certificate revoked"), std::string::npos) << out;
  EXPECT_EQ(openssl_verify(gone, false).first, 0);  // without the CRL nothing shows
  EXPECT_EQ(openssl_verify(kept, true).first, 0);

  auto v = ca->verifier()->verify(gone.pem, CertRole::kTerminal, ca->now_unix_s());
  EXPECT_EQ(v.status().code(), Errc::kRejected);
  EXPECT_NE(v.status().message().find("revoked"), std::string::npos) << v.status().message();
  auto d = ca->directory()->admit(*gone.curve_key, ca->now_unix_s());
  EXPECT_EQ(d.status().code(), Errc::kRejected);
  EXPECT_NE(d.status().message().find("revoked"), std::string::npos);
  EXPECT_EQ(ca->directory()->still_valid(*admitted, ca->now_unix_s()).code(), Errc::kRejected);
  EXPECT_TRUE(ca->directory()->admit(*kept.curve_key, ca->now_unix_s()).is_ok());

  // The revocation survives a restart, and the CRL says so.
  open_ca();
  EXPECT_TRUE(root_key.empty());
  EXPECT_EQ(ca->directory()->admit(*gone.curve_key, ca->now_unix_s()).status().code(),
            Errc::kRejected);
  EXPECT_NE(openssl_verify(gone, true).first, 0);
  EXPECT_TRUE(ca->revoke(gone.serial_hex, RevocationReason::kSuperseded).is_ok());  // idempotent
  EXPECT_EQ(ca->revoke("abcdef", RevocationReason::kSuperseded).code(), Errc::kNotFound);
}

TEST_F(CaTest, TheRaRefusesRequestsOutsidePolicy) {
  auto r = request(CertRole::kTerminal, "310099999999");
  EXPECT_EQ(ca->approve(r).status().code(), Errc::kNotFound);  // not a registered terminal
  r = request(CertRole::kTerminal, terminal_id());
  r.curve_key.reset();
  EXPECT_EQ(ca->approve(r).status().code(), Errc::kInvalidArgument);  // nothing to bind
  r = request(CertRole::kTerminal, terminal_id());
  r.validity_days = 20 * 365;
  EXPECT_EQ(ca->approve(r).status().code(), Errc::kInvalidArgument);
  for (const char* bad : {"", "has space", "semi;colon", "comma,URI:evil"}) {
    EXPECT_EQ(ca->approve(request(CertRole::kReaderCity, bad)).status().code(),
              Errc::kInvalidArgument)
        << bad;
  }
  EXPECT_EQ(ca->approve(request(CertRole::kWorkingCa, "sub-ca")).status().code(),
            Errc::kInvalidArgument);
  // An RSA key is not what this CA certifies.
  const auto [code, rsa] =
      run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 "
          "2>/dev/null | openssl pkey -pubout");
  ASSERT_EQ(code, 0) << rsa;
  r = request(CertRole::kReaderCity, "reader-7");
  r.public_key_pem = rsa;
  auto refused = ca->approve(r);
  EXPECT_EQ(refused.status().code(), Errc::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("P-256"), std::string::npos);
}

TEST_F(CaTest, TheCaIssuesOnlyWhatTheRaApproved) {
  const CertRequest asked = request(CertRole::kReaderCity, "reader-1");
  const RaApproval approval = *ca->approve(asked);
  CertRequest swapped = asked;  // the approval of one request used for another key
  swapped.public_key_pem = generate_key_pair()->public_pem;
  auto refused = ca->issue(swapped, approval);
  EXPECT_EQ(refused.status().code(), Errc::kRejected);
  EXPECT_NE(refused.status().message().find("does not match"), std::string::npos);
  RaApproval forged = approval;
  forged.signature[10] ^= 1;
  EXPECT_EQ(ca->issue(asked, forged).status().code(), Errc::kRejected);
  RaApproval stranger = approval;
  stranger.ra_serial_hex = "1234";
  EXPECT_EQ(ca->issue(asked, stranger).status().code(), Errc::kRejected);
  EXPECT_TRUE(ca->issue(asked, approval).is_ok());

  // A revoked RA approves nothing any more.
  ASSERT_TRUE(ca->revoke(approval.ra_serial_hex, RevocationReason::kKeyCompromise).is_ok());
  const CertRequest later = request(CertRole::kReaderCity, "reader-2");
  auto after = ca->issue(later, *ca->approve(later));
  EXPECT_EQ(after.status().code(), Errc::kRejected);
  EXPECT_NE(after.status().message().find("revoked"), std::string::npos);
}

TEST_F(CaTest, ForgedCertificatesAreRefusedWithTheReason) {
  const sim::CurveKey curve = sim::generate_curve_key_pair()->public_key;
  auto subject_key = x509::generate_key();
  ASSERT_TRUE(subject_key.is_ok());
  const std::int64_t now = ca->now_unix_s();
  x509::CertSpec spec;
  spec.serial_hex = "1001";
  spec.subject = {{"C", "CN"}, {"O", "citycard"}, {"CN", "terminal " + terminal_id()}};
  spec.not_before_unix_s = now;
  spec.not_after_unix_s = now + 86'400 * 30;
  spec.basic_constraints = "critical,CA:FALSE";
  spec.key_usage = "critical,digitalSignature,keyAgreement";
  spec.extended_key_usage = "clientAuth";
  spec.subject_alt_name = "URI:urn:x-citycard:terminal:" + terminal_id() +
                          ",URI:urn:x-citycard:curve:" + to_hex(ByteView(curve.data(), 32));

  // Self-signed, looking exactly like a terminal's.
  auto self = x509::make_cert(spec, subject_key->get(), nullptr, subject_key->get());
  ASSERT_TRUE(self.is_ok()) << self.status().to_string();
  auto a = ca->import(x509::cert_pem(self->get()), CertRole::kTerminal);
  EXPECT_EQ(a.status().code(), Errc::kRejected);
  EXPECT_NE(a.status().message().find("self-signed"), std::string::npos) << a.status().message();

  // Signed by another clearing centre's city CA (same names, other keys).
  testing::FixedClock other_clock;
  BackendOptions other = options;
  other.key_seed = 99;
  auto foreign_backend = std::move(Backend::open(":memory:", other, other_clock)).value();
  std::string foreign_root;
  auto foreign =
      std::move(CertificateAuthority::open(foreign_backend->store(), foreign_backend->calendar(),
                                           pki, &foreign_root))
          .value();
  TerminalParams tp;
  tp.operator_id = "bus-co";
  ASSERT_TRUE(foreign_backend->register_terminal(tp).is_ok());  // the same first terminal id
  auto alien = foreign->enrol(request(CertRole::kTerminal, terminal_id()));
  ASSERT_TRUE(alien.is_ok()) << alien.status().to_string();
  auto b = ca->import(alien->pem, CertRole::kTerminal);
  EXPECT_EQ(b.status().code(), Errc::kRejected);
  EXPECT_NE(b.status().message().find("unable to get local issuer certificate"), std::string::npos)
      << b.status().message();
  EXPECT_EQ(ca->directory()->admit(*alien->curve_key, now).status().code(), Errc::kRejected);

  // Ours, but for another role, and garbage.
  const CertificateInfo reader = enrol(CertRole::kReaderCity, "reader-9");
  auto c = ca->verifier()->verify(reader.pem, CertRole::kTerminal, now);
  EXPECT_EQ(c.status().code(), Errc::kRejected);
  EXPECT_NE(c.status().message().find("not a terminal one"), std::string::npos);
  EXPECT_EQ(ca->import("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                       CertRole::kTerminal)
                .status()
                .code(),
            Errc::kMalformed);
}

TEST_F(CaTest, CertificatesExpireByTheRunsClockAndCrlsAreResignedWhenDue) {
  CertRequest r = request(CertRole::kTerminal, terminal_id());
  r.validity_days = 30;
  const CertificateInfo t = *ca->enrol(r);
  EXPECT_EQ(t.not_after_unix_s - t.not_before_unix_s, 30 * 86'400);
  // 2024-01-01 00:00 China Standard Time is 2023-12-31 16:00 UTC.
  EXPECT_EQ(t.not_before_unix_s, 1'704'038'400);
  const std::string first_crl = *ca->crl_pem("city:3100");

  clock.advance_us(2LL * 86'400'000'000);  // older than crl_refresh_days
  ASSERT_TRUE(ca->refresh_crls_if_due().is_ok());
  EXPECT_NE(*ca->crl_pem("city:3100"), first_crl);
  EXPECT_TRUE(ca->directory()->admit(*t.curve_key, ca->now_unix_s()).is_ok());
  EXPECT_EQ(openssl_verify(t, true).first, 0);

  clock.advance_us(30LL * 86'400'000'000);
  ASSERT_TRUE(ca->refresh_crls_if_due().is_ok());
  auto expired = ca->directory()->admit(*t.curve_key, ca->now_unix_s());
  EXPECT_EQ(expired.status().code(), Errc::kRejected);
  EXPECT_NE(expired.status().message().find("expired"), std::string::npos);
  EXPECT_NE(openssl_verify(t, true).first, 0);
}

TEST_F(CaTest, ServerIdentityIsKeptAcrossRestartsAndBindsItsCurveKey) {
  auto first = ca->server_identity("backend.citycard.test");
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  EXPECT_EQ(first->certificate.curve_key, first->curve_keys.public_key);
  open_ca();
  auto again = ca->server_identity("backend.citycard.test");
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->curve_keys.secret_key, first->curve_keys.secret_key);
  EXPECT_EQ(again->certificate.serial_hex, first->certificate.serial_hex);
  // A terminal checks the server's certificate before it trusts its CURVE key.
  auto checked =
      ca->verifier()->verify(again->certificate.pem, CertRole::kServer, ca->now_unix_s());
  ASSERT_TRUE(checked.is_ok()) << checked.status().to_string();
  EXPECT_EQ(checked->curve_key, first->curve_keys.public_key);
  // Revoked: the next start makes a new identity.
  ASSERT_TRUE(ca->revoke(first->certificate.serial_hex, RevocationReason::kKeyCompromise).is_ok());
  auto renewed = ca->server_identity("backend.citycard.test");
  ASSERT_TRUE(renewed.is_ok());
  EXPECT_NE(renewed->certificate.serial_hex, first->certificate.serial_hex);
  EXPECT_NE(renewed->curve_keys.public_key, first->curve_keys.public_key);
}

TEST_F(CaTest, ADatabaseWithoutAPkiNeedsSomewhereToPutTheRootKey) {
  testing::FixedClock c;
  auto fresh = std::move(Backend::open(":memory:", options, c)).value();
  EXPECT_EQ(
      CertificateAuthority::open(fresh->store(), fresh->calendar(), pki, nullptr).status().code(),
      Errc::kInvalidArgument);
  PkiOptions other = pki;
  other.city_code = "1000";
  auto wrong_city =
      CertificateAuthority::open(backend->store(), backend->calendar(), other, nullptr);
  EXPECT_EQ(wrong_city.status().code(), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace citycard::backend
