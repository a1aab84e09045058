// The control channel of a software PN532: a line protocol to put cards in its field, take
// them out, tear them at an exact exchange, inject latency, and drive the simulated terminal
// in target mode. The same lines work in-process (Pn532Control::execute), over a unix socket
// (ControlServer) and on stdin (tools::serve_soft_pn532).
//
// Lines (one command per line, at most kLineBytesMax bytes; numbers decimal, bytes hex):
//   insert cpu <serial> <balance_fen> [uid]   a CPU purse card issued with the control's keys
//                                             -> ok <card id> uid <hex>
//   insert m1 [uid]                           a blank MIFARE Classic 1K -> ok <card id> uid <hex>
//   insert m1purse <balance_fen> [uid]        an M1 purse card (devices::M1Card) personalised
//                                             with the control's keys -> ok <card id> uid <hex>
//   remove <card id>|all                      -> ok
//   cards                                     one "card ..." line per card, then ok
//   tear <card id> <nth> before|after         exchange nth from now takes the card out -> ok
//   latency <reply_ms> [exchange_ms]          -> ok
//   counters                                  -> ok commands=<n> exchanges=<n> ...
//   terminal activate [timeout_ms]            -> ok uid <hex> atqa <hex> sak <hex> hist <hex>
//   terminal apdu <hex> [timeout_ms]          -> ok <R-APDU hex>
//   terminal release                          -> ok
//   help                                      the list, then ok
//   quit                                      -> ok; quit_requested() turns true
// Every reply ends with a line "ok ..." or "err <code>: <message>".
//
// Threads: execute() may be called from any thread, one call at a time (a mutex serialises
// them); `terminal` lines block up to their timeout. The control owns the cards it inserted.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "citycard/hil/soft_pn532.h"
#include "citycard/protocol/mifare.h"
#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/status.h"

namespace citycard::hil {

// Keys for cards the control issues: a fixed demonstration set, never a real issuer's. The
// PSAM of a terminal under test must hold the same purchase master key.
protocol::IssuerKeys demo_issuer_keys();
// A JT/T 978 CPU purse card image issued with `keys`, serial number `serial`.
protocol::CardImage demo_card_image(std::uint64_t serial, std::uint32_t balance_fen,
                                    const protocol::IssuerKeys& keys = demo_issuer_keys());
// An M1 purse card image (sector keys derived from keys.m1 by the UID).
protocol::m1::M1Image demo_m1_image(const protocol::m1::Uid4& uid, std::uint32_t balance_fen,
                                    const protocol::IssuerKeys& keys = demo_issuer_keys());
// A UID for a simulated card, derived from a number (never starting 08 or 88, which mean a
// random UID and a cascade tag).
Bytes demo_uid(std::uint64_t n);

class Pn532Control {
 public:
  static constexpr std::size_t kLineBytesMax = 1024;

  explicit Pn532Control(SoftPn532& pn532, protocol::IssuerKeys keys = demo_issuer_keys())
      : pn532_(pn532), keys_(keys) {}

  // Runs one line; the reply (one or more lines, each ending in '\n').
  std::string execute(std::string_view line);
  bool quit_requested() const { return quit_.load(); }

 private:
  std::string insert(const std::vector<std::string>& args);
  std::string remove(const std::vector<std::string>& args);
  std::string list_cards();
  std::string tear(const std::vector<std::string>& args);
  std::string latency(const std::vector<std::string>& args);
  std::string counters();
  std::string terminal(const std::vector<std::string>& args);

  SoftPn532& pn532_;
  protocol::IssuerKeys keys_;
  std::mutex mu_;
  std::atomic<bool> quit_{false};
  std::uint64_t next_seed_ = 1;
};

// Serves a Pn532Control on a unix socket, one client at a time (others queue), until stop().
class ControlServer {
 public:
  static Result<std::unique_ptr<ControlServer>> start(Pn532Control& control,
                                                      std::string socket_path);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;
  void stop();  // idempotent; removes the socket file
  const std::string& socket_path() const { return path_; }

 private:
  ControlServer(Pn532Control& control, std::string path, int listen_fd, int wake_r, int wake_w);
  void run();
  void serve_client(int fd);

  Pn532Control& control_;
  std::string path_;
  int listen_fd_;
  int wake_r_;
  int wake_w_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace citycard::hil
