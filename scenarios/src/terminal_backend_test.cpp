// Terminals and the clearing centre over the wire (issue 5): sign-on with clock correction,
// blacklist deltas, fare-table downloads with versions, signed batch uploads whose totals the
// backend's books match, and the backend's checks of terminal id and operator. Real parts
// throughout: the backend on a SQLite file, the bus terminal with its PSAM, CPU cards issued
// by the backend, the simulated network in virtual time (sim::SimNetwork) with an outage.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "citycard/backend/backend.h"
#include "citycard/devices/blacklist_cache.h"
#include "citycard/devices/bus_terminal.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/host_session.h"
#include "citycard/devices/persistent_queue.h"
#include "citycard/sim/event_loop.h"
#include "citycard/sim/transport.h"

#include "backend_test_support.h"

namespace citycard {
namespace {

using devices::BusTerminal;
using devices::BusTerminalConfig;
using devices::CpuCard;
using devices::DirectLink;
using devices::HostSession;
using devices::Refusal;
using devices::SaleResult;

constexpr std::int64_t kSecond = 1'000'000;
constexpr std::int64_t kMinute = 60 * kSecond;
constexpr std::int64_t kHour = 60 * kMinute;
const std::string kOperator = "SH-BUS-1";

using Proxy = testsupport::ServiceHandler;

// A bus with its PSAM, durable queue, blacklist cache and host session, on its own link.
struct Bus {
  std::string device;
  protocol::PsamImage psam_image;
  std::unique_ptr<devices::Psam> psam;
  std::unique_ptr<sim::Channel> channel;
  std::shared_ptr<devices::MemoryDisk> disk = std::make_shared<devices::MemoryDisk>();
  std::unique_ptr<devices::MemoryLogStorage> storage;
  devices::BlacklistCache blacklist;
  std::unique_ptr<BusTerminal> terminal;
  std::unique_ptr<HostSession> host;
};

class TerminalBackend : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = testsupport::open_test_backend("terminal_backend", 5, loop);
    ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
    backend = std::move(opened).value();
    auto s = backend->users().login("root", "password-1");
    ASSERT_TRUE(s.is_ok());
    admin = *s;
    proxy = std::make_unique<Proxy>(*backend);
    network = std::make_unique<sim::SimNetwork>(loop, sim::Rng(77), sim::NetworkOptions{});
    publish_flat("71", 200);
  }
  void TearDown() override {
    if (backend) {
      Status s = backend->check_conservation();
      EXPECT_TRUE(s.is_ok()) << s.to_string();
    }
  }

  void publish_flat(const std::string& table, std::int64_t fen) {
    wire::FareTable t;
    t.set_table_id(table);
    t.set_kind(0);
    t.set_flat_fen(fen);
    ASSERT_TRUE(backend->fares().publish_fare_table(admin, t).is_ok());
  }

  // `configured_operator`/`configured_device`: what the terminal is set up with (a wrong one is
  // a misconfigured or moved terminal); the backend registers kOperator and `device`.
  std::unique_ptr<Bus> make_bus(const std::string& device,
                                std::optional<std::string> configured_operator = std::nullopt,
                                std::optional<std::string> configured_device = std::nullopt,
                                double drift_ppm = 0) {
    auto b = std::make_unique<Bus>();
    b->device = device;
    backend::TerminalParams tp;
    tp.operator_id = kOperator;
    tp.route = "71";
    tp.vehicle = "沪A-" + device;
    tp.device_id = device;
    auto image = backend->register_terminal(tp);
    EXPECT_TRUE(image.is_ok()) << image.status().to_string();
    b->psam_image = *image;
    b->psam = std::make_unique<devices::Psam>(b->psam_image);
    b->channel = network->connect(*proxy, device);
    b->storage = std::make_unique<devices::MemoryLogStorage>(b->disk);
    BusTerminalConfig c;
    c.core.device_id = configured_device.value_or(device);
    c.core.operator_id = configured_operator.value_or(kOperator);
    c.core.calendar_origin_epoch2000_s =
        backend->calendar().now_epoch2000_s() - loop.now_us() / kSecond;
    c.core.queue.batch_records_max = 20;
    c.core.clock_drift_ppm = drift_ppm;
    c.composite = true;
    b->terminal = std::make_unique<BusTerminal>(c, *b->psam, loop, *b->channel, *b->storage);
    b->terminal->assign("71", tp.vehicle);
    b->terminal->set_blacklist(b->blacklist.predicate());
    devices::HostSessionOptions ho;
    ho.terminal_id = b->psam_image.terminal_id;
    ho.device_id = c.core.device_id;
    ho.operator_id = c.core.operator_id;
    b->host =
        std::make_unique<HostSession>(ho, *b->channel, b->terminal->core().clock(), b->blacklist);
    return b;
  }

