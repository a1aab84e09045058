#include "citycard/hil/pn532_control.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <sstream>

#include "citycard/devices/cpu_card.h"
#include "citycard/devices/m1_card.h"
#include "citycard/hil/m1_memory_card.h"
#include "citycard/sim/rng.h"

namespace citycard::hil {

namespace {

constexpr char kHelp[] =
    "insert cpu <serial> <balance_fen> [uid] | insert m1 [uid] | insert m1purse <balance_fen> "
    "[uid] |\n"
    "remove <id>|all | cards |\n"
    "tear <id> <nth> before|after | latency <reply_ms> [exchange_ms] | counters |\n"
    "terminal activate [timeout_ms] | terminal apdu <hex> [timeout_ms] | terminal release |\n"
    "help | quit\n";

std::vector<std::string> split(std::string_view line) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.emplace_back(line.substr(start, i - start));
  }
  return out;
}

template <class T>
bool parse_number(const std::string& s, T& out) {
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string err(Errc code, const std::string& message) {
  return std::string("err ") + errc_name(code) + ": " + message + "\n";
}
std::string err(const Status& s) {
  return err(s.code(), s.message());
}
std::string usage(const char* what) {
  return err(Errc::kInvalidArgument, std::string("usage: ") + what);
}

bool parse_uid(const std::string& hex, Bytes& uid) {
  return parse_hex(hex, uid) && (uid.size() == 4 || uid.size() == 7 || uid.size() == 10);
}

}  // namespace

protocol::IssuerKeys demo_issuer_keys() {
  protocol::IssuerKeys k;
  k.key_version = 1;
  k.purchase = array_from_hex<16>("0123456789abcdeffedcba9876543210");
  k.load = array_from_hex<16>("00112233445566778899aabbccddeeff");
  k.tac = array_from_hex<16>("a1a2a3a4a5a6a7a8b1b2b3b4b5b6b7b8");
  k.batch = array_from_hex<16>("5a5b5c5d5e5f50515253545556575859");
  k.m1 = array_from_hex<16>("e0e1e2e3e4e5e6e7f0f1f2f3f4f5f6f7");
  return k;
}

protocol::m1::M1Image demo_m1_image(const protocol::m1::Uid4& uid, std::uint32_t balance_fen,
                                    const protocol::IssuerKeys& keys) {
  protocol::m1::IssuerInfo info;
  info.card_number_bcd = protocol::m1::card_number_bcd("3100" + std::to_string(get_u32be(uid, 0)));
  info.city = {0x31, 0x00};
  info.valid_from = protocol::date_bcd(2020, 1, 1);
  info.valid_to = protocol::date_bcd(2030, 12, 31);
  return protocol::m1::m1_image(uid, balance_fen, info, keys.m1);
}

protocol::CardImage demo_card_image(std::uint64_t serial, std::uint32_t balance_fen,
                                    const protocol::IssuerKeys& keys) {
  protocol::CardImage c;
  c.family = protocol::Family::kJtt978;
  for (std::size_t i = 0; i < 8; ++i)
    c.serial[i] = static_cast<std::uint8_t>(serial >> (56 - 8 * i));
  c.card_number = "3100" + std::to_string(serial);
  c.balance_fen = balance_fen;
  c.valid_from = protocol::date_bcd(2020, 1, 1);
  c.valid_to = protocol::date_bcd(2030, 12, 31);
  c.issuer_data = array_from_hex<8>("3100310001000000");
  protocol::derive_card_keys(keys, protocol::crypto::Algorithm::kTripleDes, c);
  return c;
}

Bytes demo_uid(std::uint64_t n) {
  // A Knuth multiplicative hash spreads small numbers over the 32-bit UID space.
  const auto h = static_cast<std::uint32_t>(n * 2654435761u + 0x5A17C0DEu);
  Bytes uid;
  put_u32be(uid, h);
  if (uid[0] == 0x08 || uid[0] == 0x88) uid[0] ^= 0x40;
  return uid;
}

std::string Pn532Control::execute(std::string_view line) {
  std::lock_guard lock(mu_);
  if (line.size() > kLineBytesMax) return err(Errc::kTooLarge, "line over 1024 bytes");
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  const std::vector<std::string> args = split(line);
  if (args.empty()) return err(Errc::kInvalidArgument, "empty line (try help)");
  const std::string& c = args[0];
  if (c == "insert") return insert(args);
  if (c == "remove") return remove(args);
  if (c == "cards") return list_cards();
  if (c == "tear") return tear(args);
  if (c == "latency") return latency(args);
  if (c == "counters") return counters();
  if (c == "terminal") return terminal(args);
  if (c == "help") return std::string(kHelp) + "ok\n";
  if (c == "quit") {
    quit_.store(true);
    return "ok bye\n";
  }
  return err(Errc::kInvalidArgument, "unknown command '" + c + "' (try help)");
}

