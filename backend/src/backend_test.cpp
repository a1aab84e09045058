#include "citycard/backend/backend.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include "test_city.h"

namespace citycard::backend {
namespace {

using citycard::wire::SwipeRecord;
using testing::TestCard;
using testing::TestTerminal;

class BackendRestartTest : public testing::BackendTest {
 protected:
  void SetUp() override {
    options.key_seed = 4242;
    path = dir.file("clearing.db");
    open(path);
  }

  // Everything the backend knows, in comparable form.
  struct Snapshot {
    std::vector<CardRecord> cards;
    std::vector<TerminalRecord> terminals;
    std::vector<AccountBalance> accounts;
    std::int64_t postings, swipes, suspicious, rejected, batches;
    std::vector<OperatorTotal> by_operator;
    std::vector<RouteTotal> by_route;
    std::string ack;  // of batch 1
    protocol::IssuerKeys keys;
    bool operator==(const Snapshot& o) const {
      return cards == o.cards && terminals == o.terminals && accounts == o.accounts &&
             postings == o.postings && swipes == o.swipes && suspicious == o.suspicious &&
             rejected == o.rejected && batches == o.batches && by_operator == o.by_operator &&
             by_route == o.by_route && ack == o.ack && keys.purchase == o.keys.purchase &&
             keys.load == o.keys.load && keys.tac == o.keys.tac && keys.batch == o.keys.batch;
    }
  };
  Snapshot snapshot(const TestTerminal& t) {
    Snapshot s;
    s.cards = *backend->issuance().list_cards(1'000);
    s.terminals = *backend->issuance().list_terminals(1'000);
    s.accounts = backend->ledger().trial_balance()->accounts;
    s.postings = *backend->ledger().posting_count();
    s.swipes = *backend->ingest().swipe_count();
    s.suspicious = *backend->ingest().suspicious_count();
    s.rejected = *backend->ingest().rejected_record_count();
    s.batches = *backend->ingest().batch_count();
    s.by_operator = *backend->clearing().by_operator();
    s.by_route = *backend->clearing().by_route();
    auto ack = backend->ingest().stored_ack(t.psam.terminal_id, 1);
    s.ack = ack.is_ok() && ack->has_value() ? (*ack)->SerializeAsString() : "";
    s.keys = *backend->keys().issuer(1);
    return s;
  }

  testing::TempDir dir;
  std::string path;
};

TEST_F(BackendRestartTest, ReopeningRestoresEverythingAndAReplayIsStillADuplicate) {
  TestCard a = issue(1'000, 500), b = issue(2'000);
  TestTerminal bus = add_terminal("bus-co", "15"), metro = add_terminal("metro", "L2");
  SwipeRecord forged = purchase(b, bus, 100, now());
  forged.set_amount_fen(1);
  const auto batch1 = make_batch(bus, {purchase(a, bus, 200, now()), forged});
  ASSERT_TRUE(backend->upload(batch1).ok());
  purchase(a, metro, 100, now());  // lost: the next one is suspicious
  ASSERT_TRUE(backend->upload(make_batch(metro, {purchase(a, metro, 300, now())})).ok());
  const Snapshot before = snapshot(bus);
  ASSERT_EQ(before.swipes, 2);
  ASSERT_EQ(before.suspicious, 1);
  ASSERT_EQ(before.rejected, 1);

  backend.reset();  // the process ends
  open(path);
  ASSERT_TRUE(backend);
  const Snapshot after = snapshot(bus);
  EXPECT_TRUE(after == before);
  EXPECT_TRUE(backend->check_conservation().is_ok());

  const IngestResult replay = backend->upload(batch1);
  ASSERT_TRUE(replay.ok()) << replay.message;
  EXPECT_TRUE(replay.ack.batch_duplicate());
  EXPECT_EQ(replay.ack.accepted(), 1u);
  EXPECT_EQ(replay.ack.rejected(), 1u);
  EXPECT_TRUE(snapshot(bus) == before);

  // Life goes on: keys, PSAM and sequences still match what devices hold.
  ASSERT_TRUE(backend->upload(make_batch(bus, {purchase(b, bus, 50, now())})).ok());
  EXPECT_EQ(card(b).balance_fen, 1'950);
  TestCard c = issue(10);
  EXPECT_NE(c.image.serial, a.image.serial);
  EXPECT_NE(c.image.serial, b.image.serial);
  TestTerminal taxi = add_terminal("taxi", "");
  EXPECT_NE(taxi.psam.terminal_id, bus.psam.terminal_id);
  EXPECT_NE(taxi.psam.terminal_id, metro.psam.terminal_id);
}

TEST_F(BackendRestartTest, ReopeningWithAnotherKeySeedIsRefused) {
  issue(100);
  backend.reset();
  options.key_seed = 4243;
  auto other = Backend::open(path, options, clock);
  ASSERT_FALSE(other.is_ok());
  EXPECT_EQ(other.status().code(), Errc::kInvalidArgument);
  options.key_seed = 4242;
  open(path);
}

TEST_F(BackendRestartTest, AnAcknowledgedBatchSurvivesKillDashNine) {
  TestCard a = issue(1'000);
  TestTerminal bus = add_terminal("bus-co", "15");
  const auto batch = make_batch(bus, {purchase(a, bus, 200, now()), purchase(a, bus, 300, now())});
  backend.reset();

  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child opens the database, gets the ack, and dies without closing anything.
    auto b = Backend::open(path, options, clock);
    if (!b.is_ok() || !(*b)->upload(batch).ok()) _exit(1);
    raise(SIGKILL);
    _exit(2);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;

  open(path);
  EXPECT_EQ(card(a).balance_fen, 500);
  EXPECT_EQ(balance(account::payable("bus-co")), -500);
  EXPECT_EQ(*backend->ingest().batch_count(), 1);
  EXPECT_TRUE(backend->upload(batch).ack.batch_duplicate());
}

using BackendTest = testing::BackendTest;

TEST_F(BackendTest, ConservationNamesTheDifference) {
  TestCard a = issue(1'000);
  ASSERT_TRUE(backend->check_conservation().is_ok());
  ASSERT_TRUE(backend->store().exec("UPDATE cards SET balance_fen = balance_fen + 7").is_ok());
  const Status s = backend->check_conservation();
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("difference 7"), std::string::npos) << s.message();
  ASSERT_TRUE(backend->store().exec("UPDATE cards SET balance_fen = balance_fen - 7").is_ok());
  EXPECT_TRUE(backend->check_conservation().is_ok());
}

TEST_F(BackendTest, CountersSumUpARun) {
  TestCard a = issue(1'000);
  TestTerminal bus = add_terminal("bus-co", "15");
  SwipeRecord bad = purchase(a, bus, 10, now());
  bad.set_amount_fen(11);
  const auto batch = make_batch(bus, {purchase(a, bus, 100, now()), bad});
  ASSERT_TRUE(backend->upload(batch).ok());
  ASSERT_TRUE(backend->upload(batch).ok());
  auto unsigned_batch = make_batch(bus, {purchase(a, bus, 100, now())});
  unsigned_batch.clear_batch_mac();
  (void)backend->service().handle(testing::upload_frame(unsigned_batch, 1));
  const BackendCounters c = backend->counters();
  EXPECT_EQ(c.ingest.batches_accepted, 1u);
  EXPECT_EQ(c.ingest.batches_duplicate, 1u);
  EXPECT_EQ(c.ingest.batches_refused, 1u);
  EXPECT_EQ(c.ingest.records_accepted, 1u);
  EXPECT_EQ(c.ingest.records_rejected, 1u);
  EXPECT_EQ(c.ingest.amount_accepted_fen, 100);
  EXPECT_EQ(c.requests, 1u);
  EXPECT_EQ(c.error_replies, 1u);
}

TEST_F(BackendTest, BadOptionsAreRefused) {
  BackendOptions o;
  o.issuance.city_code = "31A0";
  EXPECT_EQ(Backend::open(":memory:", o, clock).status().code(), Errc::kInvalidArgument);
  o = {};
  o.ingest.max_batch_records = Backend::kMaxBatchRecordsLimit + 1;
  EXPECT_EQ(Backend::open(":memory:", o, clock).status().code(), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace citycard::backend