  // Runs a host-session call to its end on the event loop.
  template <class Call>
  Status run(Call call) {
    std::optional<Status> out;
    call([&out](Status s) { out = s; });
    while (!out) {
      if (loop.pending() == 0) return Status(Errc::kInternal, "the loop ran dry without an answer");
      loop.run_until(loop.now_us() + kSecond);
    }
    return *out;
  }
  Status sync(Bus& b) {
    Status s = run([&](HostSession::Done d) { b.host->sync(std::move(d)); });
    if (s) {
      auto policy = b.host->params().fare_policy("71");
      if (!policy) return policy.status();
      b.terminal->set_fare_policy(*policy);
    }
    return s;
  }
  // Uploads until the queue is empty or `rounds` attempts were made.
  void drain(Bus& b, int rounds = 50) {
    for (int i = 0; i < rounds && b.terminal->core().queue().size() > 0; ++i) {
      b.terminal->upload();
      loop.run_until(loop.now_us() + 10 * kSecond);
    }
  }

  CpuCard issue(std::int64_t balance_fen, protocol::CardType type = protocol::CardType::kAdult,
                std::optional<std::array<std::uint8_t, 4>> valid_to = std::nullopt) {
    backend::CardParams p;
    p.card_type = type;
    p.opening_balance_fen = balance_fen;
    if (valid_to) {
      p.valid_from = protocol::date_bcd(2020, 1, 1);
      p.valid_to = valid_to;
    }
    auto image = backend->issue_card(p);
    EXPECT_TRUE(image.is_ok()) << image.status().to_string();
    images.push_back(*image);
    return CpuCard(*image, sim::Rng(1000 + images.size()));
  }
  SaleResult tap(Bus& b, CpuCard& card) {
    card.reset();
    DirectLink link(card);
    return b.terminal->tap(link);
  }
  void sign_in_driver(Bus& b) {
    CpuCard driver = issue(0, protocol::CardType::kStaff);
    driver.reset();
    DirectLink link(driver);
    ASSERT_TRUE(b.terminal->sign_in(link).is_ok());
  }
  std::int64_t payable() const {
    auto v = backend->ledger().balance("payable:" + kOperator);
    return v.is_ok() ? *v : 0;
  }
  std::int64_t believed(const CpuCard& card) const {
    auto r = backend->issuance().card(card.serial());
    EXPECT_TRUE(r.is_ok());
    return r.is_ok() ? r->balance_fen : -1;
  }

  sim::EventLoop loop;
  std::unique_ptr<backend::Backend> backend;
  backend::Session admin;
  std::unique_ptr<Proxy> proxy;
  std::unique_ptr<sim::SimNetwork> network;
  std::vector<protocol::CardImage> images;
};

