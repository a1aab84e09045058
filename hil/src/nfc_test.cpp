// The libnfc adapter end to end: libnfc's own pn532_uart driver talks to the software PN532
// on a pty, in initiator mode (terminals of devices/ over NfcCardLink, MIFARE commands) and in
// target mode (CardEmulator serving a CpuCard to the simulated terminal). Each test has its
// own emulator and pty.
#include "citycard/hil/nfc.h"

#include <gtest/gtest.h>

#include <future>
#include <string>

#include "citycard/devices/bus_validator.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/m1_card.h"
#include "citycard/devices/m1_purse.h"
#include "citycard/devices/psam.h"
#include "citycard/devices/purchase.h"
#include "citycard/devices/sam_client.h"
#include "citycard/hil/m1_memory_card.h"
#include "citycard/hil/pn532_control.h"
#include "citycard/hil/soft_pn532.h"
#include "citycard/protocol/crypto.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/event_loop.h"

namespace citycard::hil {
namespace {

namespace crypto = protocol::crypto;
using protocol::Command;

constexpr std::uint32_t kFareFen = 200;
const protocol::TerminalId kTerminal = array_from_hex<6>("000102030405");
// Exchanges of a purchase on the card link: SELECT, READ BINARY, INITIALIZE, DEBIT.
constexpr std::uint64_t kDebitExchange = 3;

protocol::PsamImage psam_image() {
  const protocol::IssuerKeys keys = demo_issuer_keys();
  protocol::PsamImage p;
  p.terminal_id = kTerminal;
  p.key_version = keys.key_version;
  p.purchase_master = keys.purchase;
  p.batch_key = protocol::terminal_batch_key(keys.batch, kTerminal);
  p.next_sequence = 1;
  return p;
}

protocol::Mac4 expected_tac(const protocol::CardImage& image, std::uint32_t seq,
                            const protocol::DateTime7& dt) {
  return crypto::purchase_tac(crypto::tac_key(image.algorithm, image.dtk), kFareFen,
                              protocol::txn::kPurchase, kTerminal, seq, dt);
}

// The bus never uploads in these tests; a channel that holds requests is enough.
class HoldingChannel final : public sim::Channel {
 public:
  void request(Bytes, ReplyFn) override { ++requests; }
  int requests = 0;
};

// The software PN532 and a libnfc reader opened on it. Declare the cards a test puts in the
// field before its Bench: the field does not own them, and closing the reader powers them down.
struct Bench {
  explicit Bench(SoftPn532Options options = {}) {
    auto started = SoftPn532::start(std::move(options));
    if (!started) {
      ADD_FAILURE() << started.status().to_string();
      return;
    }
    pn532 = std::move(started).value();
    auto c = NfcContext::create();
    if (!c) {
      ADD_FAILURE() << c.status().to_string();
      return;
    }
    ctx = std::move(c).value();
    auto r = ctx->open(pn532->connstring());
    if (!r) {
      ADD_FAILURE() << r.status().to_string();
      return;
    }
    reader = std::move(r).value();
  }
  ~Bench() {
    reader.reset();  // libnfc's close sequence runs against the live emulator
    ctx.reset();
  }
  bool ready() const { return reader != nullptr; }

