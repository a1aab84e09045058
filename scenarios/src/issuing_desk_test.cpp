// The issuing desk and the clearing centre over the wire (issue 5, item 5): issue (named and
// anonymous, deposit, opening value, expiry), cancel, counter recharge, balance, refund,
// replace, report lost and found; the operator's sign-in; refusals; at-most-once operations.
// Real parts: the backend on a SQLite file, its ledger (conservation checked after every
// test), the simulated network in virtual time, the desk's PSAM, CPU cards personalised from
// the images the backend returns. One fault the network cannot give on cue: a channel that
// loses exactly one answer.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <tuple>

#include "citycard/backend/backend.h"
#include "citycard/devices/card_link.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/issuing_desk.h"
#include "citycard/devices/psam.h"
#include "citycard/devices/sam_client.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/event_loop.h"
#include "citycard/sim/transport.h"

#include "backend_test_support.h"

namespace citycard {
namespace {

using devices::CpuCard;
using devices::DeskIssueSpec;
using devices::DirectLink;
using devices::IssuingDesk;

using Proxy = testsupport::ServiceHandler;

// Passes requests on; the answers to requests number `lose_answer` .. `lose_answer` +
// `lose_count` - 1 (1-based) arrive at the server but never come back: the desk sees timeouts.
class LosingChannel final : public sim::Channel {
 public:
  explicit LosingChannel(sim::Channel& inner) : inner_(inner) {}
  void request(Bytes frame, ReplyFn on_reply) override {
    ++n_;
    const bool lose = n_ >= lose_answer && n_ < lose_answer + lose_count;
    inner_.request(std::move(frame), [lose, on_reply](Result<Bytes> reply) {
      if (lose) {
        on_reply(Status(Errc::kTimeout, "answer lost"));
      } else {
        on_reply(std::move(reply));
      }
    });
  }
  int lose_answer = 0;
  int lose_count = 1;

 private:
  sim::Channel& inner_;
  int n_ = 0;
};

// A desk terminal: its PSAM, its link to the backend, the desk itself.
struct Desk {
  protocol::TerminalId id{};
  std::unique_ptr<devices::Psam> psam;
  std::unique_ptr<DirectLink> sam_link;
  std::unique_ptr<devices::SamClient> sam;
  std::unique_ptr<sim::Channel> channel;
  std::unique_ptr<LosingChannel> losing;
  std::unique_ptr<IssuingDesk> desk;
};

class IssuingDeskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = testsupport::open_test_backend("issuing_desk", 17, loop);
    ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
    backend = std::move(opened).value();
    admin = *backend->users().login("root", "password-1");
    for (auto [name, role, merchant] : {std::tuple{"clerk", backend::Role::kFinance, ""},
                                        std::tuple{"clerk2", backend::Role::kFinance, ""}}) {
      backend::NewUser u{name, "password-2", role, merchant};
      ASSERT_TRUE(backend->users().create_user(admin, u).is_ok());
    }
    merchant("DESK-CENTRAL", backend::MerchantKind::kDesk);
    merchant("SHOP-1", backend::MerchantKind::kRetail);
    backend::NewUser op{"shopper", "password-3", backend::Role::kMerchantOperator, "SHOP-1"};
    ASSERT_TRUE(backend->users().create_user(admin, op).is_ok());
    proxy = std::make_unique<Proxy>(*backend);
    network = std::make_unique<sim::SimNetwork>(loop, sim::Rng(5), sim::NetworkOptions{});
    main = terminal("DESK-CENTRAL", "DESK-1");
    ASSERT_TRUE(main.desk->sign_in("clerk", "password-2").is_ok());
  }
  void TearDown() override {
    if (backend) {
      Status s = backend->check_conservation();
      EXPECT_TRUE(s.is_ok()) << s.to_string();
    }
  }

  void merchant(const std::string& id, backend::MerchantKind kind) {
    backend::MerchantParams p;
    p.merchant_id = id;
    p.name = id;
    p.kind = kind;
    p.recharge_enabled = true;
    p.bank_name = "ICBC";
    p.bank_account = "6222000011112222";
    p.account_name = id;
    Status s = backend->merchants().create(admin, p);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
  }

