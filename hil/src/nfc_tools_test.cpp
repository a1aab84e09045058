// The CLI's entry points (list, read, emulate, serve) against the software PN532.
#include "citycard/hil/nfc_tools.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <future>
#include <thread>

#include "citycard/devices/cpu_card.h"
#include "citycard/devices/m1_card.h"
#include "citycard/devices/psam.h"
#include "citycard/devices/purchase.h"
#include "citycard/devices/sam_client.h"
#include "citycard/hil/m1_memory_card.h"
#include "citycard/hil/pn532_control.h"
#include "citycard/hil/soft_pn532.h"

namespace citycard::hil::tools {
namespace {

std::unique_ptr<SoftPn532> start_pn532(SoftPn532Options options = {}) {
  auto started = SoftPn532::start(std::move(options));
  if (!started) {
    ADD_FAILURE() << started.status().to_string();
    return nullptr;
  }
  return std::move(started).value();
}

// Two purchases on a card, in-process, so it has a log to read.
void ride_twice(devices::CpuCard& card) {
  const protocol::IssuerKeys keys = demo_issuer_keys();
  protocol::PsamImage p;
  p.terminal_id = array_from_hex<6>("000102030405");
  p.key_version = keys.key_version;
  p.purchase_master = keys.purchase;
  p.batch_key = protocol::terminal_batch_key(keys.batch, p.terminal_id);
  devices::Psam psam(p);
  devices::DirectLink psam_link(psam);
  devices::SamClient sam(psam_link);
  devices::PurchaseEngine engine(sam);
  devices::DirectLink link(card);
  ASSERT_TRUE(engine.purchase(link, {200, array_from_hex<7>("20240315080000")}).ok());
  ASSERT_TRUE(engine.purchase(link, {150, array_from_hex<7>("20240315180000")}).ok());
}

TEST(NfcTools, ListsReadersAndTheirCardsAndSaysWhichFailed) {
  MifareClassic1k m1({0xAA, 0xBB, 0xCC, 0xDD});
  auto pn532 = start_pn532();
  ASSERT_TRUE(pn532);
  ASSERT_TRUE(pn532->insert(mifare_card(m1, m1_card_identity(from_hex("aabbccdd")))));
  ListOptions options;
  options.connstrings = {pn532->connstring(), "pn532_uart:/dev/citycard-no-such-tty"};
  Result<std::vector<ReaderListing>> readers = list(options);
  ASSERT_TRUE(readers) << readers.status().to_string();
  ASSERT_EQ(readers->size(), 2u);
  const ReaderListing& soft = (*readers)[0];
  EXPECT_TRUE(soft.status) << soft.status.to_string();
  EXPECT_EQ(soft.name, "pn532_uart:" + pn532->pty_path());
  ASSERT_EQ(soft.cards.size(), 1u);
  EXPECT_EQ(to_hex(soft.cards[0].uid), "aabbccdd");
  EXPECT_EQ((*readers)[1].status.code(), Errc::kUnavailable);
  EXPECT_TRUE((*readers)[1].name.empty());
}

TEST(NfcTools, ReadsACpuCardsPurse) {
  const protocol::CardImage image = demo_card_image(77, 1000);
  devices::CpuCard card(image, sim::Rng(77));
  auto pn532 = start_pn532();
  ASSERT_TRUE(pn532);
  ride_twice(card);
  ASSERT_TRUE(pn532->insert(iso_dep_card(card, cpu_card_identity(demo_uid(77)))));
  ReadOptions options;
  options.connstring = pn532->connstring();
  Result<CardReading> r = read(options);
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ(r->card.uid, demo_uid(77));
  ASSERT_TRUE(r->purse.has_value());
  const PurseReading& p = *r->purse;
  EXPECT_EQ(p.family, protocol::Family::kJtt978);
  EXPECT_EQ(p.balance_fen, 650u);
  EXPECT_EQ(to_hex(p.application_serial), "0000" + to_hex(image.serial));
  EXPECT_EQ(to_hex(p.valid_to), "20301231");
  EXPECT_EQ(p.issuer_data, image.issuer_data);
  ASSERT_EQ(p.records.size(), 2u);
  EXPECT_EQ(p.records[0].amount_fen, 150u) << "newest first";
  EXPECT_EQ(p.records[0].counter, 1u);
  EXPECT_EQ(p.records[1].amount_fen, 200u);
  EXPECT_EQ(p.next_offline_counter, 2u);
  EXPECT_TRUE(r->sectors.empty());
}

TEST(NfcTools, ReadsTheM1SectorsThatTheKeysOpen) {
  MifareClassic1k m1({0xAA, 0xBB, 0xCC, 0xDD});
  auto pn532 = start_pn532();
  ASSERT_TRUE(pn532);
  m1.set_keys(1, array_from_hex<6>("111111111111"), array_from_hex<6>("222222222222"));
  m1.set_keys(2, array_from_hex<6>("333333333333"), array_from_hex<6>("444444444444"));
  m1.set_block(5, MifareClassic1k::value_block(4321, 5));
  ASSERT_TRUE(pn532->insert(mifare_card(m1, m1_card_identity(from_hex("aabbccdd")))));
  ReadOptions options;
  options.connstring = pn532->connstring();
  options.m1_sectors = 3;
  options.m1_keys = {array_from_hex<6>("ffffffffffff"), array_from_hex<6>("222222222222")};
  Result<CardReading> r = read(options);
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_FALSE(r->purse.has_value());
  ASSERT_EQ(r->sectors.size(), 3u);
  EXPECT_EQ(r->sectors[0].key_type, MifareKeyType::kA);
  ASSERT_EQ(r->sectors[0].blocks.size(), 4u);
  EXPECT_EQ(to_hex(ByteView(r->sectors[0].blocks[0]).first(4)), "aabbccdd");
  EXPECT_EQ(r->sectors[1].key_type, MifareKeyType::kB) << "key B opened sector 1";
  EXPECT_EQ(to_hex(r->sectors[1].key), "222222222222");
  ASSERT_EQ(r->sectors[1].blocks.size(), 4u);
  EXPECT_EQ(MifareClassic1k::value_of(r->sectors[1].blocks[1]), 4321);
  EXPECT_FALSE(r->sectors[2].key_type.has_value()) << "no key given for sector 2";
  EXPECT_TRUE(r->sectors[2].blocks.empty());
}

TEST(NfcTools, ReadsAnM1PurseWithKeysDerivedFromTheMaster) {
  const protocol::m1::Uid4 uid{0x31, 0x41, 0x59, 0x26};
  devices::M1Card card(demo_m1_image(uid, 555));
  auto pn532 = start_pn532();
  ASSERT_TRUE(pn532);
  ASSERT_TRUE(pn532->insert(mifare_card(card, m1_card_identity(uid))));
  ReadOptions options;
  options.connstring = pn532->connstring();
  options.m1_master = demo_issuer_keys().m1;
  Result<CardReading> r = read(options);
  ASSERT_TRUE(r) << r.status().to_string();
  ASSERT_EQ(r->sectors.size(), 16u);
  for (const M1SectorReading& s : r->sectors) {
    EXPECT_TRUE(s.key_type.has_value()) << "sector " << int(s.sector);
    EXPECT_EQ(s.blocks.size(), 4u) << "sector " << int(s.sector);
  }
  const auto purse = protocol::m1::decode_value(r->sectors[2].blocks[0]);  // block 8
  ASSERT_TRUE(purse.has_value());
  EXPECT_EQ(purse->value, 555);
  // Without the master the purse sectors stay shut; the transport-keyed ones open.
  options.m1_master.reset();
  r = read(options);
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_TRUE(r->sectors[0].key_type.has_value());
  EXPECT_FALSE(r->sectors[2].key_type.has_value());
}

TEST(NfcTools, ReadingWithNoCardIsNotFoundAndWaitingSeesACardCome) {
  devices::CpuCard card(demo_card_image(78, 300), sim::Rng(78));
  auto pn532 = start_pn532();
  ASSERT_TRUE(pn532);
  ReadOptions options;
  options.connstring = pn532->connstring();
  EXPECT_EQ(read(options).status().code(), Errc::kNotFound);

  options.wait_ms = 5000;
  auto reading = std::async(std::launch::async, [&] { return read(options); });
  ASSERT_TRUE(pn532->wait_for([](const Pn532Counters& c) { return c.command(0x60) >= 1; }, 5000));
  ASSERT_TRUE(pn532->insert(iso_dep_card(card, cpu_card_identity(demo_uid(78)))));
  Result<CardReading> r = reading.get();
  ASSERT_TRUE(r) << r.status().to_string();
  ASSERT_TRUE(r->purse.has_value());
  EXPECT_EQ(r->purse->balance_fen, 300u);
  EXPECT_TRUE(r->purse->records.empty());
  EXPECT_FALSE(r->purse->next_offline_counter.has_value());
}

TEST(NfcTools, EmulatesACardUntilTheSessionEndsOrStopIsRequested) {
  devices::CpuCard card(demo_card_image(79, 1234), sim::Rng(79));
  auto pn532 = start_pn532();
  ASSERT_TRUE(pn532);
  EmulateOptions options;
  options.connstring = pn532->connstring();
  options.emulation.sessions_max = 0;  // until stopped
  std::stop_source stop;
  auto run = std::async(std::launch::async, [&] {
    return emulate(
        options, [&card](ByteView c) { return card.process(c); }, stop.get_token());
  });
  ASSERT_TRUE(pn532->terminal_activate(5000));
  TerminalLink link(*pn532);
  ASSERT_TRUE(
      link.transceive({0x00, 0xA4, 0x04, 0x00, protocol::aid_for(protocol::Family::kJtt978), 256}));
  Result<protocol::Response> balance = link.transceive({0x80, 0x5C, 0x00, 0x02, {}, 4});
  ASSERT_TRUE(balance) << balance.status().to_string();
  EXPECT_EQ(get_u32be(balance->data, 0), 1234u);
  pn532->terminal_release();
  // The emulation goes on to wait for the next terminal; stop ends it.
  ASSERT_TRUE(pn532->wait_for([](const Pn532Counters& c) { return c.command(0x8C) >= 2; }, 5000));
  stop.request_stop();
  Result<EmulationReport> report = run.get();
  ASSERT_TRUE(report) << report.status().to_string();
  EXPECT_TRUE(report->stopped);
  EXPECT_EQ(report->sessions, 1u);
  EXPECT_EQ(report->apdus, 2u);
}

// A control client on the serve() socket.
std::string ask(const std::string& path, const std::string& line) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  std::string reply;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string out = line + "\n";
    if (::write(fd, out.data(), out.size()) == static_cast<ssize_t>(out.size())) {
      char c = 0;
      while (::read(fd, &c, 1) == 1 && c != '\n') reply.push_back(c);
    }
  }
  ::close(fd);
  return reply;
}

