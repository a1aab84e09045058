// The software PN532 at the byte level: a raw client on the pty writes host frames and reads
// what the chip answers. libnfc's view of it is in nfc_test.cpp.
#include "citycard/hil/soft_pn532.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <future>

#include "citycard/hil/m1_memory_card.h"
#include "citycard/hil/pn532_frame.h"

namespace citycard::hil {
namespace {

constexpr int kReadTimeoutMs = 3000;  // only reached when the emulator fails to answer

// An echo card: answers every APDU with its own bytes + 9000, or `size` bytes when asked with
// a GET-like 00 CA 00 00 <n> command, to exercise chaining.
struct EchoCard {
  Bytes process(ByteView c) {
    if (c.size() == 5 && c[0] == 0x00 && c[1] == 0xCA) {
      Bytes r(c[4] == 0 ? 256 : c[4]);
      for (std::size_t i = 0; i < r.size(); ++i) r[i] = static_cast<std::uint8_t>(i);
      r.push_back(0x90);
      r.push_back(0x00);
      return r;
    }
    Bytes r(c.begin(), c.end());
    r.push_back(0x90);
    r.push_back(0x00);
    ++seen;
    return r;
  }
  int seen = 0;
};

// Hex with spaces for readability, as the client's replies come (without).
std::string h(std::string_view spaced) {
  return to_hex(from_hex(spaced));
}

// The emulator thread drives cards under the field lock; tests look at them under it too.
int seen(SoftPn532& pn532, const EchoCard& card) {
  int n = 0;
  pn532.with_field_locked([&] { n = card.seen; });
  return n;
}

class RawClient {
 public:
  explicit RawClient(const std::string& path) : fd_(::open(path.c_str(), O_RDWR | O_NOCTTY)) {}
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }

  void write_bytes(const Bytes& b) {
    ASSERT_EQ(::write(fd_, b.data(), b.size()), static_cast<ssize_t>(b.size()));
  }
  void wake() { write_bytes(from_hex("5555000000000000")); }
  void send(std::string_view hex) {
    write_bytes(pn532::encode_frame(pn532::kTfiHostToChip, from_hex(hex)));
  }

  // Reads exactly n bytes, or fewer if the emulator goes quiet for kReadTimeoutMs.
  Bytes read_exact(std::size_t n, int timeout_ms = kReadTimeoutMs) {
    Bytes out;
    while (out.size() < n) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) <= 0) break;
      std::uint8_t buf[512];
      const ssize_t got = ::read(fd_, buf, std::min(sizeof(buf), n - out.size()));
      if (got <= 0) break;
      out.insert(out.end(), buf, buf + got);
    }
    return out;
  }
  bool nothing_within(int ms) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, ms) == 0;
  }

  // The next frame from the chip: its PD0..PDn as hex, "ack", "error", or "" on silence.
  std::string read_frame() {
    const Bytes head = read_exact(5);
    if (head.size() < 5) return "";
    if (to_hex(head) == "0000ff00ff") return read_exact(1).size() == 1 ? "ack" : "";
    if (to_hex(head) == "0000ff01ff") return to_hex(read_exact(3)) == "7f8100" ? "error" : "";
    std::size_t len = head[3];
    if (head[3] == 0xFF && head[4] == 0xFF) {
      const Bytes ext = read_exact(3);
      len = (std::size_t{ext[0]} << 8) | ext[1];
    }
    const Bytes body = read_exact(len + 2);  // TFI + data, DCS, postamble
    if (body.size() != len + 2 || body[0] != pn532::kTfiChipToHost) return "bad";
    return to_hex(ByteView(body).subspan(1, len - 1));
  }
  // Sends a command, checks the ACK, returns the reply.
  std::string command(std::string_view hex) {
    send(hex);
    const std::string ack = read_frame();
    if (ack != "ack") return "no ack: " + ack;
    return read_frame();
  }

 private:
  int fd_;
};

