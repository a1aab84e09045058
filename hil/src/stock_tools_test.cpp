// The stock libnfc tools (libnfc-bin, libnfc-examples), unmodified, against the software
// PN532: nfc-list and nfc-poll in initiator mode, nfc-emulate-forum-tag4 in target mode. They
// run as child processes pointed at the emulator's pty with LIBNFC_DEVICE. Tests synchronise
// on the emulator's counters and on the child's output, never on time.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "citycard/hil/field_card.h"
#include "citycard/hil/m1_memory_card.h"
#include "citycard/hil/soft_pn532.h"

extern char** environ;

namespace citycard::hil {
namespace {

// Far beyond what the tools need (about a second); reaching it fails the test.
constexpr int kChildDeadlineMs = 8000;

// A tool run as a child process, stdout and stderr captured through one pipe.
class Child {
 public:
  // nullopt with errno_out = ENOENT when the tool is not installed.
  static std::optional<Child> spawn(const std::vector<std::string>& argv,
                                    const std::vector<std::string>& env_overrides, int& errno_out) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
      errno_out = errno;
      return std::nullopt;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDERR_FILENO);
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry = *e;
      if (entry.rfind("LIBNFC_", 0) != 0) env.push_back(entry);  // the test decides these
    }
    env.insert(env.end(), env_overrides.begin(), env_overrides.end());
    std::vector<char*> cargv;
    for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    std::vector<char*> cenv;
    for (std::string& e : env) cenv.push_back(e.data());
    cenv.push_back(nullptr);
    pid_t pid = 0;
    const int rc = ::posix_spawnp(&pid, argv[0].c_str(), &fa, nullptr, cargv.data(), cenv.data());
    posix_spawn_file_actions_destroy(&fa);
    ::close(p[1]);
    if (rc != 0) {
      ::close(p[0]);
      errno_out = rc;
      return std::nullopt;
    }
    return Child(pid, p[0]);
  }

  Child(Child&& o) noexcept : pid_(o.pid_), out_(o.out_) {
    o.pid_ = -1;
    o.out_ = -1;
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);  // only a child this test started, by its pid
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) ::close(out_);
  }

  // Reads output until `marker` has appeared (or EOF, or the deadline); returns all so far.
  std::string read_until(const std::string& marker) {
    while (output_.find(marker) == std::string::npos && read_some()) {
    }
    return output_;
  }
  // Reads to EOF and reaps the child; its exit code, or -1 when it had to be killed.
  int finish() {
    while (read_some()) {
    }
    if (pid_ <= 0) return -1;
    int status = 0;
    if (eof_) {
      ::waitpid(pid_, &status, 0);
    } else {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      status = -1;
    }
    pid_ = -1;
    return status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  const std::string& output() const { return output_; }

 private:
  Child(pid_t pid, int out) : pid_(pid), out_(out) {}
  bool read_some() {
    if (eof_) return false;
    pollfd p{out_, POLLIN, 0};
    if (::poll(&p, 1, kChildDeadlineMs) <= 0) {
      ADD_FAILURE() << "the tool said nothing for " << kChildDeadlineMs << " ms; output so far:\n"
                    << output_;
      return false;
    }
    char buf[4096];
    const ssize_t n = ::read(out_, buf, sizeof(buf));
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    output_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  pid_t pid_;
  int out_;
  bool eof_ = false;
  std::string output_;
};

std::vector<std::string> libnfc_env(const SoftPn532& pn532) {
  // No scan of USB readers: only the emulator, whatever is plugged into the machine.
  return {"LIBNFC_DEVICE=" + pn532.connstring(), "LIBNFC_AUTO_SCAN=false", "LIBNFC_LOG_LEVEL=1"};
}

std::unique_ptr<SoftPn532> start_pn532() {
  auto started = SoftPn532::start();
  if (!started) {
    ADD_FAILURE() << started.status().to_string();
    return nullptr;
  }
  return std::move(started).value();
}

#define SPAWN_OR_SKIP(child, argv, env)                                             \
  int spawn_errno = 0;                                                              \
  std::optional<Child> child = Child::spawn(argv, env, spawn_errno);                \
  if (!child && spawn_errno == ENOENT) GTEST_SKIP() << argv[0] << " not installed"; \
  ASSERT_TRUE(child.has_value()) << "spawn " << argv[0] << ": " << std::strerror(spawn_errno)

struct Echo {
  Bytes process(ByteView c) {
    Bytes r(c.begin(), c.end());
    r.insert(r.end(), {0x90, 0x00});
    return r;
  }
};

TEST(StockTools, NfcListSeesTheSimulatedCards) {
  Echo cpu;  // cards first: the field does not own them
  MifareClassic1k m1({0xAA, 0xBB, 0xCC, 0xDD});
  auto pn532 = start_pn532();
  ASSERT_TRUE(pn532);
  ASSERT_TRUE(pn532->insert(iso_dep_card(cpu, cpu_card_identity(from_hex("11223344")))));
  ASSERT_TRUE(pn532->insert(mifare_card(m1, m1_card_identity(from_hex("aabbccdd")))));

  const std::vector<std::string> argv{"nfc-list"};
  SPAWN_OR_SKIP(child, argv, libnfc_env(*pn532));
  const int code = child->finish();
  const std::string& out = child->output();
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("opened"), std::string::npos) << out;
  EXPECT_NE(out.find("2 ISO14443A passive target(s) found"), std::string::npos) << out;
  EXPECT_NE(out.find("UID (NFCID1): 11  22  33  44"), std::string::npos) << out;
  EXPECT_NE(out.find("SAK (SEL_RES): 20"), std::string::npos) << out;
  EXPECT_NE(out.find("ATS: 78  80  70  02  43  43"), std::string::npos) << out;
  EXPECT_NE(out.find("UID (NFCID1): aa  bb  cc  dd"), std::string::npos) << out;
  EXPECT_EQ(pn532->counters().error_frames, 0u);
}