  Desk terminal(const std::string& operator_id, const std::string& device) {
    Desk d;
    backend::TerminalParams tp;
    tp.operator_id = operator_id;
    tp.device_id = device;
    auto image = backend->register_terminal(tp);
    EXPECT_TRUE(image.is_ok()) << image.status().to_string();
    d.id = image->terminal_id;
    d.psam = std::make_unique<devices::Psam>(*image);
    d.sam_link = std::make_unique<DirectLink>(*d.psam);
    d.sam = std::make_unique<devices::SamClient>(*d.sam_link);
    EXPECT_TRUE(d.sam->open().is_ok());
    d.channel = network->connect(*proxy, device);
    d.losing = std::make_unique<LosingChannel>(*d.channel);
    devices::IssuingDeskOptions o;
    o.terminal_id = d.id;
    o.pump = [this] { pump(); };
    d.desk = std::make_unique<IssuingDesk>(o, *d.losing, sim::Rng(77), d.sam.get());
    return d;
  }

  void pump() {
    loop.run_until(loop.now_us() + 50'000);
    auto polled = backend->poll();
    ASSERT_TRUE(polled.is_ok()) << polled.status().to_string();
  }

  std::int64_t account(std::string_view name) const { return *backend->ledger().balance(name); }
  std::int64_t card_count() const { return *backend->issuance().card_count(); }
  backend::CardRecord record(const protocol::Serial8& s) const {
    return *backend->issuance().card(s);
  }
  protocol::DateTime7 now() const { return backend->calendar().now_datetime(); }

  IssuingDesk& desk() { return *main.desk; }

  devices::IssuedCard issue(std::int64_t opening_fen, std::int64_t deposit_fen, bool named) {
    DeskIssueSpec spec;
    spec.opening_value_fen = opening_fen;
    spec.deposit_fen = deposit_fen;
    if (named) {
      spec.holder =
          devices::DeskHolderInfo{"Li Lei", "310101199001011234", "13800000000", "", true};
    }
    auto r = desk().issue(spec);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return std::move(r).value();
  }

  sim::EventLoop loop;
  std::unique_ptr<backend::Backend> backend;
  backend::Session admin;
  std::unique_ptr<Proxy> proxy;
  std::unique_ptr<sim::SimNetwork> network;
  Desk main;
};

TEST_F(IssuingDeskTest, IssuesAnAnonymousCardWithDepositOpeningValueExpiryAndPin) {
  const std::int64_t cash_before = account(backend::account::kIssuerCash);
  DeskIssueSpec spec;
  spec.card_type = protocol::CardType::kStudent;
  spec.opening_value_fen = 5'000;
  spec.deposit_fen = 2'000;
  spec.valid_to_yyyymmdd = 20'301'231;
  spec.pin = "4321";
  auto issued = desk().issue(spec);
  ASSERT_TRUE(issued.is_ok()) << issued.status().to_string();
  EXPECT_FALSE(issued->replayed);

  // The card the desk personalised holds the opening value and answers as a student card.
  CpuCard& card = issued->card;
  EXPECT_EQ(card.balance_fen(), 5'000u);
  EXPECT_EQ(issued->image.card_type, protocol::CardType::kStudent);
  EXPECT_EQ(issued->image.valid_to, protocol::date_bcd(2030, 12, 31));
  EXPECT_EQ(issued->image.pin, "4321");
  DirectLink link(card);
  auto select = link.transceive(
      protocol::Command{0x00, 0xA4, 0x04, 0x00, protocol::aid_for(card.family()), std::nullopt});
  ASSERT_TRUE(select.is_ok());
  ASSERT_EQ(select->sw, 0x9000);
  auto pin = link.transceive(protocol::Command{0x00, 0x20, 0x00, 0x00, {0x43, 0x21}, std::nullopt});
  ASSERT_TRUE(pin.is_ok());
  EXPECT_EQ(pin->sw, 0x9000);

  // The backend: believed balance, deposit, anonymous, the money in through the ledger.
  const backend::CardRecord rec = record(card.serial());
  EXPECT_EQ(rec.balance_fen, 5'000);
  EXPECT_EQ(rec.deposit_fen, 2'000);
  EXPECT_EQ(rec.valid_to_yyyymmdd, 20'301'231);
  EXPECT_FALSE(backend->cards().info(card.serial())->holder);
  EXPECT_EQ(account(backend::account::kIssuerCash) - cash_before, 7'000);

  // The desk's balance: the card's own figure beside the backend's.
  card.reset();
  DirectLink again(card);
  auto b = desk().balance(again);
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(b->card_balance_fen, 5'000u);
  EXPECT_EQ(b->record.balance_fen, 5'000);
  EXPECT_EQ(b->record.deposit_fen, 2'000);
  EXPECT_EQ(b->record.status_name, "active");
  EXPECT_FALSE(b->record.named);
  EXPECT_EQ(b->record.card_type, protocol::CardType::kStudent);
}

TEST_F(IssuingDeskTest, NamedCardIsReportedLostAndFound) {
  devices::IssuedCard issued = issue(1'000, 2'000, true);
  const protocol::Serial8 serial = issued.card.serial();
  EXPECT_TRUE(backend->cards().info(serial)->holder);

  auto lost = desk().report_lost(serial);
  ASSERT_TRUE(lost.is_ok()) << lost.status().to_string();
  EXPECT_EQ(lost->card.status_name, "lost");
  EXPECT_TRUE(lost->card.blacklisted);
  EXPECT_TRUE(*backend->risk().listed(serial));

  auto found = desk().report_found(serial);
  ASSERT_TRUE(found.is_ok()) << found.status().to_string();
  EXPECT_EQ(found->card.status_name, "active");
  EXPECT_FALSE(*backend->risk().listed(serial));
  EXPECT_EQ(record(serial).balance_fen, 1'000);
}

TEST_F(IssuingDeskTest, ReportLostOfAnAnonymousCardIsRefusedAndChangesNothing) {
  devices::IssuedCard issued = issue(1'000, 0, false);
  auto lost = desk().report_lost(issued.card.serial());
  ASSERT_FALSE(lost.is_ok());
  EXPECT_EQ(lost.status().code(), Errc::kRejected) << lost.status().to_string();
  EXPECT_NE(lost.status().message().find("anonymous"), std::string::npos);
  EXPECT_EQ(record(issued.card.serial()).status, backend::CardStatus::kActive);
  EXPECT_FALSE(*backend->risk().listed(issued.card.serial()));
}

TEST_F(IssuingDeskTest, UnknownCardIsRefusedByEveryOperation) {
  const protocol::Serial8 nobody{0x31, 0x00, 0x99, 0x99, 0x99, 0x99, 0x99, 0x99};
  EXPECT_EQ(desk().query(nobody).status().code(), Errc::kNotFound);
  EXPECT_EQ(desk().report_lost(nobody).status().code(), Errc::kNotFound);
  EXPECT_EQ(desk().report_found(nobody).status().code(), Errc::kNotFound);
  EXPECT_EQ(desk().replace(nobody, nullptr).status().code(), Errc::kNotFound);
  wire::DeskRequest refund;
  refund.set_op_no(desk().next_op_no());
  refund.mutable_refund()->set_card_serial(protocol::wire::field(nobody));
  EXPECT_EQ(desk().send(refund).status().code(), Errc::kNotFound);
  EXPECT_EQ(card_count(), 0);
}

TEST_F(IssuingDeskTest, CancelOfAnUnusedCardReturnsTheMoneyAndWipesTheCard) {
  const std::int64_t cash_before = account(backend::account::kIssuerCash);
  devices::IssuedCard issued = issue(3'000, 1'000, false);
  DirectLink link(issued.card);
  auto cancelled = desk().cancel(link);
  ASSERT_TRUE(cancelled.is_ok()) << cancelled.status().to_string();
  EXPECT_EQ(cancelled->card.status_name, "cancelled");
  EXPECT_TRUE(cancelled->locked);
  EXPECT_EQ(issued.card.lock(), CpuCard::Lock::kPermanent);
  EXPECT_EQ(record(issued.card.serial()).balance_fen, 0);
  EXPECT_EQ(record(issued.card.serial()).deposit_fen, 0);
  EXPECT_EQ(account(backend::account::kIssuerCash), cash_before);

  // A wiped card is not a card any more: the desk cannot even read it.
  issued.card.reset();
  DirectLink dead(issued.card);
  EXPECT_EQ(desk().cancel(dead).status().code(), Errc::kRejected);
}

TEST_F(IssuingDeskTest, CancelOfAUsedCardIsRefused) {
  devices::IssuedCard issued = issue(0, 0, false);
  DirectLink link(issued.card);
  auto loaded = desk().recharge(link, issued.card.serial(), "desk-1-load-1", 500, now());
  ASSERT_TRUE(loaded.ok()) << loaded.status.to_string();
  issued.card.reset();
  DirectLink again(issued.card);
  auto cancelled = desk().cancel(again);
  ASSERT_FALSE(cancelled.is_ok());
  EXPECT_EQ(cancelled.status().code(), Errc::kRejected);
  EXPECT_NE(cancelled.status().message().find("used"), std::string::npos);
  EXPECT_EQ(issued.card.lock(), CpuCard::Lock::kNone);  // the refused card is never touched
  EXPECT_EQ(record(issued.card.serial()).balance_fen, 500);
}

TEST_F(IssuingDeskTest, CounterRechargeLoadsTheCardAndTheBackendAgrees) {
  devices::IssuedCard issued = issue(100, 0, false);
  DirectLink link(issued.card);
  auto r = desk().recharge(link, issued.card.serial(), "desk-1-load-7", 2'000, now());
  ASSERT_TRUE(r.ok()) << r.status.to_string() << " / " << r.result.detail;
  EXPECT_EQ(issued.card.balance_fen(), 2'100u);
  EXPECT_EQ(record(issued.card.serial()).balance_fen, 2'100);
}

TEST_F(IssuingDeskTest, RefundPaysTheCardsOwnBalanceAndTheDepositAndCollectsTheCard) {
  devices::IssuedCard issued = issue(5'000, 2'000, false);
  const std::int64_t cash_before = account(backend::account::kIssuerCash);
  DirectLink link(issued.card);
  auto refund = desk().refund(link);
  ASSERT_TRUE(refund.is_ok()) << refund.status().to_string();
  EXPECT_EQ(refund->balance_fen, 5'000);
  EXPECT_EQ(refund->deposit_fen, 2'000);
  EXPECT_EQ(refund->in_flight_fen, 0);
  EXPECT_EQ(refund->total_fen(), 7'000);
  EXPECT_TRUE(refund->locked);
  EXPECT_EQ(refund->card.status_name, "refunded");
  EXPECT_TRUE(refund->card.blacklisted);
  EXPECT_EQ(issued.card.lock(), CpuCard::Lock::kPermanent);
  EXPECT_EQ(account(backend::account::kIssuerCash), cash_before - 7'000);

  // Refunded once: a second refund (a new operation) is refused.
  wire::DeskRequest again;
  again.set_op_no(desk().next_op_no());
  again.mutable_refund()->set_card_serial(protocol::wire::field(issued.card.serial()));
  again.mutable_refund()->set_card_balance_fen(0);
  EXPECT_EQ(desk().send(again).status().code(), Errc::kRejected);
  EXPECT_EQ(account(backend::account::kIssuerCash), cash_before - 7'000);
}

TEST_F(IssuingDeskTest, RefundOfALostOrBlockedCardIsRefusedAndTheCardIsLeftAlone) {
  devices::IssuedCard lost = issue(3'000, 1'000, true);
  ASSERT_TRUE(desk().report_lost(lost.card.serial()).is_ok());
  devices::IssuedCard blocked = issue(3'000, 1'000, false);
  ASSERT_TRUE(backend->cards().block(blocked.card.serial(), "fraud confirmed").is_ok());
  const std::int64_t cash_before = account(backend::account::kIssuerCash);
  for (devices::IssuedCard* c : {&lost, &blocked}) {
    DirectLink link(c->card);
    auto refund = desk().refund(link);
    ASSERT_FALSE(refund.is_ok());
    EXPECT_EQ(refund.status().code(), Errc::kRejected) << refund.status().to_string();
    EXPECT_EQ(c->card.lock(), CpuCard::Lock::kNone);
    EXPECT_EQ(record(c->card.serial()).balance_fen, 3'000);
    EXPECT_EQ(record(c->card.serial()).deposit_fen, 1'000);
  }
  EXPECT_EQ(account(backend::account::kIssuerCash), cash_before);
}

TEST_F(IssuingDeskTest, RefundOfMoreThanTheBackendBelievesIsRefused) {
  devices::IssuedCard issued = issue(1'000, 0, false);
  wire::DeskRequest m;
  m.set_op_no(desk().next_op_no());
  m.mutable_refund()->set_card_serial(protocol::wire::field(issued.card.serial()));
  m.mutable_refund()->set_card_balance_fen(1'001);
  auto r = desk().send(m);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Errc::kRejected);
  EXPECT_NE(r.status().message().find("more than"), std::string::npos);
  EXPECT_EQ(record(issued.card.serial()).status, backend::CardStatus::kActive);
  EXPECT_EQ(record(issued.card.serial()).balance_fen, 1'000);
}

TEST_F(IssuingDeskTest, ReplaceOfADamagedCardMovesTheBalanceAndCollectsTheOldOne) {
  devices::IssuedCard old = issue(4'000, 2'000, false);
  DirectLink link(old.card);
  auto fresh = desk().replace(old.card.serial(), &link, "2468");
  ASSERT_TRUE(fresh.is_ok()) << fresh.status().to_string();
  EXPECT_NE(fresh->card.serial(), old.card.serial());
  EXPECT_EQ(fresh->card.balance_fen(), 4'000u);
  EXPECT_EQ(fresh->image.pin, "2468");
  ASSERT_TRUE(fresh->old_card);
  EXPECT_EQ(fresh->old_card->status_name, "replaced");
  ASSERT_TRUE(fresh->old_card->replaced_by);
  EXPECT_EQ(*fresh->old_card->replaced_by, fresh->card.serial());
  EXPECT_TRUE(fresh->old_locked);
  EXPECT_EQ(old.card.lock(), CpuCard::Lock::kPermanent);
  EXPECT_EQ(record(fresh->card.serial()).balance_fen, 4'000);
  EXPECT_EQ(record(fresh->card.serial()).deposit_fen, 2'000);
  EXPECT_EQ(record(old.card.serial()).balance_fen, 0);

  // The new card works at the desk; the old one is gone for good.
  DirectLink new_link(fresh->card);
  auto b = desk().balance(new_link);
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(b->card_balance_fen, 4'000u);
}

TEST_F(IssuingDeskTest, ReplaceOfALostNamedCardNeedsNoCardInTheField) {
  devices::IssuedCard old = issue(2'500, 1'000, true);
  ASSERT_TRUE(desk().report_lost(old.card.serial()).is_ok());
  auto fresh = desk().replace(old.card.serial(), nullptr);
  ASSERT_TRUE(fresh.is_ok()) << fresh.status().to_string();
  EXPECT_EQ(fresh->card.balance_fen(), 2'500u);
  EXPECT_FALSE(fresh->old_locked);
  EXPECT_EQ(old.card.lock(), CpuCard::Lock::kNone);  // not here: the blacklist stops it
  EXPECT_TRUE(*backend->risk().listed(old.card.serial()));
  EXPECT_TRUE(backend->cards().info(fresh->card.serial())->holder);

  // An anonymous card cannot be replaced once it is gone (cancelled here).
  devices::IssuedCard anon = issue(0, 0, false);
  DirectLink link(anon.card);
  ASSERT_TRUE(desk().cancel(link).is_ok());
  EXPECT_EQ(desk().replace(anon.card.serial(), nullptr).status().code(), Errc::kRejected);
}

TEST_F(IssuingDeskTest, ReplayedIssueAnswersTheFirstCardAgainAndMovesNothing) {
  DeskIssueSpec spec;
  spec.opening_value_fen = 3'000;
  spec.deposit_fen = 2'000;
  auto first = desk().issue(spec);
  ASSERT_TRUE(first.is_ok());
  const std::uint64_t op = desk().next_op_no() - 1;
  const std::int64_t cards = card_count();
  const std::int64_t cash = account(backend::account::kIssuerCash);

  wire::DeskRequest m;
  m.set_op_no(op);
  wire::DeskIssue* is = m.mutable_issue();
  is->set_opening_value_fen(3'000);
  is->set_deposit_fen(2'000);
  is->set_family(static_cast<std::uint32_t>(protocol::Family::kJtt978));
  auto replay = desk().send(m);
  ASSERT_TRUE(replay.is_ok()) << replay.status().to_string();
  EXPECT_TRUE(replay->replayed());
  EXPECT_EQ(replay->issued().serial(), protocol::wire::field(first->card.serial()));
  EXPECT_EQ(card_count(), cards);
  EXPECT_EQ(account(backend::account::kIssuerCash), cash);

  // The same number with another operation: refused, nothing changes.
  is->set_opening_value_fen(9'000);
  auto reused = desk().send(m);
  ASSERT_FALSE(reused.is_ok());
  EXPECT_EQ(reused.status().code(), Errc::kConflict);
  EXPECT_NE(reused.status().message().find("DESK_OP_REUSED"), std::string::npos);
  EXPECT_EQ(card_count(), cards);
  EXPECT_EQ(account(backend::account::kIssuerCash), cash);

  // Another desk's numbers are its own: the same op_no there is a new operation.
  Desk other = terminal("DESK-CENTRAL", "DESK-2");
  ASSERT_TRUE(other.desk->sign_in("clerk2", "password-2").is_ok());
  auto theirs = other.desk->send(m);
  ASSERT_TRUE(theirs.is_ok()) << theirs.status().to_string();
  EXPECT_FALSE(theirs->replayed());
  EXPECT_EQ(card_count(), cards + 1);
}

TEST_F(IssuingDeskTest, ReplayedRefundPaysOnce) {
  devices::IssuedCard issued = issue(1'500, 500, false);
  const std::int64_t cash = account(backend::account::kIssuerCash);
  DirectLink link(issued.card);
  ASSERT_TRUE(desk().refund(link).is_ok());
  wire::DeskRequest m;
  m.set_op_no(desk().next_op_no() - 1);
  m.mutable_refund()->set_card_serial(protocol::wire::field(issued.card.serial()));
  m.mutable_refund()->set_card_balance_fen(1'500);
  auto replay = desk().send(m);
  ASSERT_TRUE(replay.is_ok()) << replay.status().to_string();
  EXPECT_TRUE(replay->replayed());
  EXPECT_EQ(replay->refunded().balance_fen(), 1'500);
  EXPECT_EQ(account(backend::account::kIssuerCash), cash - 2'000);
}

TEST_F(IssuingDeskTest, ALostAnswerIsAskedAgainAndIssuesOneCard) {
  const std::int64_t cards = card_count();
  const std::int64_t cash = account(backend::account::kIssuerCash);
  // Requests so far on this channel: the sign-in. The issue's answer is lost.
  main.losing->lose_answer = 2;
  DeskIssueSpec spec;
  spec.opening_value_fen = 800;
  spec.deposit_fen = 200;
  auto issued = desk().issue(spec);
  ASSERT_TRUE(issued.is_ok()) << issued.status().to_string();
  EXPECT_EQ(desk().answer_retries(), 1u);
  EXPECT_TRUE(issued->replayed);
  EXPECT_EQ(issued->card.balance_fen(), 800u);
  EXPECT_EQ(card_count(), cards + 1);
  EXPECT_EQ(account(backend::account::kIssuerCash), cash + 1'000);
  EXPECT_EQ(record(issued->card.serial()).balance_fen, 800);
}

TEST_F(IssuingDeskTest, AnOperationLeftUnansweredKeepsItsNumberWhenAskedAgain) {
  const std::int64_t cards = card_count();
  // The issue and its three retries all go unanswered (the backend did the first).
  main.losing->lose_answer = 2;
  main.losing->lose_count = 4;
  DeskIssueSpec spec;
  spec.opening_value_fen = 600;
  auto first = desk().issue(spec);
  ASSERT_FALSE(first.is_ok());
  EXPECT_EQ(first.status().code(), Errc::kTimeout);
  EXPECT_EQ(card_count(), cards + 1);
  // The operator presses again: the same number, the first card's image.
  auto again = desk().issue(spec);
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(card_count(), cards + 1);
  // A different operation next gets a number of its own.
  spec.opening_value_fen = 700;
  auto other = desk().issue(spec);
  ASSERT_TRUE(other.is_ok()) << other.status().to_string();
  EXPECT_FALSE(other->replayed);
  EXPECT_EQ(card_count(), cards + 2);
}

TEST_F(IssuingDeskTest, OperatorMustBeSignedInAtThisDeskAsDeskStaff) {
  devices::IssuedCard issued = issue(1'000, 0, true);
  const protocol::Serial8 serial = issued.card.serial();

  // Not signed in.
  Desk second = terminal("DESK-CENTRAL", "DESK-3");
  auto r = second.desk->report_lost(serial);
  EXPECT_EQ(r.status().code(), Errc::kPermissionDenied);
  EXPECT_NE(r.status().message().find("DESK_NOT_SIGNED_IN"), std::string::npos);
  // A wrong password; a merchant's operator: no session.
  EXPECT_EQ(second.desk->sign_in("clerk", "wrong-password").code(), Errc::kPermissionDenied);
  EXPECT_EQ(second.desk->sign_in("shopper", "password-3").code(), Errc::kPermissionDenied);
  EXPECT_FALSE(second.desk->signed_in());

  // Another desk's session is not this desk's.
  wire::DeskRequest m;
  m.set_op_no(1);
  m.set_terminal_id(protocol::wire::field(second.id));
  m.mutable_report_lost()->set_card_serial(protocol::wire::field(serial));
  // The main desk's session goes with it (send fills in only an empty session).
  ASSERT_TRUE(desk().signed_in());
  auto stolen = desk().send(m);
  EXPECT_EQ(stolen.status().code(), Errc::kPermissionDenied);
  EXPECT_NE(stolen.status().message().find("belongs to desk"), std::string::npos);

  // A POS of a shop is not a desk, whoever signs in.
  Desk pos = terminal("SHOP-1", "POS-1");
  auto pos_in = pos.desk->sign_in("clerk", "password-2");
  EXPECT_EQ(pos_in.code(), Errc::kPermissionDenied);
  EXPECT_NE(pos_in.message().find("not an issuing desk"), std::string::npos);

  // A user deactivated after signing in is refused at the next operation.
  ASSERT_TRUE(second.desk->sign_in("clerk2", "password-2").is_ok());
  ASSERT_TRUE(backend->users().set_active(admin, "clerk2", false).is_ok());
  EXPECT_EQ(second.desk->report_lost(serial).status().code(), Errc::kPermissionDenied);

  // Signed out, or the session expired: signed in no more.
  ASSERT_TRUE(desk().sign_out().is_ok());
  EXPECT_EQ(desk().report_lost(serial).status().code(), Errc::kPermissionDenied);
  ASSERT_TRUE(desk().sign_in("clerk", "password-2").is_ok());
  loop.run_until(loop.now_us() + 13LL * 3'600 * 1'000'000);
  auto expired = desk().report_lost(serial);
  EXPECT_EQ(expired.status().code(), Errc::kPermissionDenied);
  EXPECT_NE(expired.status().message().find("expired"), std::string::npos);

  EXPECT_EQ(record(serial).status, backend::CardStatus::kActive);
}

TEST_F(IssuingDeskTest, MalformedRequestsAreRefusedAndIssueNothing) {
  DeskIssueSpec bad_date;
  bad_date.valid_to_yyyymmdd = 20'300'231;  // 31 February
  EXPECT_EQ(desk().issue(bad_date).status().code(), Errc::kMalformed);
  wire::DeskRequest m;
  m.set_op_no(desk().next_op_no());
  m.mutable_issue()->set_card_type(9);
  EXPECT_EQ(desk().send(m).status().code(), Errc::kMalformed);
  m.mutable_issue()->set_card_type(0);
  m.mutable_issue()->set_deposit_fen(-1);
  EXPECT_EQ(desk().send(m).status().code(), Errc::kMalformed);
  m.mutable_issue()->set_deposit_fen(0);
  m.set_op_no(0);  // a changing operation without its number
  EXPECT_EQ(desk().send(m).status().code(), Errc::kMalformed);
  wire::DeskRequest q;
  q.mutable_query()->set_card_serial("short");
  EXPECT_EQ(desk().send(q).status().code(), Errc::kMalformed);
  wire::DeskRequest empty;
  EXPECT_EQ(desk().send(empty).status().code(), Errc::kMalformed);
  EXPECT_EQ(card_count(), 0);
}

}  // namespace
}  // namespace citycard
