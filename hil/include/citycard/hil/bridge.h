// The terminal bridge (hil/bridge.proto; protocol in hil/README.md, "The terminal bridge").
//
// Harness side, BridgeHost: serves a ZeroMQ endpoint (sim::ZmqServer, ROUTER; a terminal
// connects with REQ, or DEALER + empty frame) on its own thread and gives the terminal
//   - a card slot: the harness presents a simulated card (a devices::CpuCard) and removes it;
//     a removal, or a planned tear, during an APDU answers BRIDGE_CARD_REMOVED;
//   - a PSAM slot: a devices::Psam the terminal talks to APDU by APDU;
//   - the backend: wire.proto frames passed to a sim::RequestHandler (a backend::Service),
//     refused with BRIDGE_LINK_DOWN while the harness holds the link down;
//   - the calendar, the fare parameters and the blacklist, in every Poll reply.
// Everything the terminal did is recorded (APDUs per card session with their modelled time,
// uploads, outcomes) for a conformance suite to judge.
//
// Terminal side, BridgeClient and the links over it: BridgeCardLink and BridgePsamLink are
// devices::CardLink; BridgeChannel is a sim::Channel to the backend. One thread.
//
// Threads: BridgeHost's methods may be called from any thread; the models it holds (card,
// PSAM, backend handler) are only touched under its lock, from its serving thread or inside
// with_lock().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bridge.pb.h"
#include "citycard/devices/card_link.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/psam.h"
#include "citycard/protocol/status.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/transport.h"
#include "citycard/sim/zmq_transport.h"

namespace citycard::hil {

inline constexpr std::uint32_t kBridgeVersion = 1;
inline constexpr std::size_t kBridgeFrameBytesMax = 2u << 20;

// One APDU the terminal sent to the card, as the harness saw it.
struct BridgeApdu {
  Bytes capdu;
  Bytes rapdu;               // empty when torn
  std::int64_t card_us = 0;  // the card's modelled time for it (timing model, not wall)
  bool torn = false;
};

struct BridgeSession {
  std::uint64_t id = 0;
  protocol::Serial8 serial{};
  std::vector<BridgeApdu> apdus;
  std::optional<citycard::bridge::Outcome> outcome;
  std::int64_t card_us() const;
};

struct BridgeHostOptions {
  citycard::bridge::Welcome welcome;  // what a Hello is answered with
  std::uint32_t poll_wait_ms_max = 1000;
};

struct BridgeHostCounters {
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;     // answered with BridgeError
  std::uint64_t malformed = 0;  // of which BRIDGE_MALFORMED
  std::uint64_t polls = 0;
  std::uint64_t backend_frames = 0;
  std::uint64_t link_refusals = 0;
};

class BridgeHost final : public sim::RequestHandler {
 public:
  // Binds `endpoint` ("tcp://127.0.0.1:0" picks a port; see endpoint()) and serves.
  static Result<std::unique_ptr<BridgeHost>> start(const std::string& endpoint,
                                                   BridgeHostOptions options = {});
  ~BridgeHost() override;
  BridgeHost(const BridgeHost&) = delete;
  BridgeHost& operator=(const BridgeHost&) = delete;

  std::string endpoint() const;

  // --- the slots and the world ---
  // The card is shared: the harness keeps it across presentations (a re-tap is the same card).
  // Returns the new card session's id.
  // With `tear`: the card leaves at that APDU of the session (see tear_at), set before the
  // terminal can see the card.
  std::uint64_t present(std::shared_ptr<devices::CpuCard> card, Bytes uid,
                        std::optional<std::pair<std::size_t, bool>> tear = std::nullopt);
  void remove();
  // The card leaves at the n-th APDU (0-based) of the current session: before the card sees
  // it, or after it acted and before its answer reached the terminal.
  void tear_at(std::size_t nth, bool after_card_acted);
  void set_psam(std::shared_ptr<devices::Psam> psam);
  void set_backend(sim::RequestHandler* backend);  // not owned; null: none
  void set_link(bool up);
  // The next backend frame reaches the backend but its reply is lost (BRIDGE_LINK_DOWN): the
  // terminal must send it again and take the backend's duplicate answer as done.
  void lose_next_backend_reply();
  void set_now(std::int64_t epoch2000_s);
  void set_params(citycard::bridge::Params params);  // its version is bumped
  void set_blacklist(const std::vector<protocol::Serial8>& serials);
  // Runs fn under the lock (to read the backend or the card while the terminal is quiet).
  void with_lock(const std::function<void()>& fn);