std::string Pn532Control::insert(const std::vector<std::string>& args) {
  std::shared_ptr<FieldCard> card;
  if (args.size() >= 4 && args.size() <= 5 && args[1] == "cpu") {
    std::uint64_t serial = 0;
    std::uint32_t balance = 0;
    if (!parse_number(args[2], serial) || !parse_number(args[3], balance)) {
      return usage("insert cpu <serial> <balance_fen> [uid]");
    }
    Bytes uid = demo_uid(serial);
    if (args.size() == 5 && !parse_uid(args[4], uid))
      return err(Errc::kInvalidArgument, "uid: 4, 7 or 10 bytes of hex");
    auto model = std::make_unique<devices::CpuCard>(demo_card_image(serial, balance, keys_),
                                                    sim::Rng(serial).fork("card"));
    card = iso_dep_card(std::move(model), cpu_card_identity(uid));
  } else if (args.size() >= 2 && args.size() <= 3 && args[1] == "m1") {
    Bytes uid = demo_uid(1'000'000 + next_seed_++);
    if (args.size() == 3 && (!parse_hex(args[2], uid) || uid.size() != 4)) {
      return err(Errc::kInvalidArgument, "uid: 4 bytes of hex (a 1K card's NUID)");
    }
    const std::array<std::uint8_t, 4> uid4{uid[0], uid[1], uid[2], uid[3]};
    card = mifare_card(std::make_unique<MifareClassic1k>(uid4), m1_card_identity(uid));
  } else if (args.size() >= 3 && args.size() <= 4 && args[1] == "m1purse") {
    std::uint32_t balance = 0;
    if (!parse_number(args[2], balance)) return usage("insert m1purse <balance_fen> [uid]");
    Bytes uid = demo_uid(1'000'000 + next_seed_++);
    if (args.size() == 4 && (!parse_hex(args[3], uid) || uid.size() != 4)) {
      return err(Errc::kInvalidArgument, "uid: 4 bytes of hex (a 1K card's NUID)");
    }
    const protocol::m1::Uid4 uid4{uid[0], uid[1], uid[2], uid[3]};
    card = mifare_card(std::make_unique<devices::M1Card>(demo_m1_image(uid4, balance, keys_)),
                       m1_card_identity(uid));
  } else {
    return usage(
        "insert cpu <serial> <balance_fen> [uid] | insert m1 [uid] | insert m1purse <balance_fen> "
        "[uid]");
  }
  const std::string uid_hex = to_hex(card->identity().uid);
  Result<CardId> id = pn532_.insert(std::move(card));
  if (!id) return err(id.status());
  return "ok " + std::to_string(*id) + " uid " + uid_hex + "\n";
}

std::string Pn532Control::remove(const std::vector<std::string>& args) {
  if (args.size() != 2) return usage("remove <card id>|all");
  if (args[1] == "all") {
    pn532_.remove_all();
    return "ok\n";
  }
  CardId id = 0;
  if (!parse_number(args[1], id)) return usage("remove <card id>|all");
  if (!pn532_.remove(id)) return err(Errc::kNotFound, "card " + args[1] + " is not in the field");
  return "ok\n";
}

std::string Pn532Control::list_cards() {
  std::ostringstream out;
  for (const FieldEntry& e : pn532_.cards()) {
    out << "card " << e.id << ' ' << (e.kind == FieldCard::Kind::kIsoDep ? "iso-dep" : "mifare")
        << ' ' << e.identity.to_string() << " exchanges " << e.exchanges
        << (e.selected ? " selected" : "") << (e.halted ? " halted" : "") << '\n';
  }
  out << "ok\n";
  return out.str();
}

std::string Pn532Control::tear(const std::vector<std::string>& args) {
  CardId id = 0;
  std::uint64_t nth = 0;
  if (args.size() != 4 || !parse_number(args[1], id) || !parse_number(args[2], nth) ||
      (args[3] != "before" && args[3] != "after")) {
    return usage("tear <card id> <nth> before|after");
  }
  const TearWhen when = args[3] == "before" ? TearWhen::kBeforeCommand : TearWhen::kAfterCommand;
  if (Status s = pn532_.tear_at(id, nth, when); !s) return err(s);
  return "ok\n";
}

std::string Pn532Control::latency(const std::vector<std::string>& args) {
  Pn532Latency l;
  std::int64_t reply_ms = 0;
  std::int64_t exchange_ms = 0;
  if (args.size() < 2 || args.size() > 3 || !parse_number(args[1], reply_ms) ||
      (args.size() == 3 && !parse_number(args[2], exchange_ms)) || reply_ms < 0 ||
      exchange_ms < 0) {
    return usage("latency <reply_ms> [exchange_ms]");
  }
  l.reply_us = reply_ms * 1000;
  l.exchange_us = exchange_ms * 1000;
  pn532_.set_latency(l);
  return "ok\n";
}

