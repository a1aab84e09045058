// The harness side of a certification: an embedded clearing centre (backend::Backend on a
// SQLite file or ":memory:"), a registered terminal whose PSAM sits in the bridge's PSAM slot,
// the bridge host, and the harness's calendar. Cards are issued by the backend and presented
// in the card slot. `citycard certify` and the bridge tests build on it.
//
// Threads: the bridge serves on its own thread; every access to the backend or to a card goes
// through host().with_lock() (the helpers here do).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "citycard/backend/backend.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/psam.h"
#include "citycard/hil/bridge.h"

namespace citycard::hil {

// The harness's calendar: it moves only when told (a case's "ten minutes later").
class HarnessClock final : public sim::Clock {
 public:
  std::int64_t now_us() const override { return us_.load(); }
  void advance_us(std::int64_t us) { us_.fetch_add(us); }

 private:
  std::atomic<std::int64_t> us_{0};
};

struct ConformanceOptions {
  std::string endpoint = "tcp://127.0.0.1:0";
  std::string db_path = ":memory:";
  std::uint64_t key_seed = 7;
  std::string operator_id = "bus-co-1";
};

struct HarnessCard {
  std::shared_ptr<devices::CpuCard> model;
  Bytes uid;
  protocol::Serial8 serial{};
};

class ConformanceBench {
 public:
  static Result<std::unique_ptr<ConformanceBench>> open(const ConformanceOptions& options);
  ~ConformanceBench();

  BridgeHost& host() { return *host_; }
  backend::Backend& backend() { return *backend_; }
  const protocol::TerminalId& terminal_id() const { return terminal_id_; }
  const protocol::PsamImage& psam_image() const { return psam_image_; }

  Result<HarnessCard> issue_card(const backend::CardParams& params);
  // The calendar (seconds since 2000-01-01, city time), pushed to the terminal at each poll.
  std::int64_t now_epoch2000_s() const;
  void advance_s(std::int64_t seconds);
  // A purchase made on another terminal of the city (another PSAM), in-process, at the current
  // time: the card then carries a record from elsewhere (a transfer's first leg).
  Status ride_elsewhere(HarnessCard& card, std::uint32_t amount_fen);
  std::uint32_t balance_fen(const HarnessCard& card);
  bool blocked(const HarnessCard& card);
  // What the backend believes the card holds.
  Result<std::int64_t> backend_balance_fen(const HarnessCard& card);
  Status check_conservation();

 private:
  ConformanceBench() = default;
  HarnessClock clock_;
  std::unique_ptr<backend::Backend> backend_;
  std::unique_ptr<BridgeHost> host_;
  protocol::PsamImage psam_image_;
  protocol::PsamImage other_psam_image_;
  protocol::TerminalId terminal_id_{};
  std::uint64_t cards_ = 0;
};

}  // namespace citycard::hil