TEST(NfcTools, ServesASoftwarePn532OnAFixedPathUntilToldToQuit) {
  char dir[] = "/tmp/citycard-serve-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  ServeOptions options;
  options.pn532.link_path = std::string(dir) + "/pn532";
  options.control_socket = std::string(dir) + "/ctl";
  options.initial_commands = {"insert cpu 5 777"};
  std::promise<std::string> ready;
  options.on_ready = [&](const std::string& connstring) { ready.set_value(connstring); };
  auto serving = std::async(std::launch::async, [&] { return serve_soft_pn532(options); });
  const std::string connstring = ready.get_future().get();
  EXPECT_EQ(connstring, "pn532_uart:" + options.pn532.link_path);

  ReadOptions read_options;
  read_options.connstring = connstring;
  Result<CardReading> r = read(read_options);
  ASSERT_TRUE(r) << r.status().to_string();
  ASSERT_TRUE(r->purse.has_value());
  EXPECT_EQ(r->purse->balance_fen, 777u);

  EXPECT_EQ(ask(options.control_socket, "remove all"), "ok");
  EXPECT_EQ(read(read_options).status().code(), Errc::kNotFound);
  EXPECT_EQ(ask(options.control_socket, "quit"), "ok bye");
  Status served = serving.get();
  EXPECT_TRUE(served) << served.to_string();
  EXPECT_NE(::access(options.pn532.link_path.c_str(), F_OK), 0);
  ::rmdir(dir);
}

TEST(NfcTools, ServeReportsABadInitialCommand) {
  ServeOptions options;
  options.initial_commands = {"insert cpu nope"};
  Status s = serve_soft_pn532(options);
  EXPECT_EQ(s.code(), Errc::kInvalidArgument);
  EXPECT_NE(s.message().find("insert cpu nope"), std::string::npos) << s.to_string();
}

}  // namespace
}  // namespace citycard::hil::tools