TEST(StockTools, NfcListWithAnEmptyFieldFindsNothing) {
  auto pn532 = start_pn532();
  ASSERT_TRUE(pn532);
  const std::vector<std::string> argv{"nfc-list", "-v", "-t", "1"};
  SPAWN_OR_SKIP(child, argv, libnfc_env(*pn532));
  const int code = child->finish();
  EXPECT_EQ(code, 0) << child->output();
  EXPECT_NE(child->output().find("0 ISO14443A passive target(s) found"), std::string::npos)
      << child->output();
}

TEST(StockTools, NfcPollFindsTheCardAndNoticesItsRemoval) {
  Echo cpu;
  auto pn532 = start_pn532();
  ASSERT_TRUE(pn532);
  auto id = pn532->insert(iso_dep_card(cpu, cpu_card_identity(from_hex("11223344"))));
  ASSERT_TRUE(id);
  const std::vector<std::string> argv{"nfc-poll"};
  SPAWN_OR_SKIP(child, argv, libnfc_env(*pn532));
  EXPECT_NE(child->read_until("Waiting for card removing").find("UID (NFCID1): 11  22  33  44"),
            std::string::npos)
      << child->output();
  // Its removal loop has started when presence checks come in (with no delay between them).
  ASSERT_TRUE(pn532->wait_for([](const Pn532Counters& c) { return c.presence_checks >= 3; },
                              kChildDeadlineMs));
  ASSERT_TRUE(pn532->remove(*id));
  const int code = child->finish();
  EXPECT_EQ(code, 0) << child->output();
  EXPECT_NE(child->output().find("done."), std::string::npos) << child->output();
}

TEST(StockTools, NfcEmulateForumTag4AnswersTheSimulatedTerminal) {
  auto pn532 = start_pn532();
  ASSERT_TRUE(pn532);
  const std::vector<std::string> argv{"nfc-emulate-forum-tag4"};
  SPAWN_OR_SKIP(child, argv, libnfc_env(*pn532));
  Result<EmulatedTarget> target = pn532->terminal_activate(kChildDeadlineMs);
  ASSERT_TRUE(target) << target.status().to_string() << "\n" << child->output();
  EXPECT_EQ(to_hex(target->uid), "0800b00b");

  auto apdu = [&](std::string_view hex) {
    Result<Bytes> r = pn532->terminal_transceive(from_hex(hex), kChildDeadlineMs);
    return r ? to_hex(*r) : r.status().to_string();
  };
  EXPECT_EQ(apdu("00a4040007d276000085010100"), "9000");  // NDEF Tag Application v2
  EXPECT_EQ(apdu("00a4000c02e103"), "9000");              // capability container
  const std::string cc = apdu("00b000000f");
  EXPECT_EQ(cc.substr(0, 8), "000f2000") << cc;  // CCLEN 15, mapping version 2.0
  EXPECT_EQ(cc.substr(cc.size() - 4), "9000");
  EXPECT_EQ(apdu("00a4000c02e104"), "9000");  // NDEF file
  EXPECT_EQ(apdu("00b0000002"), "00219000") << "an NDEF message of 33 bytes";
  pn532->terminal_release();
  // The tool reports the release and exits.
  child->finish();
  EXPECT_NE(child->output().find("Target Released"), std::string::npos) << child->output();
}

}  // namespace
}  // namespace citycard::hil