std::string Pn532Control::counters() {
  const Pn532Counters c = pn532_.counters();
  std::uint64_t commands = 0;
  for (std::uint64_t n : c.commands) commands += n;
  std::ostringstream out;
  out << "ok commands=" << commands << " replies=" << c.replies << " exchanges=" << c.exchanges
      << " presence_checks=" << c.presence_checks << " tears=" << c.tears
      << " terminal_apdus=" << c.terminal_apdus << " cancelled=" << c.cancelled
      << " aborted=" << c.aborted << " error_frames=" << c.error_frames
      << " bad_checksums=" << c.decoder.bad_length_checksum + c.decoder.bad_data_checksum
      << " partial_dropped=" << c.decoder.partial_dropped << '\n';
  return out.str();
}

std::string Pn532Control::terminal(const std::vector<std::string>& args) {
  std::int64_t timeout_ms = SoftPn532::kTerminalTimeoutMsDefault;
  if (args.size() >= 2 && args[1] == "activate" && args.size() <= 3) {
    if (args.size() == 3 && !parse_number(args[2], timeout_ms))
      return usage("terminal activate [timeout_ms]");
    Result<EmulatedTarget> t = pn532_.terminal_activate(timeout_ms);
    if (!t) return err(t.status());
    char tail[32];
    std::snprintf(tail, sizeof(tail), " atqa %02x%02x sak %02x", t->atqa[0], t->atqa[1], t->sak);
    return "ok uid " + to_hex(t->uid) + tail + " hist " + to_hex(t->historical_bytes) + "\n";
  }
  if (args.size() >= 3 && args[1] == "apdu" && args.size() <= 4) {
    Bytes capdu;
    if (!parse_hex(args[2], capdu) || capdu.empty())
      return usage("terminal apdu <hex> [timeout_ms]");
    if (args.size() == 4 && !parse_number(args[3], timeout_ms))
      return usage("terminal apdu <hex> [timeout_ms]");
    Result<Bytes> r = pn532_.terminal_transceive(capdu, timeout_ms);
    if (!r) return err(r.status());
    return "ok " + to_hex(*r) + "\n";
  }
  if (args.size() == 2 && args[1] == "release") {
    pn532_.terminal_release();
    return "ok\n";
  }
  return usage(
      "terminal activate [timeout_ms] | terminal apdu <hex> [timeout_ms] | terminal release");
}

// ---- ControlServer ----

Result<std::unique_ptr<ControlServer>> ControlServer::start(Pn532Control& control,
                                                            std::string socket_path) {
  sockaddr_un addr{};
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    return Result<std::unique_ptr<ControlServer>>(Errc::kInvalidArgument,
                                                  "control socket path must be 1.." +
                                                      std::to_string(sizeof(addr.sun_path) - 1) +
                                                      " bytes: " + socket_path);
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return Result<std::unique_ptr<ControlServer>>(Errc::kIo,
                                                  std::string("socket: ") + std::strerror(errno));
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd, 4) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    return Result<std::unique_ptr<ControlServer>>(Errc::kIo,
                                                  "bind/listen " + socket_path + ": " + why);
  }
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
    ::close(fd);
    ::unlink(socket_path.c_str());
    return Result<std::unique_ptr<ControlServer>>(Errc::kIo, "pipe2 failed");
  }
  std::unique_ptr<ControlServer> server(
      new ControlServer(control, std::move(socket_path), fd, p[0], p[1]));
  ControlServer* raw = server.get();
  server->thread_ = std::thread([raw] { raw->run(); });
  return server;
}

ControlServer::ControlServer(Pn532Control& control, std::string path, int listen_fd, int wake_r,
                             int wake_w)
    : control_(control),
      path_(std::move(path)),
      listen_fd_(listen_fd),
      wake_r_(wake_r),
      wake_w_(wake_w) {}

ControlServer::~ControlServer() {
  stop();
}

void ControlServer::stop() {
  if (stopping_.exchange(true)) return;
  const std::uint8_t b = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_w_, &b, 1);
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(wake_r_);
  ::close(wake_w_);
  ::unlink(path_.c_str());
}

void ControlServer::run() {
  while (!stopping_.load()) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_r_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if ((fds[1].revents & POLLIN) != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    serve_client(client);
    ::close(client);
  }
}

void ControlServer::serve_client(int fd) {
  std::string pending;
  char buf[512];
  while (!stopping_.load()) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {wake_r_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if ((fds[1].revents & POLLIN) != 0) return;
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) return;  // the client hung up
    pending.append(buf, static_cast<std::size_t>(n));
    std::size_t eol;
    while ((eol = pending.find('\n')) != std::string::npos) {
      const std::string reply = control_.execute(std::string_view(pending).substr(0, eol));
      pending.erase(0, eol + 1);
      if (::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL) < 0) return;
    }
    if (pending.size() > Pn532Control::kLineBytesMax) {
      const std::string reply = "err too_large: line over 1024 bytes\n";
      [[maybe_unused]] const ssize_t w = ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
      return;  // a client that does not speak lines is dropped
    }
  }
}

}  // namespace citycard::hil
