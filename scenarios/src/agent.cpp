// Distributed load: the coordinator (inside `citycard load --agents N`) and `citycard agent`.
// The protocol is described in load_agent.h.
#include <unistd.h>

#include <atomic>
#include <optional>

#include <zmq.hpp>

#include "citycard/sim/clock.h"
#include "load_agent.h"
#include "load_city.h"
#include "load_local.h"

namespace citycard::scenarios {

std::atomic<bool>& load_stop_flag();  // load.cpp: set by SIGINT/SIGTERM

namespace {

// Assignments carry a share of the city: allow big ones, but not unbounded.
constexpr std::int64_t kAgentMessageBytesMax = static_cast<std::int64_t>(kCityFileBytesMax);
constexpr int kPollMs = 100;
// After the schedule and the agents' drain, how long the coordinator still waits for Done.
constexpr std::int64_t kDoneGraceUs = 30'000'000;

citycard::load::Plan plan_to_proto(const LoadPlan& plan) {
  citycard::load::Plan p;
  const LoadKnobs& k = plan.knobs;
  p.set_scenario(plan.scenario);
  p.set_seed(k.seed);
  for (const auto& s : plan.curve.segments()) {
    auto* seg = p.add_curve();
    seg->set_start_us(s.start_us);
    seg->set_end_us(s.end_us);
    seg->set_per_s(s.per_s);
  }
  p.set_arrivals(sim::arrival_process_name(k.arrivals));
  for (const auto& [op, w] : k.mix) {
    auto* m = p.add_mix();
    m->set_op(op);
    m->set_weight(w);
  }
  p.set_batch_size(static_cast<std::uint32_t>(k.batch_size));
  p.set_upload_interval_us(k.upload_interval_us);
  p.set_timeout_us(k.timeout_us);
  p.set_window_us(k.window_us);
  p.set_late_us(k.late_us);
  p.set_in_flight_max(static_cast<std::uint32_t>(k.in_flight_max));
  p.set_queue_records_max(static_cast<std::uint32_t>(k.queue_records_max));
  p.set_retry_us(k.retry_us);
  p.set_drain_us(k.drain_us);
  p.set_aligned_uploads(k.aligned_uploads);
  return p;
}

Result<LoadPlan> plan_from_proto(const citycard::load::Plan& p, std::int64_t threads) {
  LoadPlan plan;
  plan.scenario = p.scenario();
  LoadKnobs& k = plan.knobs;
  k.seed = p.seed();
  auto arrivals = sim::arrival_process_from_name(p.arrivals());
  if (!arrivals) return Result<LoadPlan>(Errc::kMalformed, "unknown arrivals " + p.arrivals());
  k.arrivals = *arrivals;
  k.mix.clear();
  for (const auto& m : p.mix()) k.mix.emplace_back(m.op(), m.weight());
  k.threads = threads;
  k.batch_size = p.batch_size();
  k.upload_interval_us = p.upload_interval_us();
  k.timeout_us = p.timeout_us();
  k.window_us = p.window_us();
  k.late_us = p.late_us();
  k.in_flight_max = p.in_flight_max();
  k.queue_records_max = p.queue_records_max();
  k.retry_us = p.retry_us();
  k.drain_us = p.drain_us();
  k.aligned_uploads = p.aligned_uploads();
  std::vector<sim::RateSegment> segments;
  for (const auto& s : p.curve()) segments.push_back({s.start_us(), s.end_us(), s.per_s()});
  auto curve = sim::RateCurve::make(std::move(segments));
  if (!curve) return Result<LoadPlan>(curve.status());
  plan.curve = std::move(curve).value();
  k.duration_us = std::max<std::int64_t>(plan.curve.end_us(), 100'000);
  if (Status s = k.validate(); !s) return Result<LoadPlan>(s);
  return plan;
}

template <class Message>
std::string serialized(const Message& m) {
  std::string s;
  m.SerializeToString(&s);
  return s;
}

// Waits up to `timeout_ms` for one frame set on `socket`; the parts, or nothing.
std::optional<std::vector<zmq::message_t>> receive(zmq::socket_t& socket, int timeout_ms) {
  zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
  try {
    zmq::poll(items, 1, std::chrono::milliseconds(timeout_ms));
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return std::nullopt;  // a signal: the caller looks at its flags
    throw;
  }
  if (!(items[0].revents & ZMQ_POLLIN)) return std::nullopt;
  std::vector<zmq::message_t> parts;
  do {
    zmq::message_t m;
    (void)socket.recv(m, zmq::recv_flags::none);
    parts.push_back(std::move(m));
  } while (parts.back().more());
  return parts;
}

// --- coordinator ---

struct AgentSlot {
  std::string identity;
  std::string name;
  std::uint32_t threads = 0;
  bool ready = false;
  bool done = false;
  LoadTotals totals;
};

class Coordinator {
 public:
  Coordinator(const LoadPlan& plan, const LoadRunOptions& o, RunReport& report)
      : plan_(plan), o_(o), report_(report), ctx_(1), socket_(ctx_, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 1000);
    socket_.set(zmq::sockopt::maxmsgsize, kAgentMessageBytesMax);
    // An agent that has gone is an error we see, not a silent drop.
    socket_.set(zmq::sockopt::router_mandatory, 1);
  }

  Result<CoordinatorResult> run(const citycard::load::City& city, const std::string& backend) {
    using R = Result<CoordinatorResult>;
    try {
      socket_.bind(o_.coordinator_listen);
    } catch (const zmq::error_t& e) {
      return R(Errc::kUnavailable, "cannot bind " + o_.coordinator_listen + ": " + e.what());
    }
    const std::string endpoint = socket_.get(zmq::sockopt::last_endpoint);
    report_.say("coordinator listening on " + endpoint + "; waiting for " +
                std::to_string(o_.agents) + " agent(s): citycard agent --coordinator " + endpoint);
    if (o_.on_coordinator_listening) o_.on_coordinator_listening(endpoint);

    if (Status s = gather_hellos(); !s) return abort_all(s);
    auto shares = split_city(city, agents_.size());
    if (!shares) return abort_all(shares.status());
    const citycard::load::Plan plan = plan_to_proto(plan_);
    for (std::size_t i = 0; i < agents_.size(); ++i) {
      citycard::load::ToAgent m;
      auto* a = m.mutable_assignment();
      *a->mutable_plan() = plan;
      *a->mutable_share() = std::move((*shares)[i]);
      a->set_backend(backend);
      a->set_agent_index(static_cast<std::uint32_t>(i));
      a->set_agents(static_cast<std::uint32_t>(agents_.size()));
      if (Status s = send(i, m); !s) return abort_all(s);
    }
    if (Status s = wait_ready(); !s) return abort_all(s);
    citycard::load::ToAgent start;
    start.mutable_start();
    for (std::size_t i = 0; i < agents_.size(); ++i) {
      if (Status s = send(i, start); !s) return abort_all(s);
    }
    report_.say("started " + std::to_string(agents_.size()) + " agent(s)");
    if (Status s = collect(); !s) return abort_all(s);

    CoordinatorResult out;
    out.totals.ops = empty_ops(plan_.op_names().size());
    const double duration_s = static_cast<double>(plan_.knobs.duration_us) / 1e6;
    for (const auto& a : agents_) {
      out.totals.merge(a.totals);
      nlohmann::json f = totals_json(a.totals, plan_.op_names(), duration_s);
      out.agents.push_back({{"name", a.name},
                            {"threads", a.threads},
                            {"offered_per_s", f["offered_per_s"]},
                            {"achieved_per_s", f["achieved_per_s"]},
                            {"records_per_s", f["records_per_s"]},
                            {"offered", f["offered"]},
                            {"achieved", f["achieved"]},
                            {"p99_ms", f["p99_ms"]},
                            {"errors", f["errors"]},
                            {"late_sends", f["late_sends"]},
                            {"worker_busy_fraction", f["worker_busy_fraction"]}});
    }
    return out;
  }

 private:
  Status send(std::size_t agent, const citycard::load::ToAgent& m) {
    const std::string body = serialized(m);
    try {
      socket_.send(zmq::buffer(agents_[agent].identity), zmq::send_flags::sndmore);
      socket_.send(zmq::buffer(body), zmq::send_flags::none);
    } catch (const zmq::error_t& e) {
      return Status(Errc::kUnavailable,
                    "agent " + agents_[agent].name + " unreachable: " + e.what());
    }
    return Status::ok();
  }

  Result<CoordinatorResult> abort_all(const Status& why) {
    citycard::load::ToAgent m;
    m.mutable_abort()->set_why(why.message());
    for (std::size_t i = 0; i < agents_.size(); ++i) (void)send(i, m);
    return Result<CoordinatorResult>(why);
  }

  // One message from an agent, or nothing within kPollMs. Unknown senders are answered by
  // index lookups returning npos.
  struct Incoming {
    std::string identity;
    citycard::load::ToCoordinator message;
  };
  std::optional<Incoming> next() {
    auto parts = receive(socket_, kPollMs);
    if (!parts) return std::nullopt;
    if (parts->size() != 2) return std::nullopt;  // not [identity][message]: not an agent
    Incoming in;
    in.identity = (*parts)[0].to_string();
    if (!in.message.ParseFromArray((*parts)[1].data(), static_cast<int>((*parts)[1].size()))) {
      ++malformed_;
      return std::nullopt;
    }
    return in;
  }

  std::size_t index_of(const std::string& identity) const {
    for (std::size_t i = 0; i < agents_.size(); ++i) {
      if (agents_[i].identity == identity) return i;
    }
    return SIZE_MAX;
  }

  Status gather_hellos() {
    const std::int64_t deadline = clock_.now_us() + o_.agents_wait_us;
    while (agents_.size() < static_cast<std::size_t>(o_.agents)) {
      if (clock_.now_us() > deadline) {
        return Status(Errc::kTimeout, "only " + std::to_string(agents_.size()) + " of " +
                                          std::to_string(o_.agents) + " agents said hello in time");
      }
      if (load_stop_flag().load()) return Status(Errc::kUnavailable, "stopped");
      auto in = next();
      if (!in || !in->message.has_hello() || index_of(in->identity) != SIZE_MAX) continue;
      AgentSlot a;
      a.identity = in->identity;
      a.name = in->message.hello().name();
      a.threads = in->message.hello().threads();
      agents_.push_back(std::move(a));
      report_.say("agent " + agents_.back().name + " (" + std::to_string(agents_.back().threads) +
                  " threads) joined");
    }
    return Status::ok();
  }

  Status wait_ready() {
    const std::int64_t deadline = clock_.now_us() + o_.agents_wait_us;
    std::size_t ready = 0;
    while (ready < agents_.size()) {
      if (clock_.now_us() > deadline) return Status(Errc::kTimeout, "agents not ready in time");
      if (load_stop_flag().load()) return Status(Errc::kUnavailable, "stopped");
      auto in = next();
      if (!in) continue;
      const std::size_t i = index_of(in->identity);
      if (i == SIZE_MAX) continue;
      if (in->message.has_failed()) {
        return Status(Errc::kRejected,
                      "agent " + agents_[i].name + " failed: " + in->message.failed().why());
      }
      if (in->message.has_ready() && !agents_[i].ready) {
        agents_[i].ready = true;
        ++ready;
      }
    }
    return Status::ok();
  }

  Status collect() {
    const auto op_names = plan_.op_names();
    WindowMerger merger(agents_.size(), op_names.size());
    const std::int64_t deadline = clock_.now_us() + plan_.curve.end_us() + plan_.knobs.drain_us +
                                  plan_.knobs.timeout_us + kDoneGraceUs;
    bool aborted = false;
    while (!merger.all_finished()) {
      if (clock_.now_us() > deadline) {
        return Status(Errc::kTimeout, "agents did not report in time");
      }
      if (load_stop_flag().load() && !aborted) {
        // Ask everyone to stop; they still send what they have.
        aborted = true;
        citycard::load::ToAgent m;
        m.mutable_abort()->set_why("coordinator stopped");
        for (std::size_t i = 0; i < agents_.size(); ++i) (void)send(i, m);
      }
      auto in = next();
      if (!in) continue;
      const std::size_t i = index_of(in->identity);
      if (i == SIZE_MAX || agents_[i].done) continue;
      const auto& m = in->message;
      if (m.has_failed()) {
        return Status(Errc::kRejected, "agent " + agents_[i].name + " failed: " + m.failed().why());
      }
      if (m.has_window()) {
        auto w = from_proto(m.window(), op_names);
        if (!w)
          return Status(w.status().code(),
                        "agent " + agents_[i].name + ": " + w.status().message());
        if (Status s = merger.add(i, std::move(w).value()); !s) {
          return Status(s.code(), "agent " + agents_[i].name + ": " + s.message());
        }
      } else if (m.has_done()) {
        auto t = from_proto(m.done().totals(), op_names);
        if (!t)
          return Status(t.status().code(),
                        "agent " + agents_[i].name + ": " + t.status().message());
        agents_[i].totals = std::move(t).value();
        agents_[i].done = true;
        merger.finish(i);
      }
      for (const auto& w : merger.take_complete()) report_.window(w);
    }
    for (const auto& w : merger.take_complete()) report_.window(w);
    return Status::ok();
  }

  const LoadPlan& plan_;
  const LoadRunOptions& o_;
  RunReport& report_;
  sim::WallClock clock_;
  zmq::context_t ctx_;
  zmq::socket_t socket_;
  std::vector<AgentSlot> agents_;
  std::uint64_t malformed_ = 0;
};

// --- agent ---

class Agent {
 public:
  explicit Agent(const AgentOptions& o) : o_(o), ctx_(1), socket_(ctx_, zmq::socket_type::dealer) {
    // Long enough for Done to leave before the socket closes.
    socket_.set(zmq::sockopt::linger, 5000);
    socket_.set(zmq::sockopt::maxmsgsize, kAgentMessageBytesMax);
    name_ = o_.name.empty() ? "agent-" + std::to_string(::getpid()) : o_.name;
  }

