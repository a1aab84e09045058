#include "citycard/hil/pn532_control.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "citycard/hil/nfc.h"

namespace citycard::hil {
namespace {

std::unique_ptr<SoftPn532> start_pn532() {
  auto started = SoftPn532::start();
  if (!started) {
    ADD_FAILURE() << started.status().to_string();
    return nullptr;
  }
  return std::move(started).value();
}

// A control client on a unix socket: one line out, the reply's lines back.
class SocketClient {
 public:
  explicit SocketClient(const std::string& path)
      : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~SocketClient() { ::close(fd_); }
  bool connected() const { return connected_; }

  // Sends a line; reads until the line that starts with ok or err (blocking reads).
  std::string ask(const std::string& line) {
    const std::string out = line + "\n";
    if (::write(fd_, out.data(), out.size()) != static_cast<ssize_t>(out.size()))
      return "write failed";
    std::string reply;
    char c = 0;
    std::string current;
    while (::read(fd_, &c, 1) == 1) {
      reply.push_back(c);
      if (c != '\n') {
        current.push_back(c);
        continue;
      }
      if (current.rfind("ok", 0) == 0 || current.rfind("err", 0) == 0) return reply;
      current.clear();
    }
    return reply + "<eof>";
  }

 private:
  int fd_;
  bool connected_ = false;
};

TEST(Pn532Control, InsertsListsTearsAndRemovesCards) {
  auto pn532 = start_pn532();
  ASSERT_TRUE(pn532);
  Pn532Control control(*pn532);
  const std::string inserted = control.execute("insert cpu 42 1500");
  ASSERT_EQ(inserted.rfind("ok 1 uid ", 0), 0u) << inserted;
  EXPECT_EQ(inserted, "ok 1 uid " + to_hex(demo_uid(42)) + "\n");
  EXPECT_EQ(control.execute("insert m1 aabbccdd"), "ok 2 uid aabbccdd\n");
  EXPECT_EQ(control.execute("insert m1purse 300 11223344"), "ok 3 uid 11223344\n");
  const std::string cards = control.execute("cards");
  EXPECT_NE(cards.find("card 1 iso-dep uid " + to_hex(demo_uid(42)) + " atqa 0008 sak 20"),
            std::string::npos)
      << cards;
  EXPECT_NE(cards.find("card 2 mifare uid aabbccdd atqa 0004 sak 08"), std::string::npos) << cards;
  EXPECT_EQ(cards.substr(cards.size() - 3), "ok\n");
  EXPECT_EQ(control.execute("tear 1 3 after"), "ok\n");
  EXPECT_EQ(control.execute("tear 9 3 after").rfind("err not_found", 0), 0u);
  EXPECT_EQ(control.execute("latency 5 10\r\n"), "ok\n");
  EXPECT_EQ(control.execute("remove 2"), "ok\n");
  EXPECT_EQ(control.execute("remove 2").rfind("err not_found", 0), 0u);
  EXPECT_EQ(pn532->cards().size(), 2u);
  EXPECT_EQ(control.execute("remove all"), "ok\n");
  EXPECT_TRUE(pn532->cards().empty());
  EXPECT_EQ(control.execute("counters").rfind("ok commands=0 ", 0), 0u);
}

TEST(Pn532Control, BadLinesAreErrorsThatSayWhy) {
  auto pn532 = start_pn532();
  ASSERT_TRUE(pn532);
  Pn532Control control(*pn532);
  EXPECT_EQ(control.execute(""), "err invalid_argument: empty line (try help)\n");
  EXPECT_EQ(control.execute("frobnicate").rfind("err invalid_argument: unknown command", 0), 0u);
  EXPECT_EQ(control.execute("insert cpu x 1").rfind("err invalid_argument: usage", 0), 0u);
  EXPECT_EQ(control.execute("insert cpu 1 1 0102").rfind("err invalid_argument: uid", 0), 0u);
  EXPECT_EQ(control.execute("insert m1 0102030405").rfind("err invalid_argument: uid", 0), 0u);
  EXPECT_EQ(control.execute("latency -1").rfind("err invalid_argument", 0), 0u);
  EXPECT_EQ(control.execute(std::string(2000, 'a')).rfind("err too_large", 0), 0u);
  EXPECT_EQ(control.execute("terminal activate 10").rfind("err timeout", 0), 0u);
  EXPECT_EQ(control.execute("terminal apdu 00a4040000 10").rfind("err torn", 0), 0u);
  const std::string help = control.execute("help");
  EXPECT_NE(help.find("insert cpu"), std::string::npos);
  EXPECT_FALSE(control.quit_requested());
  EXPECT_EQ(control.execute("quit"), "ok bye\n");
  EXPECT_TRUE(control.quit_requested());
}

TEST(Pn532Control, ServesLinesOnAUnixSocket) {
  auto pn532 = start_pn532();
  ASSERT_TRUE(pn532);
  Pn532Control control(*pn532);
  char dir[] = "/tmp/citycard-ctl-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/ctl";
  auto server = ControlServer::start(control, path);
  ASSERT_TRUE(server) << server.status().to_string();
  {
    SocketClient client(path);
    ASSERT_TRUE(client.connected());
    EXPECT_EQ(client.ask("insert m1 aabbccdd"), "ok 1 uid aabbccdd\n");
    EXPECT_EQ(client.ask("nonsense").rfind("err", 0), 0u);
    const std::string cards = client.ask("cards");
    EXPECT_NE(cards.find("card 1 mifare"), std::string::npos) << cards;
  }
  // What the socket put in the field, libnfc sees.
  auto ctx = NfcContext::create();
  ASSERT_TRUE(ctx);
  auto reader = (*ctx)->open(pn532->connstring());
  ASSERT_TRUE(reader) << reader.status().to_string();
  ASSERT_TRUE((*reader)->start_initiator());
  Result<CardIdentity> card = (*reader)->select_card();
  ASSERT_TRUE(card) << card.status().to_string();
  EXPECT_EQ(to_hex(card->uid), "aabbccdd");
  reader->reset();

  (*server)->stop();
  EXPECT_NE(::access(path.c_str(), F_OK), 0) << "the socket file is removed";
  ::rmdir(dir);
}

TEST(Pn532Control, RejectsSocketPathsThatDoNotFit) {
  auto pn532 = start_pn532();
  ASSERT_TRUE(pn532);
  Pn532Control control(*pn532);
  EXPECT_EQ(ControlServer::start(control, std::string(200, 'x')).status().code(),
            Errc::kInvalidArgument);
  EXPECT_EQ(ControlServer::start(control, "/nonexistent-dir/ctl").status().code(), Errc::kIo);
}

TEST(Pn532Control, DemoUidsAvoidReservedFirstBytes) {
  for (std::uint64_t n = 0; n < 5000; ++n) {
    const Bytes uid = demo_uid(n);
    ASSERT_EQ(uid.size(), 4u);
    ASSERT_NE(uid[0], 0x08) << n;
    ASSERT_NE(uid[0], 0x88) << n;
  }
  EXPECT_NE(demo_uid(1), demo_uid(2));
}

}  // namespace
}  // namespace citycard::hil