struct Fixture {
  explicit Fixture(SoftPn532Options options = {}) {
    auto started = SoftPn532::start(std::move(options));
    if (!started) ADD_FAILURE() << started.status().to_string();
    pn532 = std::move(started).value();
    client = std::make_unique<RawClient>(pn532->pty_path());
    EXPECT_TRUE(client->ok());
    client->wake();
  }
  std::unique_ptr<SoftPn532> pn532;
  std::unique_ptr<RawClient> client;
};

TEST(SoftPn532, AnswersTheOpeningSequenceLikeAPn532) {
  Fixture f;
  EXPECT_EQ(f.client->command("1401"), "15");
  EXPECT_EQ(f.client->command("00006c69626e6663"), "01006c69626e6663");  // exact echo
  EXPECT_EQ(f.client->command("02"), "0332010607");
  EXPECT_EQ(f.client->command("1214"), "13");
  EXPECT_EQ(f.pn532->counters().command(0x02), 1u);
  EXPECT_EQ(f.pn532->counters().wakeups, 1u);
}

TEST(SoftPn532, KeepsARegisterFile) {
  Fixture f;
  EXPECT_EQ(f.client->command("086302806305ff"), "09");
  EXPECT_EQ(f.client->command("0663026305630d"), "0780ff00");
  EXPECT_EQ(f.client->command("066302"), "0780");
  EXPECT_EQ(f.client->command("0663"), "error");  // half an address: syntax error
}

TEST(SoftPn532, UnknownCommandsGetTheErrorFrame) {
  Fixture f;
  EXPECT_EQ(f.client->command("fe"), "error");
  EXPECT_EQ(f.pn532->counters().error_frames, 1u);
  EXPECT_EQ(f.client->command("02"), "0332010607") << "the chip carries on";
}

TEST(SoftPn532, AFrameWithABadChecksumIsIgnoredAndTheNextOneAnswered) {
  Fixture f;
  f.client->write_bytes(from_hex("0000ff02fed4022b00"));  // DCS off by one
  EXPECT_EQ(f.client->command("02"), "0332010607");
  EXPECT_EQ(f.pn532->counters().decoder.bad_data_checksum, 1u);
}

TEST(SoftPn532, NackGetsTheLastReplyAgain) {
  Fixture f;
  EXPECT_EQ(f.client->command("02"), "0332010607");
  f.client->write_bytes(pn532::nack_frame());
  EXPECT_EQ(f.client->read_frame(), "0332010607");
}

TEST(SoftPn532, ListsACpuCardWithItsAtsAndExchangesApdus) {
  EchoCard card;
  Fixture f;
  ASSERT_TRUE(f.pn532->insert(iso_dep_card(card, cpu_card_identity(from_hex("01020304")))));
  EXPECT_EQ(f.client->command("1214"), "13");  // automatic RATS on, as libnfc sets it
  // Tg 01, ATQA 0008, SAK 20, UID, then the ATS with its length byte TL.
  EXPECT_EQ(f.client->command("4a0100"), h("4b01 01 0008 20 04 01020304 07 788070024343"));
  EXPECT_EQ(f.client->command("4001 00a4040000"), "410000a40400009000");
  EXPECT_EQ(f.client->command("4002 00"), "4127") << "target 2 was never selected";
  EXPECT_EQ(seen(*f.pn532, card), 1);
}

TEST(SoftPn532, LongAnswersAreChainedWithMi) {
  SoftPn532Options options;
  options.exchange_chunk_bytes = 100;
  EchoCard card;
  Fixture f(options);
  ASSERT_TRUE(f.pn532->insert(iso_dep_card(card, cpu_card_identity(from_hex("01020304")))));
  f.client->command("4a0100");
  const std::string first = f.client->command("400100ca0000fa");  // 250 bytes + 9000
  ASSERT_EQ(first.substr(0, 4), "4140");
  EXPECT_EQ(first.size(), 2 * (2 + 100));
  const std::string second = f.client->command("4001");  // libnfc's "give me the rest"
  EXPECT_EQ(second.substr(0, 4), "4140");
  const std::string third = f.client->command("4001");
  EXPECT_EQ(third.substr(0, 4), "4100");
  EXPECT_EQ(third.substr(third.size() - 4), "9000");
  EXPECT_EQ((first.size() + second.size() + third.size()) / 2 - 6, 252u);
}