  int run() {
    socket_.connect(o_.coordinator);
    citycard::load::ToCoordinator hello;
    hello.mutable_hello()->set_name(name_);
    hello.mutable_hello()->set_threads(static_cast<std::uint32_t>(o_.threads));
    send(hello);
    say("agent " + name_ + ": waiting for the coordinator at " + o_.coordinator);

    auto assigned = wait_for([](const citycard::load::ToAgent& m) { return m.has_assignment(); });
    if (!assigned) return give_up(assigned.status());
    const auto& a = assigned->assignment();
    auto plan = plan_from_proto(a.plan(), o_.threads);
    if (!plan) return failed(plan.status());
    if (a.agents() == 0 || a.agent_index() >= a.agents()) {
      return failed(Status(Errc::kMalformed, "assignment with a bad agent index"));
    }
    LocalLoad local(plan->knobs, plan->op_names(), a.share(), a.backend(),
                    "agent-" + std::to_string(a.agent_index()),
                    static_cast<std::size_t>(o_.threads), clock_);
    if (Status s = local.prepare(); !s) return failed(s);
    say("agent " + name_ + ": " + std::to_string(a.share().cards_size()) + " cards, " +
        std::to_string(a.share().terminals_size()) + " buses, backend " + a.backend() + "; ready");
    citycard::load::ToCoordinator ready;
    ready.mutable_ready();
    send(ready);

    auto started = wait_for([](const citycard::load::ToAgent& m) { return m.has_start(); });
    if (!started) return give_up(started.status());

    const std::vector<std::string> op_names = plan->op_names();
    const sim::RateCurve share = plan->curve.scaled(1.0 / static_cast<double>(a.agents()));
    std::uint32_t windows = 0;
    LoadTotals totals = local.run(
        share, clock_.now_us(), 0,
        [&](const WindowStats& w) {
          citycard::load::ToCoordinator m;
          *m.mutable_window() = to_proto(w, op_names);
          send(m);
          ++windows;
          check_abort();
        },
        stop_);
    citycard::load::ToCoordinator done;
    *done.mutable_done()->mutable_totals() = to_proto(totals, op_names);
    done.mutable_done()->set_name(name_);
    send(done);
    say("agent " + name_ + ": done, " + std::to_string(windows) + " windows reported");
    return kLoadExitOk;
  }