  std::unique_ptr<SoftPn532> pn532;
  std::unique_ptr<NfcContext> ctx;
  std::unique_ptr<NfcReader> reader;
};

struct Bus {
  Bus() : psam(psam_image()), validator(config(), psam, loop, channel) {}
  static devices::BusValidatorConfig config() {
    devices::BusValidatorConfig c;
    c.device_id = "BV-HIL-1";
    c.operator_id = "SH-BUS-1";
    c.route = "71";
    c.vehicle = "沪A-12345";
    c.fare_fen = kFareFen;
    c.calendar_origin_epoch2000_s =
        protocol::epoch2000_from_datetime(array_from_hex<7>("20240315080507"));
    return c;
  }
  sim::EventLoop loop;
  devices::Psam psam;
  HoldingChannel channel;
  devices::BusValidator validator;
};

std::uint32_t balance_of(SoftPn532& pn532, const devices::CpuCard& card) {
  std::uint32_t balance = 0;
  pn532.with_field_locked([&] { balance = card.balance_fen(); });
  return balance;
}

TEST(Nfc, LinksAgainstLibnfc18) {
  EXPECT_EQ(std::string(libnfc_version()).rfind("1.8", 0), 0u) << libnfc_version();
}

TEST(Nfc, OpeningAReaderThatIsNotThereIsAClearError) {
  auto ctx = NfcContext::create();
  ASSERT_TRUE(ctx.is_ok());
  auto r = (*ctx)->open("pn532_uart:/dev/citycard-no-such-tty");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Errc::kUnavailable);
  EXPECT_NE(r.status().message().find("citycard-no-such-tty"), std::string::npos);
  EXPECT_EQ((*ctx)->open(std::string(2000, 'x')).status().code(), Errc::kInvalidArgument);
}

TEST(Nfc, LibnfcErrorsBecomeTypedStatuses) {
  EXPECT_EQ(status_from_libnfc(-6, "x").code(), Errc::kTimeout);      // NFC_ETIMEOUT
  EXPECT_EQ(status_from_libnfc(-20, "x").code(), Errc::kTorn);        // NFC_ERFTRANS
  EXPECT_EQ(status_from_libnfc(-10, "x").code(), Errc::kTorn);        // NFC_ETGRELEASED
  EXPECT_EQ(status_from_libnfc(-1, "x").code(), Errc::kUnavailable);  // NFC_EIO
  EXPECT_EQ(status_from_libnfc(-30, "x").code(), Errc::kRejected);    // NFC_EMFCAUTHFAIL
  EXPECT_EQ(status_from_libnfc(-5, "x").code(), Errc::kTooLarge);     // NFC_EOVFLOW
  EXPECT_NE(status_from_libnfc(-20, "GET BALANCE").message().find("GET BALANCE"),
            std::string::npos);
}

TEST(Nfc, OpensTheSoftwarePn532ThroughLibnfc) {
  Bench b;
  ASSERT_TRUE(b.ready());
  EXPECT_EQ(b.reader->name(), "pn532_uart:" + b.pn532->pty_path());
  const Pn532Counters c = b.pn532->counters();
  EXPECT_EQ(c.command(0x00), 1u) << "libnfc's communication test (Diagnose)";
  EXPECT_EQ(c.command(0x02), 1u) << "GetFirmwareVersion";
  EXPECT_EQ(c.error_frames, 0u);
}

TEST(Nfc, ListsEveryCardInTheField) {
  // Cards first: they must outlive the emulator and libnfc's close sequence, which powers
  // them down.
  devices::CpuCard cpu(demo_card_image(7, 500), sim::Rng(7));
  MifareClassic1k m1({0xAA, 0xBB, 0xCC, 0xDD});
  Bench b;
  ASSERT_TRUE(b.ready());
  ASSERT_TRUE(b.pn532->insert(iso_dep_card(cpu, cpu_card_identity(from_hex("11223344")))));
  ASSERT_TRUE(b.pn532->insert(mifare_card(m1, m1_card_identity(from_hex("aabbccdd")))));
  ASSERT_TRUE(b.reader->start_initiator());
  Result<std::vector<CardIdentity>> cards = b.reader->list_cards();
  ASSERT_TRUE(cards) << cards.status().to_string();
  ASSERT_EQ(cards->size(), 2u);
  EXPECT_EQ(to_hex((*cards)[0].uid), "11223344");
  EXPECT_EQ((*cards)[0].sak, 0x20);
  EXPECT_EQ(to_hex((*cards)[0].ats), "788070024343");
  EXPECT_EQ(to_hex((*cards)[1].uid), "aabbccdd");
  EXPECT_EQ(to_hex((*cards)[1].atqa), "0004");
  EXPECT_EQ((*cards)[1].sak, 0x08);
}

TEST(Nfc, NoCardIsNotFound) {
  Bench b;
  ASSERT_TRUE(b.ready());
  ASSERT_TRUE(b.reader->start_initiator());
  EXPECT_EQ(b.reader->select_card().status().code(), Errc::kNotFound);
  EXPECT_EQ(b.reader->transceive(from_hex("00a4040000")).status().code(), Errc::kInvalidArgument);
}

TEST(Nfc, ABusPurchaseRunsOverLibnfcAndTheTacVerifies) {
  const protocol::CardImage image = demo_card_image(31, 1000);
  devices::CpuCard card(image, sim::Rng(1));
  Bench b;
  ASSERT_TRUE(b.ready());
  auto id = b.pn532->insert(iso_dep_card(card, cpu_card_identity(demo_uid(31))));
  ASSERT_TRUE(id);
  ASSERT_TRUE(b.reader->start_initiator());
  Result<CardIdentity> selected = b.reader->select_card();
  ASSERT_TRUE(selected) << selected.status().to_string();
  EXPECT_EQ(selected->uid, demo_uid(31));
  EXPECT_TRUE(selected->iso_dep());

  Bus bus;
  NfcCardLink link(*b.reader);
  const devices::TapResult r = bus.validator.tap(link);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(link.exchanges(), 4u) << "SELECT, READ BINARY, INITIALIZE, DEBIT";
  EXPECT_EQ(balance_of(*b.pn532, card), 1000u - kFareFen);
  EXPECT_EQ(r.record.amount_fen(), static_cast<std::int32_t>(kFareFen));
  EXPECT_EQ(r.record.balance_before_fen(), 1000);
  protocol::DateTime7 dt{};
  ASSERT_TRUE(protocol::wire::to_datetime(r.record.datetime(), dt));
  EXPECT_EQ(protocol::datetime_to_string(dt), "2024-03-15 08:05:07");
  EXPECT_EQ(r.record.tac(),
            protocol::wire::field(expected_tac(image, r.record.terminal_seq(), dt)));
  EXPECT_EQ(b.pn532->counters().exchanges, 4u);
  EXPECT_TRUE(b.reader->card_present());
}

TEST(Nfc, ACardTornAfterTheDebitIsRecoveredOnTheNextTap) {
  const protocol::CardImage image = demo_card_image(32, 1000);
  devices::CpuCard card(image, sim::Rng(2));
  Bench b;
  ASSERT_TRUE(b.ready());
  auto id = b.pn532->insert(iso_dep_card(card, cpu_card_identity(demo_uid(32))));
  ASSERT_TRUE(id);
  ASSERT_TRUE(b.pn532->tear_at(*id, kDebitExchange, TearWhen::kAfterCommand));
  ASSERT_TRUE(b.reader->start_initiator());
  ASSERT_TRUE(b.reader->select_card());

  Bus bus;
  NfcCardLink link(*b.reader);
  const devices::TapResult torn = bus.validator.tap(link);
  ASSERT_FALSE(torn.ok());
  EXPECT_EQ(torn.refusal, devices::Refusal::kTorn) << torn.detail;
  EXPECT_NE(torn.detail.find("DEBIT"), std::string::npos) << torn.detail;
  EXPECT_EQ(bus.validator.engine().grey_records(), 1u);
  EXPECT_TRUE(b.pn532->cards().empty()) << "the tear took the card out of the field";
  EXPECT_FALSE(b.reader->card_present());
  EXPECT_EQ(balance_of(*b.pn532, card), 1000u - kFareFen) << "the card acted on the DEBIT";

  // The rider taps again.
  ASSERT_TRUE(b.pn532->insert(iso_dep_card(card, cpu_card_identity(demo_uid(32)))));
  ASSERT_TRUE(b.reader->select_card());
  const devices::TapResult again = bus.validator.tap(link);
  ASSERT_TRUE(again.ok()) << again.detail;
  EXPECT_TRUE(again.recovered);
  EXPECT_EQ(balance_of(*b.pn532, card), 1000u - kFareFen) << "no second debit";
  protocol::DateTime7 dt{};
  ASSERT_TRUE(protocol::wire::to_datetime(again.record.datetime(), dt));
  EXPECT_EQ(again.record.tac(),
            protocol::wire::field(expected_tac(image, again.record.terminal_seq(), dt)));
  EXPECT_EQ(bus.validator.engine().grey_counters().completed, 1u);
  EXPECT_EQ(bus.validator.engine().grey_records(), 0u);
}

TEST(Nfc, ACardTornBeforeTheDebitIsChargedOnceOnTheNextTap) {
  devices::CpuCard card(demo_card_image(33, 1000), sim::Rng(3));
  Bench b;
  ASSERT_TRUE(b.ready());
  auto id = b.pn532->insert(iso_dep_card(card, cpu_card_identity(demo_uid(33))));
  ASSERT_TRUE(id);
  ASSERT_TRUE(b.pn532->tear_at(*id, kDebitExchange, TearWhen::kBeforeCommand));
  ASSERT_TRUE(b.reader->start_initiator());
  ASSERT_TRUE(b.reader->select_card());
  Bus bus;
  NfcCardLink link(*b.reader);
  EXPECT_EQ(bus.validator.tap(link).refusal, devices::Refusal::kTorn);
  EXPECT_EQ(balance_of(*b.pn532, card), 1000u) << "the card never saw the DEBIT";

  ASSERT_TRUE(b.pn532->insert(iso_dep_card(card, cpu_card_identity(demo_uid(33)))));
  ASSERT_TRUE(b.reader->select_card());
  const devices::TapResult again = bus.validator.tap(link);
  ASSERT_TRUE(again.ok()) << again.detail;
  EXPECT_FALSE(again.recovered);
  EXPECT_EQ(balance_of(*b.pn532, card), 1000u - kFareFen);
  EXPECT_EQ(bus.validator.engine().grey_counters().cleared, 1u);
}

TEST(Nfc, ASlowCardIsATimeoutAndTheLinkCarriesOn) {
  devices::CpuCard card(demo_card_image(34, 1000), sim::Rng(4));
  Bench b;
  ASSERT_TRUE(b.ready());
  ASSERT_TRUE(b.pn532->insert(iso_dep_card(card, cpu_card_identity(demo_uid(34)))));
  ASSERT_TRUE(b.reader->start_initiator());
  ASSERT_TRUE(b.reader->select_card());
  NfcCardLink link(*b.reader);
  const Command select{0x00, 0xA4, 0x04, 0x00, protocol::aid_for(protocol::Family::kJtt978), 256};
  b.reader->set_exchange_timeout_ms(200);
  b.pn532->set_latency(Pn532Latency{0, 5'000'000});  // 5 s of air time per exchange
  Result<protocol::Response> slow = link.transceive(select);
  ASSERT_FALSE(slow);
  EXPECT_EQ(slow.status().code(), Errc::kTimeout) << slow.status().to_string();
  b.pn532->set_latency({});
  // libnfc sends the next command without an abort; it replaces the late answer.
  Result<protocol::Response> fast = link.transceive(select);
  ASSERT_TRUE(fast) << fast.status().to_string();
  EXPECT_TRUE(fast->ok());
  EXPECT_GE(b.pn532->counters().cancelled, 1u);
}

TEST(Nfc, AReaderThatGoesAwayIsUnavailable) {
  devices::CpuCard card(demo_card_image(35, 1000), sim::Rng(5));
  Bench b;
  ASSERT_TRUE(b.ready());
  ASSERT_TRUE(b.pn532->insert(iso_dep_card(card, cpu_card_identity(demo_uid(35)))));
  ASSERT_TRUE(b.reader->start_initiator());
  ASSERT_TRUE(b.reader->select_card());
  b.pn532->stop();  // the board is unplugged
  Result<Bytes> r = b.reader->transceive(from_hex("805c000204"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), Errc::kUnavailable) << r.status().to_string();
}

TEST(Nfc, LongAnswersComeBackWholeThroughMiChaining) {
  struct Echo {
    Bytes process(ByteView c) {
      Bytes r(c.begin(), c.end());
      r.insert(r.end(), {0x90, 0x00});
      return r;
    }
  } echo;
  SoftPn532Options options;
  options.exchange_chunk_bytes = 64;
  Bench b(options);
  ASSERT_TRUE(b.ready());
  ASSERT_TRUE(b.pn532->insert(iso_dep_card(echo, cpu_card_identity(from_hex("01020304")))));
  ASSERT_TRUE(b.reader->start_initiator());
  ASSERT_TRUE(b.reader->select_card());
  // A 260-byte C-APDU (extended host frame); 262 bytes back in five chained pieces.
  Bytes apdu{0x00, 0xDA, 0x00, 0x00, 0xFF};
  for (int i = 0; i < 255; ++i) apdu.push_back(static_cast<std::uint8_t>(i));
  Result<Bytes> r = b.reader->transceive(apdu);
  ASSERT_TRUE(r) << r.status().to_string();
  ASSERT_EQ(r->size(), apdu.size() + 2);
  EXPECT_TRUE(std::equal(apdu.begin(), apdu.end(), r->begin()));
  EXPECT_EQ(b.pn532->counters().command(0x40), 5u) << "one exchange and four continuations";
  EXPECT_EQ(b.pn532->counters().exchanges, 1u);
}

TEST(Nfc, PollingWaitsForACardToCome) {
  devices::CpuCard card(demo_card_image(36, 1000), sim::Rng(6));
  Bench b;
  ASSERT_TRUE(b.ready());
  ASSERT_TRUE(b.reader->start_initiator());
  auto polled = std::async(std::launch::async, [&] { return b.reader->poll_card(5000); });
  ASSERT_TRUE(b.pn532->wait_for([](const Pn532Counters& c) { return c.command(0x60) == 1; }, 5000));
  ASSERT_TRUE(b.pn532->insert(iso_dep_card(card, cpu_card_identity(demo_uid(36)))));
  Result<CardIdentity> r = polled.get();
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ(r->uid, demo_uid(36));
  EXPECT_EQ(to_hex(r->ats), "788070024343");
}

TEST(Nfc, MifareClassicCommandsRunThroughLibnfc) {
  MifareClassic1k m1({0xAA, 0xBB, 0xCC, 0xDD});
  Bench b;
  ASSERT_TRUE(b.ready());
  const MifareKey key_a = array_from_hex<6>("a0a1a2a3a4a5");
  m1.set_keys(1, key_a, array_from_hex<6>("b0b1b2b3b4b5"));
  ASSERT_TRUE(b.pn532->insert(mifare_card(m1, m1_card_identity(from_hex("aabbccdd")))));
  ASSERT_TRUE(b.reader->start_initiator());
  Result<CardIdentity> card = b.reader->select_card();
  ASSERT_TRUE(card);
  EXPECT_EQ(card->sak, 0x08);

  MifareClassicSession s(*b.reader);
  const MifareKey transport = array_from_hex<6>("ffffffffffff");
  EXPECT_EQ(s.authenticate(4, MifareKeyType::kA, transport).code(), Errc::kRejected);
  ASSERT_TRUE(s.authenticate(4, MifareKeyType::kA, key_a)) << "the card was selected again";
  const auto value = MifareClassic1k::value_block(1000, 4);
  ASSERT_TRUE(s.write_block(4, value));
  ASSERT_TRUE(s.decrement(4, 200));
  ASSERT_TRUE(s.transfer(4));
  ASSERT_TRUE(s.restore(4));
  ASSERT_TRUE(s.transfer(5));
  Result<MifareBlock> back = s.read_block(5);
  ASSERT_TRUE(back) << back.status().to_string();
  EXPECT_EQ(MifareClassic1k::value_of(*back), 800);
  // A block of another sector: the card NAKs; the card is still there, so it is a refusal.
  EXPECT_EQ(s.read_block(8).status().code(), Errc::kRejected);
}

std::int32_t value_of(SoftPn532& pn532, const devices::M1Card& card, std::uint8_t block) {
  std::int32_t v = -1;
  pn532.with_field_locked([&] {
    if (auto d = protocol::m1::decode_value(card.block(block))) v = d->value;
  });
  return v;
}

devices::M1PurseOptions m1_options() {
  devices::M1PurseOptions o;
  o.terminal = kTerminal;
  o.m1_master = demo_issuer_keys().m1;
  return o;
}

const protocol::DateTime7 kM1When = array_from_hex<7>("20240315081530");

TEST(Nfc, AnM1PurseDebitRunsOverLibnfc) {
  const protocol::m1::Uid4 uid{0x11, 0x22, 0x33, 0x47};
  devices::M1Card card(demo_m1_image(uid, 1000));
  Bench b;
  ASSERT_TRUE(b.ready());
  ASSERT_TRUE(b.pn532->insert(mifare_card(card, m1_card_identity(uid))));
  ASSERT_TRUE(b.reader->start_initiator());
  ASSERT_TRUE(b.reader->select_card());
  devices::M1PurseEngine engine(m1_options());
  NfcM1Link link(*b.reader);
  EXPECT_EQ(link.uid(), uid);
  const devices::M1Result r = engine.transact(link, devices::M1Request{kFareFen, kM1When});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_FALSE(r.recovered);
  EXPECT_EQ(r.txn.counter, 1u);
  EXPECT_EQ(r.txn.balance_before_fen, 1000u);
  EXPECT_EQ(value_of(*b.pn532, card, 8), 800);
  EXPECT_EQ(value_of(*b.pn532, card, 9), 800) << "the backup follows";
  EXPECT_EQ(b.pn532->counters().exchanges, link.exchanges());
  EXPECT_GT(link.elapsed_us(), 0) << "a real link measures its exchanges";
}

TEST(Nfc, AnM1PurseTornMidDebitIsRolledForwardOnTheNextTap) {
  const protocol::m1::Uid4 uid{0x11, 0x22, 0x33, 0x48};
  devices::M1Card card(demo_m1_image(uid, 1000));
  Bench b;
  ASSERT_TRUE(b.ready());
  // Where the purse is decremented: found on a twin card through a direct link.
  std::uint64_t transfer_8 = 0;
  {
    devices::M1Card twin(demo_m1_image(uid, 1000));
    std::uint64_t n = 0;
    devices::DirectM1Link direct(twin, [&](ByteView c, ByteView, std::int64_t) {
      if (c[0] == protocol::m1::cmd::kTransfer && c[1] == 8 && transfer_8 == 0) transfer_8 = n;
      ++n;
    });
    ASSERT_TRUE(devices::M1PurseEngine(m1_options()).transact(direct, {kFareFen, kM1When}).ok());
    ASSERT_GT(transfer_8, 0u);
  }
  auto id = b.pn532->insert(mifare_card(card, m1_card_identity(uid)));
  ASSERT_TRUE(id);
  ASSERT_TRUE(b.reader->start_initiator());
  ASSERT_TRUE(b.reader->select_card());
  // The card leaves right after the purse block was decremented, before its backup.
  ASSERT_TRUE(b.pn532->tear_at(*id, transfer_8 + 1, TearWhen::kBeforeCommand));
  devices::M1PurseEngine engine(m1_options());
  NfcM1Link link(*b.reader);
  const devices::M1Result torn = engine.transact(link, {kFareFen, kM1When});
  EXPECT_EQ(torn.refusal, devices::Refusal::kTorn) << torn.detail;
  EXPECT_EQ(value_of(*b.pn532, card, 8), 800);
  EXPECT_EQ(value_of(*b.pn532, card, 9), 1000) << "the backup still holds the balance before";

  ASSERT_TRUE(b.pn532->insert(mifare_card(card, m1_card_identity(uid))));
  ASSERT_TRUE(b.reader->select_card());
  const devices::M1Result again = engine.transact(link, {kFareFen, kM1When});
  ASSERT_TRUE(again.ok()) << again.detail;
  EXPECT_TRUE(again.recovered);
  EXPECT_EQ(again.txn.counter, 1u);
  EXPECT_EQ(value_of(*b.pn532, card, 8), 800) << "no second debit";
  EXPECT_EQ(value_of(*b.pn532, card, 9), 800);
}

class CardEmulation : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(b.ready()); }
  Result<EmulationReport> serve(devices::CpuCard& card, EmulationOptions options = {}) {
    return emulator.run([&card](ByteView c) { return card.process(c); }, options);
  }
  Bench b;
  CardEmulator emulator{*b.reader};
};

