// QR-code payment end to end (issue 5): the backend issues the phone a signed token key; the
// phone shows short-lived QR payloads signed with its own P-256 key; a bus validator that has
// checked the QR issuer's certificate offline against the city CA verifies them offline and
// uploads them; the backend debits the holder's online account once per code. Replayed,
// expired, forged and over-limit codes are refused. Real OpenSSL ECDSA and X.509, the backend
// on a SQLite file, the simulated network in virtual time.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

#include "citycard/backend/backend.h"
#include "citycard/backend/ca.h"
#include "citycard/backend/qr.h"
#include "citycard/devices/online_load.h"
#include "citycard/devices/qr_pay.h"
#include "citycard/sim/event_loop.h"
#include "citycard/sim/transport.h"
#include "citycard/sim/zmq_transport.h"

#include "backend_test_support.h"

namespace citycard {
namespace {

using devices::QrRefusal;
using devices::QrValidator;
using devices::QrWallet;

using Proxy = testsupport::ServiceHandler;

class QrPaymentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!sim::curve_available()) GTEST_SKIP() << "libzmq without CURVE (server certificates)";
    auto opened = testsupport::open_test_backend("qr_payment", 21, loop);
    ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
    backend = std::move(opened).value();
    admin = *backend->users().login("root", "password-1");

    // The PKI, and the backend's QR issuer key certified by the city CA (as the server does
    // when it opens the CA): the Backend serves QR from then on.
    std::string root_key;
    auto ca_opened =
        backend::CertificateAuthority::open(backend->store(), backend->calendar(), {}, &root_key);
    ASSERT_TRUE(ca_opened.is_ok()) << ca_opened.status().to_string();
    ca = std::move(ca_opened).value();
    auto cert = backend->certify_qr(*ca);
    ASSERT_TRUE(cert.is_ok()) << cert.status().to_string();
    issuer_cert_pem = *cert;

    proxy = std::make_unique<Proxy>(*backend);
    network = std::make_unique<sim::SimNetwork>(loop, sim::Rng(5), sim::NetworkOptions{});
    wallet_terminal = register_terminal("WALLET", "wallet-service");
    bus_terminal = register_terminal("SH-BUS-1", "BV-QR-1");
    wallet_channel = network->connect(*proxy, "wallet-service");
    bus_channel = network->connect(*proxy, "BV-QR-1");
    devices::OnlineLoadOptions lo;
    lo.terminal_id = wallet_terminal;
    lo.pump = [this] { pump(); };
    client = std::make_unique<devices::OnlineLoadClient>(lo, *wallet_channel);
  }
  void TearDown() override {
    if (backend) {
      Status s = backend->check_conservation();
      EXPECT_TRUE(s.is_ok()) << s.to_string();
    }
  }

  protocol::TerminalId register_terminal(const std::string& op, const std::string& device) {
    backend::TerminalParams tp;
    tp.operator_id = op;
    tp.device_id = device;
    auto image = backend->register_terminal(tp);
    EXPECT_TRUE(image.is_ok());
    return image->terminal_id;
  }
  void pump() {
    loop.run_until(loop.now_us() + 50'000);
    ASSERT_TRUE(backend->poll().is_ok());
  }
  void drain(QrValidator& v) {
    for (int i = 0; i < 20 && (v.queued() > 0 || v.in_flight()); ++i) {
      v.upload(*bus_channel);
      loop.run_until(loop.now_us() + 1'000'000);
    }
  }
  // A named card whose holder's online account holds `account_fen`, topped up at the bank.
  protocol::Serial8 named_card(std::int64_t account_fen) {
    backend::IssueRequest r;
    r.holder = backend::HolderInfo{"Li Lei", "310101199001011234", "", "", false};
    auto image = backend->cards().issue(admin, r);
    EXPECT_TRUE(image.is_ok()) << image.status().to_string();
    if (account_fen > 0) {
      auto order = client->place_order("topup-" + std::to_string(++orders_), wire::CHANNEL_BANK,
                                       image->serial, account_fen, /*to_account=*/true);
      EXPECT_TRUE(order.is_ok()) << order.status().to_string();
      for (int i = 0; i < 200 && order.is_ok() && order->state != wire::ORDER_LOADED; ++i) {
        order = client->place_order("topup-" + std::to_string(orders_), wire::CHANNEL_BANK,
                                    image->serial, account_fen, true);
      }
      EXPECT_EQ(order->state, wire::ORDER_LOADED);
    }
    return image->serial;
  }
  std::int64_t account(const protocol::Serial8& card) const {
    return backend->cards().info(card)->holder->account_fen;
  }
  std::int64_t now_s() const { return backend->calendar().now_epoch2000_s(); }
  QrValidator validator() {
    auto v = QrValidator::from_certificate(issuer_cert_pem, ca->root_pem(), {ca->city_ca_pem()},
                                           ca->now_unix_s(), bus_terminal);
    EXPECT_TRUE(v.is_ok()) << v.status().to_string();
    return std::move(v).value();
  }

  sim::EventLoop loop;
  std::unique_ptr<backend::Backend> backend;
  backend::Session admin;
  std::unique_ptr<backend::CertificateAuthority> ca;
  std::string issuer_cert_pem;
  std::unique_ptr<Proxy> proxy;
  std::unique_ptr<sim::SimNetwork> network;
  protocol::TerminalId wallet_terminal{}, bus_terminal{};
  std::unique_ptr<sim::Channel> wallet_channel, bus_channel;
  std::unique_ptr<devices::OnlineLoadClient> client;
  int orders_ = 0;
};

