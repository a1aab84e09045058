// QR payment as the Backend makes it (qr.h): the issuer key is kept in the store and certified
// by the city CA, survives a restart and a renewal, and the operator's QR money is settled to
// it once, with its card swipes.
#include "citycard/backend/qr.h"

#include <gtest/gtest.h>

#include "citycard/backend/ca.h"
#include "citycard/backend/money.h"
#include "citycard/sim/zmq_transport.h"
#include "money_test_util.h"

namespace citycard::backend {
namespace {

namespace pw = protocol::wire;
namespace qr = protocol::qr;
using citycard::wire::Envelope;
using testing::PurseCard;
using testing::TestTerminal;

class QrBackendTest : public testing::MoneyTest {
 protected:
  void SetUp() override {
    if (!sim::curve_available()) GTEST_SKIP() << "libzmq without CURVE (server certificates)";
    path = dir.file("qr.db");
    open(path);
    init();
    MerchantParams bus = merchant("bus", MerchantKind::kTransit);
    bus.txn_fee_bp = 50;
    add_merchant(bus);
    bus_validator = terminal("bus", "15");
    open_ca();
    auto phone_key = qr::EcKey::generate();
    ASSERT_TRUE(phone_key.is_ok());
    phone = std::make_unique<qr::EcKey>(std::move(phone_key).value());
  }
  void open_ca() {
    std::string root_key;
    auto c = CertificateAuthority::open(backend->store(), backend->calendar(), {}, &root_key);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    ca = std::move(c).value();
  }
  void reopen() {
    ca.reset();
    backend.reset();
    open(path);
    admin = login("root");
    fin1 = login("fin1");
    fin2 = login("fin2");
  }
  // A named card whose holder's online account holds `fen`, topped up at the bank.
  PurseCard funded_card(std::int64_t fen) {
    PurseCard c = issue_card(0, 0, true);
    OrderRequest top;
    top.order_id = "TOP-" + std::to_string(++orders);
    top.channel = Channel::kBank;
    top.card = c.serial();
    top.to_account = true;
    top.amount_fen = fen;
    EXPECT_TRUE(backend->recharge().create_customer_order("web", top).is_ok());
    advance_s(5);
    EXPECT_TRUE(backend->poll().is_ok());
    EXPECT_EQ(backend->recharge().order(top.order_id)->state, OrderState::kLoaded);
    return c;
  }
  Envelope ask_key(const PurseCard& c) {
    Envelope e;
    e.set_request_id(1);
    auto* m = e.mutable_qr_key_request();
    m->set_terminal_id(pw::field(load_terminal));
    m->set_card_serial(pw::field(c.serial()));
    const qr::PublicPoint p = phone->public_point();
    m->set_phone_key(std::string(p.begin(), p.end()));
    m->set_validity_s(86'400);
    m->set_max_amount_fen(500);
    return backend->service().handle_envelope(e);
  }
  // What the phone shows: the grant and its signature from `reply`, signed by the phone.
  Bytes code(const Envelope& reply, std::uint32_t seq) {
    qr::Payload p;
    const std::string& g = reply.qr_key_reply().grant();
    p.grant = *qr::Grant::decode(Bytes(g.begin(), g.end()));
    const std::string& s = reply.qr_key_reply().grant_signature();
    p.grant_signature = Bytes(s.begin(), s.end());
    p.seq = seq;
    p.created_s = backend->calendar().now_epoch2000_s();
    p.signature = *phone->sign(p.signed_part());
    return p.encode();
  }
  citycard::wire::QrUploadAck upload(const std::vector<Bytes>& codes, std::int64_t amount) {
    Envelope e;
    e.set_request_id(2);
    auto* m = e.mutable_qr_upload();
    m->set_terminal_id(pw::field(bus_validator.psam.terminal_id));
    m->set_batch_no(++batches);
    for (const Bytes& c : codes) {
      auto* p = m->add_payments();
      p->set_payload(std::string(c.begin(), c.end()));
      p->set_amount_fen(amount);
      p->set_scanned_s(backend->calendar().now_epoch2000_s());
    }
    m->set_total_amount_fen(amount * static_cast<std::int64_t>(codes.size()));
    const Envelope r = backend->service().handle_envelope(e);
    EXPECT_TRUE(r.has_qr_upload_ack()) << r.DebugString();
    return r.qr_upload_ack();
  }
  std::int64_t account(const PurseCard& c) {
    return backend->cards().info(c.serial())->holder->account_fen;
  }

  testing::TempDir dir;
  std::string path;
  std::unique_ptr<CertificateAuthority> ca;
  std::unique_ptr<qr::EcKey> phone;
  TestTerminal bus_validator;
  int orders = 0;
  std::uint64_t batches = 0;
};

TEST_F(QrBackendTest, WithoutACertifiedIssuerNoKeysAreIssued) {
  PurseCard c = issue_card(0, 0, true);
  EXPECT_FALSE(backend->qr().ready());
  const Envelope r = ask_key(c);
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code(), citycard::wire::UNSUPPORTED);
  EXPECT_NE(r.error().message().find("certified"), std::string::npos);
}

TEST_F(QrBackendTest, TheIssuerKeyIsCertifiedByTheCityCaAndSurvivesARestart) {
  auto pem = backend->certify_qr(*ca);
  ASSERT_TRUE(pem.is_ok()) << pem.status().to_string();
  EXPECT_EQ(*backend->certify_qr(*ca), *pem) << "a current certificate is kept";
  // A validator checks it offline against the root and the city CA.
  auto point = qr::verify_certificate(*pem, ca->root_pem(), {ca->city_ca_pem()}, ca->now_unix_s());
  ASSERT_TRUE(point.is_ok()) << point.status().to_string();
  EXPECT_EQ(*point, *backend->qr().issuer_point());
  // Not under another trust anchor.
  EXPECT_FALSE(qr::verify_certificate(*pem, ca->city_ca_pem(), {}, ca->now_unix_s()).is_ok());

  PurseCard c = funded_card(1'000);
  const Envelope grant = ask_key(c);
  ASSERT_TRUE(grant.has_qr_key_reply()) << grant.DebugString();
  const Bytes before = code(grant, 1);

  reopen();  // no CA opened: the key comes from the store
  ASSERT_TRUE(backend->qr().ready());
  EXPECT_EQ(backend->qr().issuer_certificate_pem(), *pem);
  EXPECT_EQ(*backend->qr().issuer_point(), *point);
  auto ack = upload({before}, 200);
  EXPECT_EQ(ack.accepted(), 1u) << ack.DebugString();
  EXPECT_EQ(account(c), 800);
  // And new grants are signed with the same key.
  const Envelope after = ask_key(c);
  ASSERT_TRUE(after.has_qr_key_reply());
  const std::string& g = after.qr_key_reply().grant();
  const std::string& s = after.qr_key_reply().grant_signature();
  EXPECT_TRUE(qr::verify(*point, Bytes(g.begin(), g.end()), Bytes(s.begin(), s.end())));
}

TEST_F(QrBackendTest, ARevokedIssuerCertificateIsRenewedAndOldGrantsStillPay) {
  auto pem = backend->certify_qr(*ca);
  ASSERT_TRUE(pem.is_ok());
  PurseCard c = funded_card(1'000);
  const Envelope old_grant = ask_key(c);
  ASSERT_TRUE(old_grant.has_qr_key_reply());
  auto info = ca->import(*pem, CertRole::kServer);
  ASSERT_TRUE(info.is_ok()) << info.status().to_string();
  ASSERT_TRUE(ca->revoke(info->serial_hex, RevocationReason::kSuperseded).is_ok());
  auto renewed = backend->certify_qr(*ca);
  ASSERT_TRUE(renewed.is_ok()) << renewed.status().to_string();
  EXPECT_NE(*renewed, *pem);
  auto point =
      qr::verify_certificate(*renewed, ca->root_pem(), {ca->city_ca_pem()}, ca->now_unix_s());
  ASSERT_TRUE(point.is_ok());
  EXPECT_EQ(*point, *backend->qr().issuer_point());
  // A grant made under the old key, scanned after the renewal: still paid (the money is real).
  auto ack = upload({code(old_grant, 1)}, 300);
  EXPECT_EQ(ack.accepted(), 1u) << ack.DebugString();
  // A grant signed by a key we never had is not.
  auto rogue = qr::EcKey::generate();
  Envelope forged = old_grant;
  const std::string& g = old_grant.qr_key_reply().grant();
  const Bytes sig = *rogue->sign(Bytes(g.begin(), g.end()));
  forged.mutable_qr_key_reply()->set_grant_signature(std::string(sig.begin(), sig.end()));
  ack = upload({code(forged, 2)}, 300);
  EXPECT_EQ(ack.accepted(), 0u);
  ASSERT_EQ(ack.problems_size(), 1);
  EXPECT_EQ(ack.problems(0).code(), citycard::wire::BAD_SIGNATURE);
  EXPECT_EQ(account(c), 700);
}

TEST_F(QrBackendTest, SettlementPaysTheOperatorsQrMoneyOnceWithItsSwipes) {
  ASSERT_TRUE(backend->certify_qr(*ca).is_ok());
  PurseCard c = funded_card(2'000);
  const Envelope grant = ask_key(c);
  ASSERT_TRUE(grant.has_qr_key_reply());
  PurseCard rider = issue_card(5'000);
  ASSERT_TRUE(
      backend->upload(make_batch(bus_validator, {purchase(rider.card, bus_validator, 200, now())}))
          .ok());
  EXPECT_EQ(upload({code(grant, 1), code(grant, 2), code(grant, 3)}, 300).accepted(), 3u);
  EXPECT_EQ(ledger(account::qr_payable("bus")), -900);
  next_day();
  auto b = backend->settlement().prepare(fin1);
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  const SettlementLine* line = nullptr;
  for (const auto& l : b->lines) {
    if (l.party_id == "bus") line = &l;
  }
  ASSERT_NE(line, nullptr);
  EXPECT_EQ(line->gross_fen, 200);
  EXPECT_EQ(line->qr_count, 3);
  EXPECT_EQ(line->qr_fen, 900);
  EXPECT_EQ(line->fee_fen, rate_of(1'100, 50));
  EXPECT_EQ(line->net_fen, 1'100 - rate_of(1'100, 50));
  // A QR payment arriving after the review is dated today, outside the line's period: the
  // reviewed figures stand and it waits for tomorrow's line.
  EXPECT_EQ(upload({code(grant, 4)}, 100).accepted(), 1u);
  ASSERT_TRUE(backend->check_conservation().is_ok());
  ASSERT_TRUE(backend->settlement().approve(fin2, b->id).is_ok());
  EXPECT_EQ(ledger(account::qr_payable("bus")), -100) << "today's payment waits for tomorrow";
  EXPECT_EQ(ledger(account::payable("bus")), 0);
  ASSERT_TRUE(backend->check_conservation().is_ok());

  // The next day's line has only the payment of that day: nothing is paid twice.
  next_day();
  b = backend->settlement().prepare(fin1);
  ASSERT_TRUE(b.is_ok());
  std::int64_t qr_fen = 0;
  for (const auto& l : b->lines) {
    if (l.party_id == "bus") qr_fen += l.qr_fen;
  }
  EXPECT_EQ(qr_fen, 100);
  ASSERT_TRUE(backend->settlement().approve(fin2, b->id).is_ok());
  EXPECT_EQ(ledger(account::qr_payable("bus")), 0);
  // And the bank file pays the operator what its lines say.
  auto file = backend->settlement().write_bank_file(fin1, b->id);
  ASSERT_TRUE(file.is_ok());
  EXPECT_EQ(file->total_fen, 100 - rate_of(100, 50));
}

// The conservation check sees QR money that left qr_payable without a settlement line.
TEST_F(QrBackendTest, ConservationCatchesQrPayableMovedOutsideSettlement) {
  ASSERT_TRUE(backend->certify_qr(*ca).is_ok());
  PurseCard c = funded_card(1'000);
  const Envelope grant = ask_key(c);
  ASSERT_EQ(upload({code(grant, 1)}, 300).accepted(), 1u);
  ASSERT_TRUE(backend->check_conservation().is_ok());
  Posting p{"test", "tamper", {{account::qr_payable("bus"), 300}, {"cash:issuer", -300}}};
  ASSERT_TRUE(backend->ledger().post(p).is_ok());
  const Status s = backend->check_conservation();
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("qr_payable:bus"), std::string::npos) << s.message();
  // Put it back so that TearDown's check holds.
  Posting undo{"test", "untamper", {{account::qr_payable("bus"), -300}, {"cash:issuer", 300}}};
  ASSERT_TRUE(backend->ledger().post(undo).is_ok());
}

}  // namespace
}  // namespace citycard::backend
