#include "money_test_util.h"

namespace citycard::backend::testing {

namespace crypto = protocol::crypto;

LoadAuthRequest PurseCard::init(const std::string& order_id, std::int64_t amount_fen,
                                const protocol::TerminalId& terminal, std::uint32_t random) const {
  const protocol::CardImage& img = card.image;
  LoadAuthRequest r;
  r.order_id = order_id;
  r.card = img.serial;
  r.key_version = img.key_version;
  auto& in = r.init;
  in.algorithm = img.algorithm;
  in.balance_before_fen = static_cast<std::uint32_t>(card.balance_fen);
  in.online_counter = online_counter;
  in.random = {static_cast<std::uint8_t>(random >> 24), static_cast<std::uint8_t>(random >> 16),
               static_cast<std::uint8_t>(random >> 8), static_cast<std::uint8_t>(random)};
  in.amount_fen = static_cast<std::uint32_t>(amount_fen);
  in.type = protocol::txn::kLoadEp;
  in.terminal = terminal;
  // The card's own computation, from the primitives (not the host helper in load.h).
  const auto seslk = crypto::load_session_key(img.algorithm, img.dlk, in.random, online_counter);
  in.mac1 = crypto::load_mac1(seslk, in.balance_before_fen, in.amount_fen, in.type, terminal);
  return r;
}

Result<protocol::Mac4> PurseCard::credit(const LoadAuthRequest& r, const LoadAuthorization& a) {
  const protocol::CardImage& img = card.image;
  const auto& in = r.init;
  const auto seslk = crypto::load_session_key(img.algorithm, img.dlk, in.random, in.online_counter);
  const auto mac2 = crypto::load_mac2(seslk, in.amount_fen, in.type, in.terminal, a.datetime);
  if (!crypto::mac_equal(mac2, a.mac2)) return Status(Errc::kBadMac, "card refuses MAC2 (9302)");
  const std::uint32_t after = in.balance_before_fen + in.amount_fen;
  const auto tac =
      crypto::load_tac(crypto::tac_key(img.algorithm, img.dtk), after, in.online_counter,
                       in.amount_fen, in.type, in.terminal, a.datetime);
  card.balance_fen = after;
  ++online_counter;
  return tac;
}

void MoneyTest::SetUp() {
  BackendTest::SetUp();
  init();
}

void MoneyTest::fresh() {
  open(":memory:");
  init();
}

void MoneyTest::init() {
  ASSERT_TRUE(backend->users().bootstrap_admin("root", "password-1").is_ok());
  admin = login("root");
  fin1 = add_user("fin1", Role::kFinance);
  fin2 = add_user("fin2", Role::kFinance);
  MerchantParams desk = merchant("desk", MerchantKind::kDesk);
  add_merchant(desk);
  load_terminal = terminal("desk").psam.terminal_id;
}

Session MoneyTest::login(const std::string& user, const std::string& password) {
  auto s = backend->users().login(user, password);
  EXPECT_TRUE(s.is_ok()) << s.status().to_string();
  return s.is_ok() ? *s : Session{};
}

Session MoneyTest::add_user(const std::string& user, Role role, const std::string& merchant) {
  const Status s = backend->users().create_user(admin, {user, "password-1", role, merchant});
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  return login(user);
}

MerchantParams MoneyTest::merchant(const std::string& id, MerchantKind kind,
                                   SettlementCycle cycle) {
  MerchantParams p;
  p.merchant_id = id;
  p.name = "Merchant " + id;
  p.kind = kind;
  p.cycle = cycle;
  p.bank_name = "ICBC";
  p.bank_account = "6222" + std::to_string(id.size()) + "000" + std::to_string(id[0]);
  p.account_name = id + " Ltd";
  return p;
}

void MoneyTest::add_merchant(const MerchantParams& p) {
  const Status s = backend->merchants().create(admin, p);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
}

PurseCard MoneyTest::issue_card(std::int64_t balance_fen, std::int64_t deposit_fen, bool named,
                                protocol::CardType type) {
  IssueRequest r;
  r.card.opening_balance_fen = balance_fen;
  r.card.deposit_fen = deposit_fen;
  r.card.card_type = type;
  if (named) {
    static int n = 0;
    ++n;
    r.holder = HolderInfo{"Holder " + std::to_string(n), "3101011990010" + std::to_string(1000 + n),
                          "1380000" + std::to_string(1000 + n),
                          "h" + std::to_string(n) + "@mail.cn", true};
  }
  auto img = backend->cards().issue(fin1, r);
  EXPECT_TRUE(img.is_ok()) << img.status().to_string();
  PurseCard c;
  if (img.is_ok()) c.card = TestCard{*img, 0, balance_fen};
  return c;
}

TestTerminal MoneyTest::terminal(const std::string& merchant_id, const std::string& route) {
  TerminalParams p;
  p.operator_id = merchant_id;
  p.route = route;
  p.vehicle = route.empty() ? "" : "bus-" + route;
  p.device_id = "dev-" + merchant_id;
  auto psam = backend->merchants().register_terminal(admin, p);
  EXPECT_TRUE(psam.is_ok()) << psam.status().to_string();
  if (!psam.is_ok()) return {};
  return TestTerminal{*psam, merchant_id, route, 1, 1};
}

Result<LoadConfirmation> MoneyTest::load(PurseCard& c, const std::string& order_id,
                                         std::int64_t amount_fen) {
  const LoadAuthRequest r = c.init(order_id, amount_fen, load_terminal);
  auto a = backend->recharge().authorize_load("terminal:test", r);
  if (!a.is_ok()) return a.status();
  auto tac = c.credit(r, *a);
  if (!tac.is_ok()) return tac.status();
  return backend->recharge().confirm_load("terminal:test", order_id, *tac);
}

void MoneyTest::counter_load(PurseCard& c, const std::string& order_id, std::int64_t amount_fen) {
  OrderRequest r;
  r.order_id = order_id;
  r.channel = Channel::kCounter;
  r.card = c.serial();
  r.amount_fen = amount_fen;
  auto o = backend->recharge().create_order(fin1, r);
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  ASSERT_EQ(o->state, OrderState::kPaid);
  auto done = load(c, order_id, amount_fen);
  ASSERT_TRUE(done.is_ok()) << done.status().to_string();
}

}  // namespace citycard::backend::testing
