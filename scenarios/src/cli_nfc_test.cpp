// `citycard nfc read | emulate | pn532` as processes, through real libnfc against the
// software PN532 (one pty per test, so safe under ctest -j).
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>

#include "citycard/hil/soft_pn532.h"
#include "citycard/protocol/purse.h"
#include "test_process.h"

namespace citycard::scenarios {
namespace {

namespace fs = std::filesystem;
using testing::Child;

const std::string kBinary = std::string(CITYCARD_BINARY_DIR) + "/citycard";

// A fresh folder under /tmp (short: the pty symlink path ends up in a connstring).
std::string temp_dir() {
  char dir[] = "/tmp/citycard-cli-nfc-XXXXXX";
  return ::mkdtemp(dir) ? dir : "";
}

// Runs the CLI through a shell so stderr is captured too; returns {exit code, output}.
std::pair<int, std::string> run_cli(const std::string& args) {
  Child c({"/bin/sh", "-c", kBinary + " " + args + " 2>&1"});
  if (!c.started()) return {-1, ""};
  auto code = c.wait_exit(20'000);
  return {code.value_or(-1), c.output()};
}

TEST(NfcCommand, Pn532ServesCardsThatNfcReadReadsAndStopsOnSigterm) {
  const std::string dir = temp_dir();
  ASSERT_FALSE(dir.empty());
  const std::string pty = dir + "/pn532";
  Child pn532({kBinary, "nfc", "pn532", "--pty", pty, "--insert", "cpu 42 1234"});
  ASSERT_TRUE(pn532.started());
  auto ready = pn532.wait_for("serving", 20'000);
  ASSERT_TRUE(ready) << pn532.output();
  EXPECT_NE(ready->find("pn532_uart:" + pty), std::string::npos) << *ready;

  auto [code, out] = run_cli("nfc read --device pn532_uart:" + pty);
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("purse  jtt978  balance 1234 fen (12.34 yuan)"), std::string::npos) << out;
  EXPECT_NE(out.find("valid 2020-01-01 .. 2030-12-31"), std::string::npos) << out;
  EXPECT_NE(out.find("records 0"), std::string::npos) << out;

  auto [list_code, list_out] = run_cli("nfc list --device pn532_uart:" + pty);
  EXPECT_EQ(list_code, 0) << list_out;
  EXPECT_NE(list_out.find("1 card(s)"), std::string::npos) << list_out;

  pn532.signal(SIGTERM);
  auto exit = pn532.wait_exit(20'000);
  ASSERT_TRUE(exit) << "did not stop on SIGTERM: " << pn532.output();
  EXPECT_EQ(*exit, 0) << pn532.output();
  EXPECT_NE(pn532.output().find("pn532: stopped"), std::string::npos);
  EXPECT_FALSE(fs::exists(fs::symlink_status(pty))) << "the pty symlink is removed at stop";
  fs::remove_all(dir);
}

TEST(NfcCommand, ReadsAnM1PurseWithTheDemoMasterAndNotWithout) {
  const std::string dir = temp_dir();
  ASSERT_FALSE(dir.empty());
  const std::string pty = dir + "/pn532";
  Child pn532({kBinary, "nfc", "pn532", "--pty", pty, "--insert", "m1purse 555 31415926"});
  ASSERT_TRUE(pn532.started());
  ASSERT_TRUE(pn532.wait_for("serving", 20'000)) << pn532.output();

  auto [code, out] = run_cli("nfc read --demo-keys --sectors 3 --device pn532_uart:" + pty);
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("uid 31415926"), std::string::npos) << out;
  EXPECT_NE(out.find("sector  2  key A"), std::string::npos) << out;
  // Block 8 holds the purse value 555 = 0x22B as a MIFARE value block (little-endian).
  EXPECT_NE(out.find("block  8  2b020000"), std::string::npos) << out;

  auto [code2, out2] = run_cli("nfc read --sectors 3 --device pn532_uart:" + pty);
  EXPECT_EQ(code2, 0) << out2;
  EXPECT_NE(out2.find("sector  2  (no given key opens it)"), std::string::npos) << out2;

  pn532.signal(SIGINT);
  auto exit = pn532.wait_exit(20'000);
  ASSERT_TRUE(exit) << pn532.output();
  EXPECT_EQ(*exit, 0);
  fs::remove_all(dir);
}

TEST(NfcCommand, EmulatesACardToATerminalUntilSigterm) {
  auto started = hil::SoftPn532::start({});
  ASSERT_TRUE(started) << started.status().to_string();
  hil::SoftPn532& pn532 = **started;
  Child emulate({kBinary, "nfc", "emulate", "--card", "jtt978", "--balance", "777", "--device",
                 pn532.connstring()});
  ASSERT_TRUE(emulate.started());
  ASSERT_TRUE(emulate.wait_for("emulating", 20'000)) << emulate.output();
  ASSERT_TRUE(pn532.terminal_activate(20'000));
  hil::TerminalLink link(pn532);
  ASSERT_TRUE(
      link.transceive({0x00, 0xA4, 0x04, 0x00, protocol::aid_for(protocol::Family::kJtt978), 256}));
  Result<protocol::Response> balance = link.transceive({0x80, 0x5C, 0x00, 0x02, {}, 4});
  ASSERT_TRUE(balance) << balance.status().to_string();
  EXPECT_EQ(get_u32be(balance->data, 0), 777u);
  pn532.terminal_release();
  // The emulation waits for the next terminal (a second TgInitAsTarget); SIGTERM ends it.
  ASSERT_TRUE(
      pn532.wait_for([](const hil::Pn532Counters& c) { return c.command(0x8C) >= 2; }, 20'000));
  emulate.signal(SIGTERM);
  auto exit = emulate.wait_exit(20'000);
  ASSERT_TRUE(exit) << emulate.output();
  EXPECT_EQ(*exit, 0) << emulate.output();
  EXPECT_NE(emulate.output().find("(stopped): 1 session(s), 2 APDU(s), balance now 777 fen"),
            std::string::npos)
      << emulate.output();
}

TEST(NfcCommand, BadArgumentsGetAClearErrorAndExitCode2) {
  struct Case {
    std::string args, message;
  };
  const Case cases[] = {
      {"nfc", "usage: citycard nfc"},
      {"nfc frob", "unknown subcommand 'frob'"},
      {"nfc read --uid zz", "--uid takes 4, 7 or 10 bytes of hex, not 'zz'"},
      {"nfc read --key 0011", "--key takes 12 hex digits, not '0011'"},
      {"nfc read --m1-master xyz", "--m1-master takes 32 hex digits"},
      {"nfc read --records many", "records"},
      {"nfc emulate", "--card takes jtt978, cjt166"},
      {"nfc emulate --card gold", "not 'gold'"},
      {"nfc emulate --card jtt978 --uid-tail 12", "--uid-tail takes 6 hex digits"},
      {"nfc pn532", "--pty PATH is required"},
      {"nfc pn532 --pty a:b", "must not contain ':'"},
  };
  for (const Case& c : cases) {
    auto [code, out] = run_cli(c.args);
    EXPECT_EQ(code, 2) << c.args << ": " << out;
    EXPECT_NE(out.find(c.message), std::string::npos) << c.args << ": " << out;
  }
}

TEST(NfcCommand, ReadingFromAMissingReaderFailsWithExitCode1) {
  auto [code, out] = run_cli("nfc read --device pn532_uart:/dev/citycard-no-such-tty");
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("citycard nfc read:"), std::string::npos) << out;
}

}  // namespace
}  // namespace citycard::scenarios