TEST_F(CardEmulation, TheSimulatedTerminalReadsTheEmulatedCard) {
  const protocol::CardImage image = demo_card_image(41, 1000);
  devices::CpuCard card(image, sim::Rng(41));
  auto run = std::async(std::launch::async, [&] { return serve(card); });
  Result<EmulatedTarget> target = b.pn532->terminal_activate(5000);
  ASSERT_TRUE(target) << target.status().to_string();
  EXPECT_EQ(to_hex(target->uid), "08123456");
  EXPECT_EQ(target->sak, 0x20);
  EXPECT_EQ(to_hex(target->historical_bytes), "4343");

  TerminalLink link(*b.pn532);
  Result<protocol::Response> select = link.transceive(
      Command{0x00, 0xA4, 0x04, 0x00, protocol::aid_for(protocol::Family::kJtt978), 256});
  ASSERT_TRUE(select) << select.status().to_string();
  EXPECT_TRUE(select->ok());
  Result<protocol::Response> balance = link.transceive(Command{0x80, 0x5C, 0x00, 0x02, {}, 4});
  ASSERT_TRUE(balance) << balance.status().to_string();
  EXPECT_EQ(to_hex(balance->data), "000003e8");

  // A whole purchase, by the terminal code of devices/, through libnfc's target mode.
  devices::Psam psam(psam_image());
  devices::DirectLink psam_link(psam);
  devices::SamClient sam(psam_link);
  devices::PurchaseEngine engine(sam);
  const protocol::DateTime7 when = array_from_hex<7>("20240315081530");
  const devices::PurchaseResult p = engine.purchase(link, devices::PurchaseRequest{kFareFen, when});
  ASSERT_TRUE(p.ok()) << p.detail;
  EXPECT_EQ(p.purchase.balance_before_fen, 1000u);
  EXPECT_EQ(to_hex(p.purchase.tac), to_hex(expected_tac(image, p.purchase.terminal_seq, when)));

  b.pn532->terminal_release();
  Result<EmulationReport> report = run.get();
  ASSERT_TRUE(report) << report.status().to_string();
  EXPECT_EQ(report->sessions, 1u);
  EXPECT_EQ(report->apdus, 6u)
      << "SELECT, GET BALANCE, then SELECT, READ BINARY, INITIALIZE, DEBIT";
  EXPECT_FALSE(report->stopped);
  EXPECT_EQ(card.balance_fen(), 1000u - kFareFen);
  EXPECT_EQ(link.transceive(Command{0x80, 0x5C, 0x00, 0x02, {}, 4}).status().code(), Errc::kTorn);
}

TEST_F(CardEmulation, StopEndsAnEmulationThatWaitsForATerminal) {
  devices::CpuCard card(demo_card_image(42, 1000), sim::Rng(42));
  EmulationOptions options;
  options.sessions_max = 0;  // until stopped
  auto run = std::async(std::launch::async, [&] { return serve(card, options); });
  ASSERT_TRUE(b.pn532->wait_for([](const Pn532Counters& c) { return c.command(0x8C) == 1; }, 5000));
  emulator.stop();
  Result<EmulationReport> report = run.get();
  ASSERT_TRUE(report) << report.status().to_string();
  EXPECT_TRUE(report->stopped);
  EXPECT_EQ(report->sessions, 0u);
  EXPECT_TRUE(b.pn532->wait_for([](const Pn532Counters& c) { return c.aborted == 1; }, 5000))
      << "libnfc's abort reached the PN532 as an ACK";
}

}  // namespace
}  // namespace citycard::hil