 private:
  void say(const std::string& line) {
    if (!o_.quiet) std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }

  void send(const citycard::load::ToCoordinator& m) {
    const std::string body = serialized(m);
    socket_.send(zmq::buffer(body), zmq::send_flags::none);
  }

  int failed(const Status& why) {
    citycard::load::ToCoordinator m;
    m.mutable_failed()->set_why(name_ + ": " + why.to_string());
    send(m);
    return give_up(why);
  }

  int give_up(const Status& why) {
    std::fprintf(stderr, "citycard agent %s: %s\n", name_.c_str(), why.to_string().c_str());
    return kLoadExitUsage;
  }

  // During the run: an Abort from the coordinator, or a signal here, stops the workers.
  void check_abort() {
    if (load_stop_flag().load()) stop_.store(true);
    while (auto parts = receive(socket_, 0)) {
      citycard::load::ToAgent m;
      if (parts->size() == 1 &&
          m.ParseFromArray((*parts)[0].data(), static_cast<int>((*parts)[0].size())) &&
          m.has_abort()) {
        say("agent " + name_ + ": coordinator aborted: " + m.abort().why());
        stop_.store(true);
      }
    }
  }

  template <class Pred>
  Result<citycard::load::ToAgent> wait_for(Pred want) {
    const std::int64_t deadline = clock_.now_us() + o_.wait_us;
    while (clock_.now_us() < deadline) {
      if (load_stop_flag().load())
        return Result<citycard::load::ToAgent>(Errc::kUnavailable, "stopped");
      auto parts = receive(socket_, kPollMs);
      if (!parts || parts->size() != 1) continue;
      citycard::load::ToAgent m;
      if (!m.ParseFromArray((*parts)[0].data(), static_cast<int>((*parts)[0].size()))) continue;
      if (m.has_abort()) {
        return Result<citycard::load::ToAgent>(Errc::kRejected,
                                               "coordinator aborted: " + m.abort().why());
      }
      if (want(m)) return m;
    }
    return Result<citycard::load::ToAgent>(Errc::kTimeout, "nothing from the coordinator in time");
  }

  AgentOptions o_;
  std::string name_;
  sim::WallClock clock_;
  zmq::context_t ctx_;
  zmq::socket_t socket_;
  std::atomic<bool> stop_{false};
};

}  // namespace

Result<CoordinatorResult> coordinate(const LoadPlan& plan, const LoadRunOptions& options,
                                     const citycard::load::City& city,
                                     const std::string& backend_endpoint, RunReport& report) {
  Coordinator c(plan, options, report);
  return c.run(city, backend_endpoint);
}

int run_agent(const AgentOptions& options) {
  if (options.threads < 1 || options.threads > 64) {
    std::fprintf(stderr, "citycard agent: --threads must be 1..64\n");
    return kLoadExitUsage;
  }
  Agent a(options);
  return a.run();
}

}  // namespace citycard::scenarios