  // --- observation (wait_* wake on every request; the timeout is a failsafe) ---
  // The outcome the terminal reported for `session`.
  std::optional<citycard::bridge::Outcome> wait_outcome(std::uint64_t session, int timeout_ms);
  // Waits for a Poll, received after this call, that says `queued_records == 0` (and, when
  // `session` is given, that the terminal is done with that session).
  bool wait_idle(int timeout_ms, std::uint64_t done_session = 0);
  // Waits for a Poll received after this call with the given queue depth.
  bool wait_queued(std::uint32_t records, int timeout_ms);
  std::optional<citycard::bridge::Hello> hello() const;
  BridgeSession session(std::uint64_t id) const;
  // Upload batches as the terminal sent them, in order (duplicates included).
  std::vector<citycard::wire::UploadBatch> uploads() const;
  BridgeHostCounters counters() const;

  Bytes handle(ByteView frame) override;  // the serving thread

 private:
  BridgeHost() = default;
  citycard::bridge::BridgeReply dispatch(const citycard::bridge::BridgeRequest& request,
                                         std::unique_lock<std::mutex>& lock);
  citycard::bridge::BridgeReply poll(const citycard::bridge::Poll& p,
                                     std::unique_lock<std::mutex>& lock);
  citycard::bridge::BridgeReply card_apdu(const citycard::bridge::Apdu& a);
  BridgeSession* current();

  BridgeHostOptions options_;
  zmq::context_t ctx_;
  std::unique_ptr<sim::ZmqServer> server_;
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t events_ = 0;  // bumped on every request and harness change
  std::optional<citycard::bridge::Hello> hello_;
  std::shared_ptr<devices::CpuCard> card_;
  std::unique_ptr<devices::DirectLink> card_link_;
  Bytes uid_;
  std::uint64_t session_ = 0;  // 0: no card
  std::vector<BridgeSession> sessions_;
  std::optional<std::pair<std::size_t, bool>> tear_;
  std::shared_ptr<devices::Psam> psam_;
  sim::RequestHandler* backend_ = nullptr;
  bool link_up_ = true;
  bool lose_reply_ = false;
  std::int64_t now_s_ = 0;
  citycard::bridge::Params params_;
  citycard::bridge::Blacklist blacklist_;
  std::vector<citycard::wire::UploadBatch> uploads_;
  struct PollSeen {
    std::uint64_t seq = 0;
    std::uint32_t queued = 0;
    std::uint64_t done_session = 0;
  };
  std::uint64_t poll_seq_ = 0;
  PollSeen last_poll_;
  BridgeHostCounters counters_;
};

// ---- terminal side ----
class BridgeClient {
 public:
  BridgeClient(zmq::context_t& ctx, const std::string& endpoint, int timeout_ms = 5000);
  // Sends the request (request_id filled in) and returns the reply; a BridgeError reply is
  // returned as an error Status: BRIDGE_CARD_REMOVED → kTorn, BRIDGE_LINK_DOWN and a timeout →
  // kUnavailable, the rest → kRejected, with the harness's message.
  Result<citycard::bridge::BridgeReply> call(citycard::bridge::BridgeRequest request);
  Result<citycard::bridge::Welcome> hello(const citycard::bridge::Hello& hello);

 private:
  sim::ZmqClient client_;
  int timeout_ms_;
  std::uint64_t next_id_ = 0;
};

// The card in the harness's slot, for one card session.
class BridgeCardLink final : public devices::CardLink {
 public:
  BridgeCardLink(BridgeClient& client, std::uint64_t session)
      : client_(client), session_(session) {}
  Result<protocol::Response> transceive(const protocol::Command& command) override;

 private:
  BridgeClient& client_;
  std::uint64_t session_;
};

class BridgePsamLink final : public devices::CardLink {
 public:
  explicit BridgePsamLink(BridgeClient& client) : client_(client) {}
  Result<protocol::Response> transceive(const protocol::Command& command) override;

 private:
  BridgeClient& client_;
};

// The backend over the bridge; the reply callback runs before request() returns.
class BridgeChannel final : public sim::Channel {
 public:
  explicit BridgeChannel(BridgeClient& client) : client_(client) {}
  void request(Bytes frame, ReplyFn on_reply) override;

 private:
  BridgeClient& client_;
};

}  // namespace citycard::hil