TEST_F(QrPaymentTest, PhoneShowsSignedCodesTheBusVerifiesOfflineAndTheBackendDebitsOnce) {
  const protocol::Serial8 card = named_card(1000);
  auto wallet = QrWallet::create(card);
  ASSERT_TRUE(wallet.is_ok());
  ASSERT_TRUE(wallet->request_key(*client, wallet_terminal, 86'400, 500).is_ok());
  QrValidator bus = validator();

  // Offline: the network is down for the bus while it scans.
  network->set_link_up("BV-QR-1", false);
  std::int64_t charged = 0;
  for (int i = 0; i < 3; ++i) {
    loop.run_until(loop.now_us() + 30'000'000);
    auto code = wallet->show(now_s());
    ASSERT_TRUE(code.is_ok()) << code.status().to_string();
    auto scan = bus.scan(*code, now_s(), 200);
    ASSERT_TRUE(scan.ok()) << scan.detail;
    charged += 200;
    // The same code again (a screenshot passed back): refused.
    EXPECT_EQ(bus.scan(*code, now_s(), 200).refusal, QrRefusal::kReplayed);
  }
  bus.upload(*bus_channel);
  loop.run_until(loop.now_us() + 1'000'000);
  EXPECT_EQ(bus.counters().upload_failures, 1u);
  EXPECT_EQ(account(card), 1000);  // nothing moved yet

  network->set_link_up("BV-QR-1", true);
  drain(bus);
  EXPECT_EQ(bus.queued(), 0u);
  EXPECT_EQ(bus.counters().uploaded, 3u);
  EXPECT_EQ(bus.counters().acked_amount_fen, charged);
  EXPECT_EQ(account(card), 1000 - charged);
  EXPECT_EQ(*backend->ledger().balance("qr_payable:SH-BUS-1"), -charged);

  // The bus company is a merchant: the next day's settlement pays it the QR money, once.
  backend::MerchantParams company;
  company.merchant_id = "SH-BUS-1";
  company.name = "Shanghai Bus 1";
  company.kind = backend::MerchantKind::kTransit;
  company.bank_name = "ICBC";
  company.bank_account = "62220001";
  company.account_name = "SH Bus 1 Ltd";
  ASSERT_TRUE(backend->merchants().create(admin, company).is_ok());
  ASSERT_TRUE(backend->users()
                  .create_user(admin, {"fin1", "password-1", backend::Role::kFinance, ""})
                  .is_ok());
  const backend::Session fin1 = *backend->users().login("fin1", "password-1");
  loop.run_until(loop.now_us() + 86'400'000'000LL);
  for (int day = 0; day < 2; ++day) {
    auto batch = backend->settlement().prepare(fin1);
    ASSERT_TRUE(batch.is_ok()) << batch.status().to_string();
    std::int64_t qr_fen = 0;
    for (const auto& l : batch->lines) {
      if (l.party_id == "SH-BUS-1") qr_fen += l.qr_fen;
    }
    EXPECT_EQ(qr_fen, day == 0 ? charged : 0) << "day " << day;
    ASSERT_TRUE(backend->settlement().approve(admin, batch->id).is_ok());
    loop.run_until(loop.now_us() + 86'400'000'000LL);
  }
  EXPECT_EQ(*backend->ledger().balance("qr_payable:SH-BUS-1"), 0);
}

TEST_F(QrPaymentTest, ExpiredForgedOverLimitAndStrangersCodesAreRefused) {
  const protocol::Serial8 card = named_card(1000);
  auto wallet = QrWallet::create(card);
  ASSERT_TRUE(wallet.is_ok());
  ASSERT_TRUE(wallet->request_key(*client, wallet_terminal, 3600, 300).is_ok());
  QrValidator bus = validator();

  auto old = wallet->show(now_s());
  ASSERT_TRUE(old.is_ok());
  loop.run_until(loop.now_us() + 120'000'000);  // two minutes later
  EXPECT_EQ(bus.scan(*old, now_s(), 200).refusal, QrRefusal::kExpired);

  auto code = wallet->show(now_s());
  ASSERT_TRUE(code.is_ok());
  EXPECT_EQ(bus.scan(*code, now_s(), 301).refusal, QrRefusal::kOverLimit);
  Bytes tampered = *code;
  tampered[protocol::qr::Grant::kSize + 10] ^= 0x01;  // inside the grant's signature
  EXPECT_EQ(bus.scan(tampered, now_s(), 200).refusal, QrRefusal::kBadGrant);
  Bytes resigned = *code;
  resigned.back() ^= 0x01;  // the phone's signature
  auto r = bus.scan(resigned, now_s(), 200).refusal;
  EXPECT_TRUE(r == QrRefusal::kBadSignature || r == QrRefusal::kMalformed);
  EXPECT_EQ(bus.scan(Bytes{1, 2, 3}, now_s(), 200).refusal, QrRefusal::kMalformed);

  // A phone that made its own "grant" with its own key: not the QR issuer's.
  auto rogue_issuer = protocol::qr::EcKey::generate();
  auto rogue_phone = protocol::qr::EcKey::generate();
  protocol::qr::Payload p;
  p.grant = *wallet->grant();
  p.grant.phone_key = rogue_phone->public_point();
  p.grant_signature = *rogue_issuer->sign(p.grant.encode());
  p.seq = 1;
  p.created_s = now_s();
  p.signature = *rogue_phone->sign(p.signed_part());
  EXPECT_EQ(bus.scan(p.encode(), now_s(), 200).refusal, QrRefusal::kBadGrant);

  // After the grant's validity the phone shows nothing and the bus would refuse it.
  loop.run_until(loop.now_us() + 3'700'000'000LL);
  EXPECT_EQ(wallet->show(now_s()).status().code(), Errc::kRejected);
  EXPECT_EQ(bus.scan(*code, now_s(), 200).refusal, QrRefusal::kGrantExpired);
  EXPECT_EQ(bus.counters().accepted, 0u);
  EXPECT_EQ(account(card), 1000);
}

// Two validators each accept the same code offline (they cannot know of each other): the
// backend pays it once and answers the second DUPLICATE.
TEST_F(QrPaymentTest, TheSameCodeUploadedByTwoValidatorsIsPaidOnce) {
  const protocol::Serial8 card = named_card(1000);
  auto wallet = QrWallet::create(card);
  ASSERT_TRUE(wallet->request_key(*client, wallet_terminal, 86'400, 500).is_ok());
  QrValidator a = validator();
  QrValidator b = validator();
  auto code = wallet->show(now_s());
  ASSERT_TRUE(a.scan(*code, now_s(), 200).ok());
  ASSERT_TRUE(b.scan(*code, now_s(), 200).ok());
  drain(a);
  drain(b);
  EXPECT_EQ(a.counters().uploaded, 1u);
  EXPECT_EQ(b.counters().uploaded, 0u);
  EXPECT_EQ(b.counters().upload_duplicates, 1u);
  EXPECT_EQ(account(card), 800);
}

TEST_F(QrPaymentTest, KeysOnlyForNamedCardsAndAnEmptyAccountIsRejectedAtUpload) {
  backend::CardParams anonymous;
  auto anon = backend->issue_card(anonymous);
  ASSERT_TRUE(anon.is_ok());
  auto w1 = QrWallet::create(anon->serial);
  EXPECT_EQ(w1->request_key(*client, wallet_terminal, 3600, 500).code(), Errc::kRejected);

  const protocol::Serial8 poor = named_card(0);
  auto w2 = QrWallet::create(poor);
  ASSERT_TRUE(w2->request_key(*client, wallet_terminal, 3600, 500).is_ok());
  QrValidator bus = validator();
  auto code = w2->show(now_s());
  ASSERT_TRUE(bus.scan(*code, now_s(), 200).ok());  // offline: the bus cannot know
  drain(bus);
  EXPECT_EQ(bus.counters().upload_rejected, 1u);
  EXPECT_EQ(account(poor), 0);
}

// A validator provisioned with a certificate that does not chain to its trusted root refuses
// to start: it would otherwise accept codes from anyone who made their own issuer.
TEST_F(QrPaymentTest, ValidatorRefusesAnIssuerCertificateOutsideItsTrust) {
  auto v = QrValidator::from_certificate(issuer_cert_pem, ca->city_ca_pem(), {}, ca->now_unix_s(),
                                         bus_terminal);
  EXPECT_EQ(v.status().code(), Errc::kRejected) << v.status().to_string();
  auto garbage = QrValidator::from_certificate("not a certificate", ca->root_pem(), {},
                                               ca->now_unix_s(), bus_terminal);
  EXPECT_EQ(garbage.status().code(), Errc::kMalformed);
}

}  // namespace
}  // namespace citycard
