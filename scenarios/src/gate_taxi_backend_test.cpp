// The metro gate and the taxi module against the clearing centre (issue 5): blacklist deltas
// pulled over the wire refuse a card, expired and short cards are refused without a charge,
// and sales made while the link is down upload once it is back, with the backend's books
// equal to what the terminals charged.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "citycard/backend/backend.h"
#include "citycard/devices/blacklist_cache.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/host_session.h"
#include "citycard/devices/metro_gate.h"
#include "citycard/devices/persistent_queue.h"
#include "citycard/devices/taxi_meter.h"
#include "citycard/sim/event_loop.h"
#include "citycard/sim/transport.h"

#include "backend_test_support.h"

namespace citycard {
namespace {

using devices::CpuCard;
using devices::DirectLink;
using devices::HostSession;
using devices::Refusal;
using devices::SaleResult;

constexpr std::int64_t kSecond = 1'000'000;

using Proxy = testsupport::ServiceHandler;

// What every terminal of these tests has: PSAM, link, durable log, blacklist, host session.
struct Terminal {
  protocol::PsamImage image;
  std::unique_ptr<devices::Psam> psam;
  std::unique_ptr<sim::Channel> channel;
  std::shared_ptr<devices::MemoryDisk> disk = std::make_shared<devices::MemoryDisk>();
  std::unique_ptr<devices::MemoryLogStorage> storage;
  devices::BlacklistCache blacklist;
  std::unique_ptr<HostSession> host;
};

class GateTaxiBackend : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = testsupport::open_test_backend("gate_taxi", 31, loop);
    ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
    backend = std::move(opened).value();
    admin = *backend->users().login("root", "password-1");
    proxy = std::make_unique<Proxy>(*backend);
    network = std::make_unique<sim::SimNetwork>(loop, sim::Rng(8), sim::NetworkOptions{});
  }
  void TearDown() override {
    if (backend) {
      Status s = backend->check_conservation();
      EXPECT_TRUE(s.is_ok()) << s.to_string();
    }
  }

  void attach(Terminal& t, const std::string& op, const std::string& device) {
    backend::TerminalParams tp;
    tp.operator_id = op;
    tp.device_id = device;
    auto image = backend->register_terminal(tp);
    ASSERT_TRUE(image.is_ok());
    t.image = *image;
    t.psam = std::make_unique<devices::Psam>(t.image);
    t.channel = network->connect(*proxy, device);
    t.storage = std::make_unique<devices::MemoryLogStorage>(t.disk);
  }
  devices::SaleCoreOptions core(const std::string& op, const std::string& device) {
    devices::SaleCoreOptions c;
    c.device_id = device;
    c.operator_id = op;
    c.calendar_origin_epoch2000_s = backend->calendar().now_epoch2000_s();
    return c;
  }
  void host(Terminal& t, const std::string& op, const std::string& device,
            devices::TerminalClock& clock) {
    t.host = std::make_unique<HostSession>(
        devices::HostSessionOptions{t.image.terminal_id, device, op, 100}, *t.channel, clock,
        t.blacklist);
  }
  Status pull(Terminal& t) {
    std::optional<Status> out;
    t.host->sync([&](Status s) { out = s; });
    for (int i = 0; !out && i < 100; ++i) loop.run_until(loop.now_us() + kSecond);
    return out.value_or(Status(Errc::kTimeout, "no answer"));
  }
  template <class Upload>
  void drain(Upload upload, const devices::DurableUploadQueue& q) {
    for (int i = 0; i < 30 && q.size() > 0; ++i) {
      upload();
      loop.run_until(loop.now_us() + 10 * kSecond);
    }
  }
  CpuCard issue(std::int64_t balance_fen,
                std::optional<std::array<std::uint8_t, 4>> valid_to = std::nullopt) {
    backend::CardParams p;
    p.opening_balance_fen = balance_fen;
    if (valid_to) {
      p.valid_from = protocol::date_bcd(2020, 1, 1);
      p.valid_to = valid_to;
    }
    auto image = backend->issue_card(p);
    EXPECT_TRUE(image.is_ok());
    return CpuCard(*image, sim::Rng(500 + ++cards_));
  }
  std::int64_t believed(const CpuCard& c) const {
    return backend->issuance().card(c.serial())->balance_fen;
  }
  std::int64_t payable(const std::string& op) const {
    auto b = backend->ledger().balance("payable:" + op);
    return b.is_ok() ? *b : 0;
  }

  sim::EventLoop loop;
  std::unique_ptr<backend::Backend> backend;
  backend::Session admin;
  std::unique_ptr<Proxy> proxy;
  std::unique_ptr<sim::SimNetwork> network;
  int cards_ = 0;
};

devices::MetroGateConfig gate_config(devices::SaleCoreOptions core, std::uint16_t station) {
  devices::MetroGateConfig c;
  c.core = std::move(core);
  c.station = station;
  c.position_m = {{1, 0}, {2, 5000}, {3, 11000}};
  c.fare.base = devices::FarePolicy::Base::kDistance;
  c.fare.distance = devices::DistanceTable{{{6000, 300}, {12000, 400}}, 20000, 100, 0};
  return c;
}