TEST(SoftPn532, NoCardAnswersAtOnceWhenRetriesAreFinite) {
  Fixture f;
  EXPECT_EQ(f.client->command("32050001 02"), "33");
  EXPECT_EQ(f.client->command("4a0100"), "4b00");
}

TEST(SoftPn532, InfiniteRetriesWaitForACardToCome) {
  MifareClassic1k m1({0xAA, 0xBB, 0xCC, 0xDD});
  Fixture f;
  f.client->send("4a0100");  // retries are 0xFF after power-up
  ASSERT_EQ(f.client->read_frame(), "ack");
  ASSERT_TRUE(f.pn532->wait_for([](const Pn532Counters& c) { return c.command(0x4A) == 1; }, 2000));
  EXPECT_TRUE(f.client->nothing_within(0)) << "no reply while the field is empty";
  ASSERT_TRUE(f.pn532->insert(mifare_card(m1, m1_card_identity(from_hex("aabbccdd")))));
  EXPECT_EQ(f.client->read_frame(), h("4b01 01 0004 08 04 aabbccdd"));
}

TEST(SoftPn532, ANewFrameCancelsAPendingCommandAndAnAckAbortsIt) {
  EchoCard card;
  Fixture f;
  f.client->send("4a0100");
  ASSERT_EQ(f.client->read_frame(), "ack");
  EXPECT_EQ(f.client->command("02"), "0332010607");
  EXPECT_EQ(f.pn532->counters().cancelled, 1u);

  f.client->send("4a0100");
  ASSERT_EQ(f.client->read_frame(), "ack");
  f.client->write_bytes(pn532::ack_frame());  // libnfc's abort
  ASSERT_TRUE(f.pn532->wait_for([](const Pn532Counters& c) { return c.aborted == 1; }, 2000));
  // A card coming now must not produce a late reply to the aborted command.
  ASSERT_TRUE(f.pn532->insert(iso_dep_card(card, cpu_card_identity(from_hex("01020304")))));
  EXPECT_EQ(f.client->command("02"), "0332010607");
}

TEST(SoftPn532, APartialFrameIsDroppedAfterSilence) {
  Fixture f;
  f.client->write_bytes(from_hex("0000ff03fdd414"));  // a client dies mid-frame
  ASSERT_TRUE(f.pn532->wait_for(
      [](const Pn532Counters& c) { return c.decoder.partial_dropped == 1; }, 2000));
  EXPECT_EQ(f.client->command("02"), "0332010607");
}

TEST(SoftPn532, PowerDownSleepsUntilTheNextByte) {
  Fixture f;
  EXPECT_EQ(f.client->command("16f0"), "1700");
  f.client->wake();
  EXPECT_EQ(f.client->command("02"), "0332010607");
  EXPECT_EQ(f.pn532->counters().wakeups, 2u);
}

TEST(SoftPn532, PresenceChecksFollowTheCard) {
  EchoCard card;
  Fixture f;
  auto id = f.pn532->insert(iso_dep_card(card, cpu_card_identity(from_hex("01020304"))));
  ASSERT_TRUE(id);
  f.client->command("4a0100");
  EXPECT_EQ(f.client->command("42b2"), "4300a2");
  EXPECT_EQ(f.client->command("0006"), "0100");
  ASSERT_TRUE(f.pn532->remove(*id));
  EXPECT_EQ(f.client->command("42b2"), "4301");
  EXPECT_EQ(f.client->command("0006"), "0101");
  EXPECT_EQ(f.client->command("400100a4"), "4101") << "a selected card that left does not answer";
  EXPECT_EQ(f.pn532->counters().presence_checks, 4u);
}

