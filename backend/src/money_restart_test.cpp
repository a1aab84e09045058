// The money side survives a restart and kill -9: orders, authorizations, quotas, settlements,
// the blacklist and the audit log are in the store, committed before an answer leaves.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include "citycard/backend/money.h"
#include "money_test_util.h"

namespace citycard::backend {
namespace {

using testing::PurseCard;

class MoneyRestartTest : public testing::MoneyTest {
 protected:
  void SetUp() override {
    options.key_seed = 777;
    path = dir.file("money.db");
    open(path);
    init();
  }
  void reopen() {
    backend.reset();
    open(path);
    admin = login("root");
    fin1 = login("fin1");
    fin2 = login("fin2");
  }
  testing::TempDir dir;
  std::string path;
};

TEST_F(MoneyRestartTest, EverythingComesBackAfterReopening) {
  MerchantParams shop = merchant("shop");
  shop.recharge_enabled = true;
  add_merchant(shop);
  ASSERT_TRUE(backend->merchants().top_up_quota(fin1, "shop", 9'000).is_ok());
  PurseCard c = issue_card(500, 100, true);
  OrderRequest r;
  r.order_id = "KEEP-1";
  r.channel = Channel::kCounter;
  r.card = c.serial();
  r.amount_fen = 1'000;
  ASSERT_TRUE(backend->recharge().create_order(fin1, r).is_ok());
  ASSERT_TRUE(backend->cards().freeze(fin1, issue_card(0).serial(), "x").is_ok());
  next_day();
  ASSERT_TRUE(backend->settlement().prepare(fin1).is_ok());
  const auto accounts = backend->ledger().trial_balance()->accounts;
  const auto audit = *backend->users().audit_count();
  const auto version = *backend->risk().blacklist_version();

  reopen();
  EXPECT_EQ(backend->ledger().trial_balance()->accounts, accounts);
  EXPECT_EQ(*backend->risk().blacklist_version(), version);
  EXPECT_EQ(*backend->users().audit_count(), audit + 3) << "three logins since";
  EXPECT_EQ(backend->merchants().get(admin, "shop")->quota_fen, 9'000);
  EXPECT_EQ(backend->recharge().order("KEEP-1")->state, OrderState::kPaid);
  // The idempotency key still holds, and the draft still blocks a second one.
  r.amount_fen = 1'001;
  EXPECT_EQ(backend->recharge().create_order(fin1, r).status().code(), Errc::kConflict);
  EXPECT_EQ(backend->settlement().prepare(fin1).status().code(), Errc::kRejected);
  // The card collects its pending load after the restart.
  ASSERT_TRUE(load(c, "KEEP-1", 1'000).is_ok());
  EXPECT_EQ(card(c.card).balance_fen, 1'500);
}

TEST_F(MoneyRestartTest, AnAuthorizationAnsweredBeforeKillDashNineIsThereAfterwards) {
  PurseCard c = issue_card(200);
  OrderRequest r;
  r.order_id = "KILL-1";
  r.channel = Channel::kCounter;
  r.card = c.serial();
  r.amount_fen = 3'000;
  ASSERT_TRUE(backend->recharge().create_order(fin1, r).is_ok());
  const LoadAuthRequest init = c.init("KILL-1", 3'000, load_terminal);
  backend.reset();

  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child answers the terminal with MAC2, then dies without closing anything.
    close(fds[0]);
    auto b = Backend::open(path, options, clock);
    if (!b.is_ok()) _exit(1);
    auto a = (*b)->recharge().authorize_load("terminal:desk", init);
    if (!a.is_ok()) _exit(2);
    std::uint8_t out[11];
    std::copy(a->mac2.begin(), a->mac2.end(), out);
    std::copy(a->datetime.begin(), a->datetime.end(), out + 4);
    if (write(fds[1], out, sizeof out) != static_cast<ssize_t>(sizeof out)) _exit(3);
    raise(SIGKILL);
    _exit(4);
  }
  close(fds[1]);
  std::uint8_t in[11] = {};
  const ssize_t n = read(fds[0], in, sizeof in);
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;
  ASSERT_EQ(n, 11);

  open(path);
  EXPECT_EQ(backend->recharge().order("KILL-1")->state, OrderState::kAuthorized);
  LoadAuthorization a;
  a.order_id = "KILL-1";
  std::copy(in, in + 4, a.mac2.begin());
  std::copy(in + 4, in + 11, a.datetime.begin());
  auto tac = c.credit(init, a);
  ASSERT_TRUE(tac.is_ok()) << "the MAC2 the dead process gave is good";
  auto done = backend->recharge().confirm_load("terminal:desk", "KILL-1", *tac);
  ASSERT_TRUE(done.is_ok()) << done.status().to_string();
  EXPECT_EQ(card(c.card).balance_fen, 3'200);
  auto log = backend->users().audit_log(login("root"), {"terminal:desk", "load_auth", "", 5});
  ASSERT_TRUE(log.is_ok());
  ASSERT_EQ(log->size(), 1u) << "the dead process's audit row committed with its change";
  EXPECT_TRUE((*log)[0].ok);
}

}  // namespace
}  // namespace citycard::backend
