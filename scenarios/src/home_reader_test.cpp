// The home reader with its own certificate, over real ZeroMQ with CURVE (issue 5): online
// recharge paid at the simulated bank, the load authorisation, the load, the confirmation; a
// reader whose certificate was revoked is refused its handshake and nothing moves.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "citycard/backend/backend.h"
#include "citycard/backend/ca.h"
#include "citycard/backend/server.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/home_reader.h"
#include "citycard/sim/clock.h"

#include "backend_test_support.h"

namespace citycard {
namespace {

using devices::CpuCard;
using devices::DirectLink;

struct ReaderIdentity {
  protocol::TerminalId terminal_id{};
  sim::CurveKeyPair curve;
  backend::CertificateInfo certificate;
};

class HomeReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!sim::curve_available()) GTEST_SKIP() << "libzmq without CURVE";
    backend::BackendOptions o;
    o.key_seed = 11;
    o.store.synchronous_full = false;
    o.money.bank.latency_us_min = 1'000;  // the bank answers within milliseconds of wall time
    o.money.bank.latency_us_max = 2'000;
    o.money.bank.decline_probability = 0;
    o.money.bank.lost_callback_probability = 0;
    auto opened = backend::Backend::open(testsupport::fresh_backend_db("home_reader"), o, clock_);
    ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
    backend_ = std::move(opened).value();
    backend::ServerOptions so;
    so.listen = "tcp://127.0.0.1:*";
    so.poll_interval_ms = 5;
    so.on_tick = [this] { (void)backend_->poll(); };  // on the serving thread
    std::string root_key;
    auto s = backend::Server::open(*backend_, ctx_, so, &root_key);
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    server_ = std::move(s).value();
  }
  void TearDown() override {
    stop();
    if (backend_) {
      Status s = backend_->check_conservation();
      EXPECT_TRUE(s.is_ok()) << s.to_string();
    }
  }
  void serve() {
    thread_ = std::thread([this] { server_->serve(); });
  }
  void stop() {
    if (thread_.joinable()) {
      server_->stop();
      thread_.join();
    }
  }

  // A reader registered as a load terminal, with a key pair and a reader-city certificate
  // binding its CURVE key. Before serve(): the backend is this thread's until then.
  ReaderIdentity commission_reader(const std::string& subject) {
    ReaderIdentity r;
    backend::TerminalParams tp;
    tp.operator_id = "HOME-READERS";
    tp.device_id = subject;
    auto psam = backend_->register_terminal(tp);
    EXPECT_TRUE(psam.is_ok()) << psam.status().to_string();
    r.terminal_id = psam->terminal_id;
    auto keys = backend::generate_key_pair();
    EXPECT_TRUE(keys.is_ok());
    r.curve = *sim::generate_curve_key_pair();
    backend::CertRequest req;
    req.role = backend::CertRole::kReaderCity;
    req.subject_id = subject;
    req.public_key_pem = keys->public_pem;
    req.curve_key = r.curve.public_key;
    auto cert = server_->ca().enrol(req);
    EXPECT_TRUE(cert.is_ok()) << cert.status().to_string();
    r.certificate = *cert;
    return r;
  }
  devices::HomeReaderOptions reader_options(const ReaderIdentity& r) {
    auto trust = backend::CertificateVerifier::create(server_->ca().root_pem(),
                                                      {server_->ca().city_ca_pem()},
                                                      {*server_->ca().crl_pem("city:3100")});
    EXPECT_TRUE(trust.is_ok());
    auto curve = backend::curve_client_options(**trust, server_->identity().certificate.pem,
                                               server_->ca().now_unix_s(), r.curve);
    EXPECT_TRUE(curve.is_ok()) << curve.status().to_string();
    devices::HomeReaderOptions o;
    o.terminal_id = r.terminal_id;
    o.endpoint = server_->endpoint();
    o.zmq.curve = *curve;
    o.timeout_ms = 5'000;
    return o;
  }
  CpuCard issue(std::int64_t balance_fen) {
    backend::CardParams p;
    p.opening_balance_fen = balance_fen;
    auto image = backend_->issue_card(p);
    EXPECT_TRUE(image.is_ok());
    return CpuCard(*image, sim::Rng(91));
  }

  sim::WallClock clock_;
  zmq::context_t ctx_;
  std::unique_ptr<backend::Backend> backend_;
  std::unique_ptr<backend::Server> server_;
  std::thread thread_;
};

TEST_F(HomeReaderTest, CertifiedReaderPaysAtTheBankAndLoadsTheCard) {
  const ReaderIdentity id = commission_reader("reader-0001");
  CpuCard card = issue(300);
  const protocol::DateTime7 when = backend_->calendar().now_datetime();
  devices::HomeReaderOptions o = reader_options(id);
  serve();
  devices::HomeReader reader(o, ctx_);
  card.reset();
  DirectLink link(card);
  devices::OnlineLoad r = reader.recharge(link, card.serial(), "home-0001", 5000, when);
  ASSERT_TRUE(r.ok()) << r.status.to_string() << " / " << r.result.detail;
  ASSERT_TRUE(r.confirmation);
  EXPECT_EQ(r.confirmation->state(), wire::ORDER_LOADED);
  EXPECT_EQ(r.confirmation->balance_after_fen(), 5300);
  EXPECT_EQ(card.balance_fen(), 5300u);
  stop();
  EXPECT_EQ(backend_->issuance().card(card.serial())->balance_fen, 5300);
  EXPECT_EQ(backend_->recharge().order("home-0001")->state, backend::OrderState::kLoaded);
}

TEST_F(HomeReaderTest, ReaderWithARevokedCertificateIsRefusedAndNothingMoves) {
  const ReaderIdentity id = commission_reader("reader-0002");
  ASSERT_TRUE(server_->ca()
                  .revoke(id.certificate.serial_hex, backend::RevocationReason::kKeyCompromise)
                  .is_ok());
  CpuCard card = issue(300);
  const protocol::DateTime7 when = backend_->calendar().now_datetime();
  devices::HomeReaderOptions o = reader_options(id);
  serve();
  devices::HomeReader reader(o, ctx_);
  card.reset();
  DirectLink link(card);
  devices::OnlineLoad r = reader.recharge(link, card.serial(), "home-0002", 5000, when);
  EXPECT_EQ(r.status.code(), Errc::kRejected) << r.status.to_string();
  EXPECT_EQ(card.balance_fen(), 300u);
  stop();
  EXPECT_FALSE(backend_->recharge().order("home-0002").is_ok());
  EXPECT_EQ(backend_->issuance().card(card.serial())->balance_fen, 300);
}

}  // namespace
}  // namespace citycard