TEST(SoftPn532, TearsACardAtAnExactExchange) {
  EchoCard card;
  Fixture f;
  auto id = f.pn532->insert(iso_dep_card(card, cpu_card_identity(from_hex("01020304"))));
  ASSERT_TRUE(id);
  f.client->command("4a0100");
  ASSERT_TRUE(f.pn532->tear_at(*id, 1, TearWhen::kAfterCommand));
  EXPECT_EQ(f.client->command("400111"), "4100119000");
  EXPECT_EQ(f.client->command("400122"), "4101");
  EXPECT_EQ(seen(*f.pn532, card), 2) << "torn after the command: the card acted on it";
  EXPECT_TRUE(f.pn532->cards().empty());
  EXPECT_EQ(f.pn532->counters().tears, 1u);
  EXPECT_EQ(f.pn532->tear_at(*id, 0, TearWhen::kBeforeCommand).code(), Errc::kNotFound);
}

TEST(SoftPn532, DeselectedCardsStayHaltedUntilTheFieldGoesOff) {
  EchoCard a;
  EchoCard b;
  Fixture f;
  ASSERT_TRUE(f.pn532->insert(iso_dep_card(a, cpu_card_identity(from_hex("0a0a0a0a")))));
  ASSERT_TRUE(f.pn532->insert(mifare_card(b, m1_card_identity(from_hex("0b0b0b0b")))));
  EXPECT_EQ(f.client->command("32050001 02"), "33");
  EXPECT_EQ(f.client->command("4a0100").substr(0, 20), "4b0101000820040a0a0a");
  EXPECT_EQ(f.client->command("4400"), "4500");
  EXPECT_EQ(f.client->command("4a0100"), h("4b01 01 0004 08 04 0b0b0b0b"));
  EXPECT_EQ(f.client->command("4400"), "4500");
  EXPECT_EQ(f.client->command("4a0100"), "4b00");
  // Selecting by UID wakes a halted card (libnfc re-selects MIFARE cards that way).
  EXPECT_EQ(f.client->command("4a01000b0b0b0b"), h("4b01 01 0004 08 04 0b0b0b0b"));
  EXPECT_EQ(f.client->command("320100"), "33");
  EXPECT_EQ(f.client->command("4a0100").substr(0, 20), "4b0101000820040a0a0a");
}

TEST(SoftPn532, AutoPollReportsTheCardWithItsType) {
  EchoCard card;
  Fixture f;
  ASSERT_TRUE(f.pn532->insert(iso_dep_card(card, cpu_card_identity(from_hex("01020304")))));
  f.client->command("1214");
  // nfc-poll's InAutoPoll: 20 polls, period 2, types 20 10 03 11 12 04 03.
  EXPECT_EQ(f.client->command("601402 20100311120403"),
            h("610120 10 01 0008 20 04 01020304 07 788070024343"));
}

TEST(SoftPn532, AutoPollGivesUpAfterItsBudget) {
  Fixture f;
  f.client->send("600101 10");  // one poll of 150 ms for one type
  ASSERT_EQ(f.client->read_frame(), "ack");
  EXPECT_EQ(f.client->read_frame(), "6100");
}

TEST(SoftPn532, MifareCommandsGoToTheCardWithPn532StatusCodes) {
  MifareClassic1k card({0xAA, 0xBB, 0xCC, 0xDD});
  Fixture f;
  ASSERT_TRUE(f.pn532->insert(mifare_card(card, m1_card_identity(from_hex("aabbccdd")))));
  f.client->command("4a0100");
  EXPECT_EQ(f.client->command("4001 6004 ffffffffffff aabbccdd"), "4100");
  EXPECT_EQ(f.client->command("4001 3004"), "4100" + std::string(32, '0'));
  EXPECT_EQ(f.client->command("4001 3008"), "4101") << "another sector: NAK";
  EXPECT_EQ(f.client->command("4001 6008 000000000000 aabbccdd"), "4114");
  EXPECT_EQ(f.client->command("4001 3004"), "4101") << "halted after a refused AUTH";
}