TEST_F(GateTaxiBackend, MetroGatesRefuseBlacklistedAndExpiredCardsAndUploadAfterTheLinkReturns) {
  Terminal a, b;
  attach(a, "SH-METRO", "G-1");
  attach(b, "SH-METRO", "G-3");
  devices::MetroGate entry(gate_config(core("SH-METRO", "G-1"), 1), *a.psam, loop, *a.channel,
                           *a.storage);
  devices::MetroGate exit(gate_config(core("SH-METRO", "G-3"), 3), *b.psam, loop, *b.channel,
                          *b.storage);
  host(a, "SH-METRO", "G-1", entry.core().clock());
  entry.set_blacklist(a.blacklist.predicate());
  exit.set_blacklist(b.blacklist.predicate());

  CpuCard rider = issue(2000);
  CpuCard stolen = issue(2000);
  CpuCard expired = issue(2000, protocol::date_bcd(2021, 6, 30));
  ASSERT_TRUE(backend->cards().freeze(admin, stolen.serial(), "reported stolen").is_ok());
  ASSERT_TRUE(pull(a).is_ok()) << a.host->last_failure().to_string();
  EXPECT_TRUE(a.blacklist.listed(stolen.serial()));

  auto tap = [&](devices::MetroGate& g, CpuCard& c, bool in) {
    c.reset();
    DirectLink link(c);
    return in ? g.enter(link) : g.exit(link);
  };
  EXPECT_EQ(tap(entry, stolen, true).refusal, Refusal::kBlacklisted);
  EXPECT_EQ(tap(entry, expired, true).refusal, Refusal::kCardExpired);
  EXPECT_EQ(stolen.balance_fen(), 2000u);
  EXPECT_EQ(expired.balance_fen(), 2000u);

  // The line's link is down for the ride: both gates keep selling.
  network->set_link_up("G-1", false);
  network->set_link_up("G-3", false);
  ASSERT_TRUE(tap(entry, rider, true).ok());
  loop.run_until(loop.now_us() + 20 * 60 * kSecond);
  SaleResult out = tap(exit, rider, false);
  ASSERT_TRUE(out.ok()) << out.detail;
  EXPECT_EQ(out.record.amount_fen(), 400);  // 11 km
  entry.upload();
  exit.upload();
  loop.run_until(loop.now_us() + 10 * kSecond);
  EXPECT_EQ(exit.core().queue().size(), 1u);
  EXPECT_EQ(believed(rider), 2000);

  network->set_link_up("G-1", true);
  network->set_link_up("G-3", true);
  drain([&] { entry.upload(); }, entry.core().queue());
  drain([&] { exit.upload(); }, exit.core().queue());
  EXPECT_EQ(entry.core().queue().size(), 0u);
  EXPECT_EQ(exit.core().queue().size(), 0u);
  EXPECT_EQ(rider.balance_fen(), 1600u);
  EXPECT_EQ(believed(rider), 1600);
  EXPECT_EQ(-payable("SH-METRO"), entry.core().queue().counters().amount_fen_acked +
                                      exit.core().queue().counters().amount_fen_acked);
  EXPECT_EQ(-payable("SH-METRO"), 400);
}

TEST_F(GateTaxiBackend, TaxiRefusesBlacklistedExpiredAndShortCardsAndUploadsAfterAnOutage) {
  Terminal t;
  attach(t, "SH-TAXI", "TX-1");
  devices::TaxiModuleConfig c;
  c.core = core("SH-TAXI", "TX-1");
  c.plate = "沪B-00001";
  c.driver = "D-1";
  devices::TaxiModule taxi(c, *t.psam, loop, *t.channel, *t.storage);
  host(t, "SH-TAXI", "TX-1", taxi.core().clock());
  taxi.core().engine().set_blacklist(t.blacklist.predicate());

  CpuCard rider = issue(10'000);
  CpuCard stolen = issue(10'000);
  CpuCard expired = issue(10'000, protocol::date_bcd(2021, 6, 30));
  CpuCard poor = issue(1000);
  ASSERT_TRUE(backend->cards().freeze(admin, stolen.serial(), "reported stolen").is_ok());
  ASSERT_TRUE(pull(t).is_ok());

  auto trip = [&] {
    devices::TaxiMeter m;
    m.start(backend->calendar().now_epoch2000_s());
    m.drive(8000, 900);
    return m;
  };
  auto charge = [&](CpuCard& card) {
    card.reset();
    DirectLink link(card);
    return taxi.charge(link, trip());
  };
  EXPECT_EQ(charge(stolen).refusal, Refusal::kBlacklisted);
  EXPECT_EQ(charge(expired).refusal, Refusal::kCardExpired);
  EXPECT_EQ(charge(poor).refusal, Refusal::kInsufficientBalance);
  EXPECT_EQ(poor.balance_fen(), 1000u);
  EXPECT_EQ(expired.balance_fen(), 10'000u);

  network->set_link_up("TX-1", false);
  const SaleResult r = charge(rider);
  ASSERT_TRUE(r.ok()) << r.detail;
  taxi.upload();
  loop.run_until(loop.now_us() + 10 * kSecond);
  EXPECT_EQ(taxi.core().queue().size(), 1u);
  EXPECT_GE(taxi.core().queue().counters().failures, 1u);
  network->set_link_up("TX-1", true);
  drain([&] { taxi.upload(); }, taxi.core().queue());
  EXPECT_EQ(taxi.core().queue().size(), 0u);
  EXPECT_EQ(-payable("SH-TAXI"), r.record.amount_fen());
  EXPECT_EQ(believed(rider), static_cast<std::int64_t>(rider.balance_fen()));
}

}  // namespace
}  // namespace citycard
