// One load-generation thread: a disjoint share of the city's cards and buses, one DEALER
// socket carrying every request of them (sim::ZmqAsyncClient), its own pacer stream, its own
// statistics.
//
// What it does for each arrival the pacer plans: a swipe taps a random card of its share on a
// random bus of its share (a real purchase: card and PSAM models, MAC1/MAC2/TAC) and the record
// joins the bus's upload queue; a request op sends one request. A bus uploads a batch when it
// becomes due — when it holds a full batch (due at the planned time of the tap that filled
// it), or at the bus's upload timer's first tick after its oldest record (each bus ticks every
// upload_interval_us from its own random phase, so a fleet's uploads spread over the interval;
// with aligned_uploads, when its oldest record has waited upload_interval_us, which puts a
// fleet started together in phase) — and the batch's latency runs
// from that due time to its acknowledgement, across re-sends, so a batch held back by a slow
// backend (a bus keeps one batch in flight) is charged for the wait. After the schedule ends
// every bus uploads what it holds (due at the schedule's end) and the worker waits for the
// outcomes, for at most drain_us.
//
// Bounds, each counted when hit: requests in flight per worker (in_flight_max), the socket's
// send queue, records per bus (queue_records_max: a full bus refuses taps), arrivals handled
// per turn before replies are read again (so a generator behind schedule still reads replies).
//
// Threads: constructed on any thread; prepare() and run() on one thread at a time (run() of
// successive steps may be on different threads, joined in between). The clock and the ZeroMQ
// context must outlive it.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "citycard/devices/bus_validator.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/psam.h"
#include "citycard/scenarios/load.h"
#include "citycard/sim/clock.h"
#include "citycard/sim/rng.h"
#include "citycard/sim/transport.h"
#include "citycard/sim/zmq_async_client.h"
#include "load.pb.h"
#include "load_ops.h"
#include "load_stats.h"

namespace citycard::scenarios {

// The city's cards and buses as the devices' models take them.
protocol::CardImage card_image(const citycard::load::Card& card);
protocol::PsamImage psam_image(const citycard::load::Terminal& terminal);

// A bus's upload timer ticks at phase_us + k * interval_us (any integer k): its first tick at
// or after `t_us`, so a record tapped at t_us waits at most interval_us. interval_us > 0.
std::int64_t upload_tick_at_or_after(std::int64_t phase_us, std::int64_t interval_us,
                                     std::int64_t t_us);

class Worker {
 public:
  using WindowFn = std::function<void(WindowStats)>;

  // `name` keys the worker's random streams ("agent-0/worker-1"); `calendar_origin_epoch2000_s`
  // is the city calendar second at which `clock` reads zero (records carry real dates).
  Worker(const LoadKnobs& knobs, std::vector<std::string> op_names, citycard::load::City share,
         const std::string& endpoint, zmq::context_t& ctx, const sim::Clock& clock,
         std::string name, std::int64_t calendar_origin_epoch2000_s);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Builds the cards, PSAMs and validators. kInvalidArgument for an empty share or images of
  // the wrong shape.
  Status prepare();

  // One step of the schedule: `curve` is this worker's share of the arrivals, planned from
  // clock time `start_us`. Calls on_window with each window as it ends (the last one partial)
  // and returns the step's totals. Once `stop` is set the schedule ends there: no more
  // arrivals, the buses upload what they hold (for at most drain_us), and the rest is counted
  // as unfinished.
  LoadTotals run(const sim::RateCurve& curve, std::int64_t start_us, std::uint64_t step,
                 const WindowFn& on_window, const std::atomic<bool>& stop);

  std::size_t cards() const { return cards_.size(); }
  std::size_t buses() const { return buses_.size(); }

 private:
  struct Bus;
  class BusChannel;
  static constexpr std::int64_t kNever = INT64_MAX;
  static constexpr int kArrivalsPerTurn = 256;
  static constexpr std::int64_t kSleepUsMax = 50'000;  // to notice `stop`

  std::size_t pick_op();
  void arrival(std::int64_t planned_us);
  void swipe(std::int64_t planned_us);
  void request(std::size_t op, std::int64_t planned_us);
  void on_request_reply(std::size_t op, std::int64_t planned_us, Result<Bytes> reply,
                        std::int64_t now_us);
  void maybe_upload(std::size_t bus, std::int64_t now_us);
  std::optional<std::int64_t> batch_due(const Bus& bus) const;
  void send_upload(std::size_t bus, Bytes frame, sim::Channel::ReplyFn on_reply);
  void on_upload_reply(std::size_t bus, Result<Bytes> reply, std::int64_t now_us,
                       const sim::Channel::ReplyFn& on_reply);
  void upload_failed(std::size_t bus, std::int64_t now_us);
  void arm(std::size_t bus, std::int64_t at_us);
  void run_timers(std::int64_t now_us);
  void note_send(std::size_t op, std::int64_t planned_us, std::int64_t now_us);
  void count_error(const std::string& code) { ++totals_.error_codes[code]; }
  void emit_window(const WindowFn& on_window);
  bool idle() const;
  OpStats& stats(std::size_t op) { return window_[op]; }

  LoadKnobs knobs_;
  std::vector<std::string> op_names_;
  citycard::load::City share_;
  const sim::Clock& clock_;
  std::string name_;
  std::int64_t calendar_origin_epoch2000_s_;
  sim::Rng root_;
  sim::Rng demand_;
  sim::ZmqAsyncClient client_;

  std::vector<devices::CpuCard> cards_;
  std::vector<protocol::TerminalId> terminal_ids_;
  std::vector<std::unique_ptr<Bus>> buses_;
  std::vector<std::unique_ptr<RequestOp>> ops_;      // by op index; null for swipe and upload
  std::vector<std::pair<double, std::size_t>> mix_;  // cumulative weight -> op index
  std::uint64_t next_request_id_ = 0;

  // Per step.
  std::vector<OpStats> window_;
  std::uint32_t window_index_ = 0;
  std::int64_t window_end_us_ = 0;
  LoadTotals totals_;
  std::int64_t schedule_end_us_ = 0;
  std::int64_t last_outcome_us_ = 0;
  bool draining_ = false;
  std::priority_queue<std::pair<std::int64_t, std::size_t>,
                      std::vector<std::pair<std::int64_t, std::size_t>>, std::greater<>>
      timers_;
};

}  // namespace citycard::scenarios