TEST(SoftPn532, TargetModeBridgesTheSimulatedTerminal) {
  Fixture f;
  EXPECT_EQ(f.client->command("1230"), "13");  // PICC emulation + auto RATS
  // TgInitAsTarget as libnfc builds it for an ISO-DEP card: mode 05, ATQA 0004 (LSB first),
  // UID 08 12 34 56, SAK 20, no FeliCa/DEP params, no Gt, Tk "CC".
  const std::string init =
      "8c05 0400 123456 20" + std::string(36, '0') + std::string(20, '0') + "00 024343";
  f.client->send(init);
  ASSERT_EQ(f.client->read_frame(), "ack");
  Result<EmulatedTarget> target = f.pn532->terminal_activate();
  ASSERT_TRUE(target) << target.status().to_string();
  EXPECT_EQ(to_hex(target->uid), "08123456");
  EXPECT_EQ(to_hex(target->atqa), "0004");
  EXPECT_EQ(target->sak, 0x20);
  EXPECT_EQ(to_hex(target->historical_bytes), "4343");
  EXPECT_EQ(f.client->read_frame(), "8d08e080");

  auto answer = std::async(
      std::launch::async, [&] { return f.pn532->terminal_transceive(from_hex("00a4040002aabb")); });
  EXPECT_EQ(f.client->command("86"), "870000a4040002aabb");
  EXPECT_EQ(f.client->command("8e6a82"), "8f00");
  Result<Bytes> r = answer.get();
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ(to_hex(*r), "6a82");

  f.pn532->terminal_release();
  EXPECT_EQ(f.client->command("86"), "8729");
  EXPECT_EQ(f.pn532->terminal_transceive(from_hex("00b0000000")).status().code(), Errc::kTorn);
}

TEST(SoftPn532, TheTerminalTimesOutWhenNobodyIsInTargetMode) {
  Fixture f;
  EXPECT_EQ(f.pn532->terminal_activate(50).status().code(), Errc::kTimeout);
  EXPECT_EQ(f.pn532->terminal_transceive(from_hex("00a4040000"), 50).status().code(), Errc::kTorn);
}

TEST(SoftPn532, TheFieldIsBounded) {
  SoftPn532Options options;
  options.field_cards_max = 1;
  EchoCard a;
  EchoCard b;
  Fixture f(options);
  ASSERT_TRUE(f.pn532->insert(iso_dep_card(a, cpu_card_identity(from_hex("01020304")))));
  EXPECT_EQ(
      f.pn532->insert(iso_dep_card(b, cpu_card_identity(from_hex("05060708")))).status().code(),
      Errc::kTooLarge);
}

TEST(SoftPn532, ASymlinkPointsAtThePtyAndGoesAtStop) {
  char dir[] = "/tmp/citycard-pn532-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  SoftPn532Options options;
  options.link_path = std::string(dir) + "/pn532";
  {
    Fixture f(options);
    char target[256] = {};
    ASSERT_GT(::readlink(options.link_path.c_str(), target, sizeof(target) - 1), 0);
    EXPECT_EQ(std::string(target), f.pn532->pty_path());
    EXPECT_EQ(f.pn532->connstring(), "pn532_uart:" + options.link_path);
  }
  EXPECT_NE(::access(options.link_path.c_str(), F_OK), 0);
  options.link_path = "/tmp/has:colon";
  EXPECT_EQ(SoftPn532::start(options).status().code(), Errc::kInvalidArgument);
  ::rmdir(dir);
}

TEST(SoftPn532, RateLimitsItsLog) {
  std::mutex mu;
  std::vector<std::string> lines;
  SoftPn532Options options;
  options.log_frames = true;
  options.log_burst_lines = 10;
  options.log_lines_per_s = 0.001;  // effectively: the burst and no more
  options.log_sink = [&](std::string_view l) {
    std::lock_guard lock(mu);
    lines.emplace_back(l);
  };
  Fixture f(options);
  for (int i = 0; i < 50; ++i) ASSERT_EQ(f.client->command("02"), "0332010607");
  std::lock_guard lock(mu);
  EXPECT_EQ(lines.size(), 10u);
}

}  // namespace
}  // namespace citycard::hil