// The proof of issue 5: a bus that loses its link for an hour keeps selling, then uploads
// everything, and the backend's totals equal the validator's batch totals.
TEST_F(TerminalBackend, BusThatLosesItsLinkForAnHourKeepsSellingThenUploadsEverything) {
  auto bus = make_bus("BV-1", std::nullopt, std::nullopt, /*drift_ppm=*/300);
  ASSERT_TRUE(sync(*bus).is_ok()) << bus->host->last_failure().to_string();
  sign_in_driver(*bus);
  std::vector<CpuCard> cards;
  for (int i = 0; i < 25; ++i) cards.push_back(issue(10'000));

  const std::int64_t start = loop.now_us();
  network->add_outage({"BV-1", start + 30 * kMinute, start + 90 * kMinute});
  std::int64_t charged = 0;
  std::int64_t sold_in_outage = 0;
  std::size_t queued_at_outage_end = 0;
  std::uint64_t failures_before = 0;
  int n = 0;
  // A tap every 40 s and an upload attempt every 2 minutes, for two hours.
  for (std::int64_t t = start + kMinute; t < start + 2 * kHour; t += 40 * kSecond, ++n) {
    loop.run_until(t);
    SaleResult r = tap(*bus, cards[static_cast<std::size_t>(n) % cards.size()]);
    ASSERT_TRUE(r.ok()) << r.detail;
    charged += r.record.amount_fen();
    const bool outage = t >= start + 30 * kMinute && t < start + 90 * kMinute;
    if (outage) ++sold_in_outage;
    if (n % 3 == 0) bus->terminal->upload();
    if (t < start + 30 * kMinute)
      failures_before = bus->terminal->core().queue().counters().failures;
    if (t < start + 90 * kMinute) queued_at_outage_end = bus->terminal->core().queue().size();
  }
  // An hour of sales went into the durable queue while every upload failed.
  EXPECT_GE(sold_in_outage, 80);
  EXPECT_GE(queued_at_outage_end, static_cast<std::size_t>(sold_in_outage));
  EXPECT_GT(bus->terminal->core().queue().counters().failures, failures_before);

  drain(*bus);
  const auto& q = bus->terminal->core().queue();
  ASSERT_EQ(q.size(), 0u) << q.last_failure().to_string();
  EXPECT_EQ(q.counters().records_acked, static_cast<std::uint64_t>(n));
  EXPECT_EQ(q.counters().records_accepted, static_cast<std::uint64_t>(n));
  EXPECT_EQ(q.counters().records_rejected, 0u);
  // The validator's batch totals, the fares it charged, and the backend's books agree.
  EXPECT_EQ(q.counters().amount_fen_acked, charged);
  EXPECT_EQ(-payable(), charged);
  for (const CpuCard& c : cards) EXPECT_EQ(believed(c), static_cast<std::int64_t>(c.balance_fen()));
}

TEST_F(TerminalBackend, SignOnCorrectsTheDriftingClock) {
  auto bus = make_bus("BV-2", std::nullopt, std::nullopt, /*drift_ppm=*/500);
  ASSERT_TRUE(run([&](HostSession::Done d) { bus->host->sign_on(std::move(d)); }).is_ok());
  loop.run_until(loop.now_us() + 2 * kHour);
  const auto& clock = bus->terminal->core().clock();
  // 500 ppm over two hours: 3.6 s ahead.
  EXPECT_GT(clock.error_us(), 3 * kSecond);
  ASSERT_TRUE(run([&](HostSession::Done d) { bus->host->sign_on(std::move(d)); }).is_ok());
  EXPECT_LT(bus->host->counters().last_correction_us, -3 * kSecond);
  // Half the round trip assumed each way: what is left is the latency's asymmetry (jitter).
  EXPECT_LT(std::abs(clock.error_us()), 50'000);
  EXPECT_EQ(bus->host->registered_vehicle(), "沪A-BV-2");
}

TEST_F(TerminalBackend, SignOnRefusesAnUnknownTerminalAnotherDeviceOrOperatorAndSurvivesLinkLoss) {
  auto moved = make_bus("BV-3", std::nullopt, std::string("BV-OTHER"));
  Status s = run([&](HostSession::Done d) { moved->host->sign_on(std::move(d)); });
  EXPECT_EQ(s.code(), Errc::kPermissionDenied) << s.to_string();
  EXPECT_NE(s.message().find("TERMINAL_MISMATCH"), std::string::npos) << s.message();
  EXPECT_FALSE(moved->host->signed_on());

  auto wrong_operator = make_bus("BV-4", std::string("ANOTHER-CO"));
  s = run([&](HostSession::Done d) { wrong_operator->host->sign_on(std::move(d)); });
  EXPECT_EQ(s.code(), Errc::kPermissionDenied) << s.to_string();

  auto good = make_bus("BV-5");
  devices::HostSessionOptions ho;
  ho.terminal_id = array_from_hex<6>("999999999999");
  ho.device_id = "BV-5";
  ho.operator_id = kOperator;
  HostSession unknown(ho, *good->channel, good->terminal->core().clock(), good->blacklist);
  s = run([&](HostSession::Done d) { unknown.sign_on(std::move(d)); });
  EXPECT_EQ(s.code(), Errc::kNotFound) << s.to_string();

  ASSERT_TRUE(run([&](HostSession::Done d) { good->host->sign_on(std::move(d)); }).is_ok());
  network->set_link_up("BV-5", false);
  s = run([&](HostSession::Done d) { good->host->sync(std::move(d)); });
  EXPECT_EQ(s.code(), Errc::kUnavailable) << s.to_string();
  EXPECT_TRUE(good->host->signed_on());  // a link failure is not a refusal
  network->set_link_up("BV-5", true);
  EXPECT_TRUE(sync(*good).is_ok());
}

// The backend checks the operator of every record against the terminal's registration: a bus
// configured for another operator is refused at sign-on; if it sells anyway (offline it does
// not know better), its records are accepted as SUSPICIOUS for an operator to look at, and the
// money goes to the registered operator's payable, never to the one the record names.
TEST_F(TerminalBackend, RecordsNamingAnotherOperatorArePaidToTheRegisteredOneAndFlagged) {
  auto bus = make_bus("BV-6", std::string("ANOTHER-CO"));
  EXPECT_EQ(run([&](HostSession::Done d) { bus->host->sign_on(std::move(d)); }).code(),
            Errc::kPermissionDenied);
  ASSERT_TRUE(run([&](HostSession::Done d) { bus->host->pull_params(std::move(d)); }).is_ok());
  bus->terminal->set_fare_policy(*bus->host->params().fare_policy("71"));
  sign_in_driver(*bus);
  CpuCard card = issue(1000);
  const std::int64_t suspicious_before = *backend->ingest().suspicious_count();
  ASSERT_TRUE(tap(*bus, card).ok());
  drain(*bus);
  const auto& q = bus->terminal->core().queue();
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.counters().records_rejected, 0u);
  EXPECT_EQ(*backend->ingest().suspicious_count(), suspicious_before + 1);
  EXPECT_EQ(payable(), -200);
  EXPECT_FALSE(backend->ledger().balance("payable:ANOTHER-CO").is_ok() &&
               *backend->ledger().balance("payable:ANOTHER-CO") != 0);
  EXPECT_EQ(believed(card), 800);
}

TEST_F(TerminalBackend, BlacklistDeltasReachTheBusWhichRefusesAndLocksTheCard) {
  auto bus = make_bus("BV-7");
  ASSERT_TRUE(sync(*bus).is_ok());
  sign_in_driver(*bus);
  CpuCard card = issue(1000);
  CpuCard other = issue(1000);
  ASSERT_TRUE(tap(*bus, card).ok());
  const std::uint64_t before = bus->blacklist.version();

  ASSERT_TRUE(backend->cards().freeze(admin, card.serial(), "reported stolen").is_ok());
  ASSERT_TRUE(run([&](HostSession::Done d) { bus->host->pull_blacklist(std::move(d)); }).is_ok());
  EXPECT_GT(bus->blacklist.version(), before);
  EXPECT_TRUE(bus->blacklist.listed(card.serial()));
  loop.run_until(loop.now_us() + kMinute);  // past the double-tap window
  SaleResult r = tap(*bus, card);
  EXPECT_EQ(r.refusal, Refusal::kBlacklisted) << r.detail;
  EXPECT_EQ(card.balance_fen(), 800u);
  // Locked with the PSAM's MAC: refused as blocked by any terminal from now on.
  loop.run_until(loop.now_us() + kMinute);
  r = tap(*bus, card);
  EXPECT_EQ(r.refusal, Refusal::kCardBlocked) << r.detail;
  EXPECT_EQ(card.balance_fen(), 800u);
  EXPECT_TRUE(tap(*bus, other).ok());

  // Unlisted again: the next delta removes it.
  ASSERT_TRUE(backend->cards().unfreeze(admin, card.serial()).is_ok());
  ASSERT_TRUE(run([&](HostSession::Done d) { bus->host->pull_blacklist(std::move(d)); }).is_ok());
  EXPECT_FALSE(bus->blacklist.listed(card.serial()));
  drain(*bus);
}

TEST_F(TerminalBackend, FareTableVersionsAreDownloadedAsDeltasAndPriceTheNextTap) {
  auto bus = make_bus("BV-8");
  ASSERT_TRUE(sync(*bus).is_ok());
  const std::uint64_t v1 = bus->host->params().version();
  EXPECT_GT(v1, 0u);
  sign_in_driver(*bus);
  CpuCard card = issue(2000);
  EXPECT_EQ(tap(*bus, card).record.amount_fen(), 200);

  publish_flat("71", 300);
  ASSERT_TRUE(run([&](HostSession::Done d) { bus->host->sign_on(std::move(d)); }).is_ok());
  EXPECT_GT(bus->host->counters().server_params_version, v1);  // sign-on says: pull
  const std::uint64_t pages = bus->host->counters().params_pages;
  ASSERT_TRUE(sync(*bus).is_ok());
  EXPECT_EQ(bus->host->counters().params_pages, pages + 1);
  EXPECT_EQ(bus->host->params().version(), bus->host->counters().server_params_version);
  loop.run_until(loop.now_us() + kMinute);
  CpuCard second = issue(2000);
  EXPECT_EQ(tap(*bus, second).record.amount_fen(), 300);

  ASSERT_TRUE(backend->fares().withdraw_fare_table(admin, "71").is_ok());
  ASSERT_TRUE(run([&](HostSession::Done d) { bus->host->pull_params(std::move(d)); }).is_ok());
  EXPECT_EQ(bus->host->params().fare_policy("71").status().code(), Errc::kNotFound);
  drain(*bus);
  EXPECT_EQ(bus->terminal->core().queue().counters().amount_fen_acked, -payable());
}

// The bus's refusals with cards the backend issued: expired, insufficient balance; nothing is
// debited and nothing is uploaded for them.
TEST_F(TerminalBackend, BusRefusesExpiredAndShortCardsWithoutCharging) {
  auto bus = make_bus("BV-9");
  ASSERT_TRUE(sync(*bus).is_ok());
  sign_in_driver(*bus);
  CpuCard expired = issue(1000, protocol::CardType::kAdult, protocol::date_bcd(2021, 12, 31));
  CpuCard poor = issue(150);
  SaleResult r = tap(*bus, expired);
  EXPECT_EQ(r.refusal, Refusal::kCardExpired) << r.detail;
  EXPECT_EQ(expired.balance_fen(), 1000u);
  r = tap(*bus, poor);
  EXPECT_EQ(r.refusal, Refusal::kInsufficientBalance) << r.detail;
  EXPECT_EQ(poor.balance_fen(), 150u);
  EXPECT_EQ(bus->terminal->core().queue().size(), 0u);
  EXPECT_EQ(payable(), 0);
}

}  // namespace
}  // namespace citycard
