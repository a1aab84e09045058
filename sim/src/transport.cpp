#include "citycard/sim/transport.h"

#include <algorithm>
#include <memory>

namespace citycard::sim {

class SimNetwork::SimChannel final : public Channel {
 public:
  SimChannel(SimNetwork& net, RequestHandler& server, std::string name)
      : net_(net), server_(server), name_(std::move(name)) {}

  void request(Bytes frame, ReplyFn on_reply) override {
    if (!net_.link_up(name_)) {
      on_reply(Result<Bytes>(Errc::kUnavailable, "link down for " + name_));
      return;
    }
    ++net_.sent_;
    // One state per request, shared by the deliveries and the timeout: whichever answers
    // first wins, so the callback runs exactly once.
    auto state = std::make_shared<State>(State{std::move(on_reply), false});
    net_.loop_.schedule_after(net_.options_.timeout_us, [state] {
      if (state->done) return;
      state->done = true;
      state->on_reply(Result<Bytes>(Errc::kTimeout, "no reply within the timeout"));
    });
    auto shared_frame = std::make_shared<const Bytes>(std::move(frame));
    deliver(state, shared_frame);
    if (net_.rng_.bernoulli(net_.options_.duplicate_probability)) {
      ++net_.duplicated_;
      deliver(state, shared_frame);
    }
  }

 private:
  struct State {
    ReplyFn on_reply;
    bool done;
  };

  // One copy of the request travels to the server, and its reply back.
  void deliver(const std::shared_ptr<State>& state, const std::shared_ptr<const Bytes>& frame) {
    if (net_.rng_.bernoulli(net_.options_.loss_probability)) {
      ++net_.lost_;
      return;
    }
    net_.loop_.schedule_after(net_.delay_us(), [this, state, frame] {
      if (!net_.link_up(name_)) {  // the outage began while the message was in the air
        ++net_.lost_;
        return;
      }
      server_.handle_deferred(*frame, [this, state](Bytes reply) { send_back(state, std::move(reply)); });
    });
  }

  // The server's answer (now or, from a deferring server, later) travels back.
  void send_back(const std::shared_ptr<State>& state, Bytes reply) {
    if (reply.empty()) {
      ++net_.unanswered_;
      return;
    }
    if (net_.rng_.bernoulli(net_.options_.loss_probability)) {
      ++net_.lost_;
      return;  // the server acted, the answer is lost: the client will time out
    }
    net_.loop_.schedule_after(net_.delay_us(), [this, state, reply = std::move(reply)]() mutable {
      if (state->done) return;
      if (!net_.link_up(name_)) {
        ++net_.lost_;
        return;
      }
      state->done = true;
      state->on_reply(std::move(reply));
    });
  }

  SimNetwork& net_;
  RequestHandler& server_;
  std::string name_;
};

SimNetwork::SimNetwork(EventLoop& loop, Rng rng, NetworkOptions options)
    : loop_(loop), rng_(rng), options_(options) {}

std::unique_ptr<Channel> SimNetwork::connect(RequestHandler& server, std::string client_name) {
  return std::make_unique<SimChannel>(*this, server, std::move(client_name));
}

void SimNetwork::set_link_up(const std::string& name, bool up) {
  auto it = std::find(down_.begin(), down_.end(), name);
  if (up && it != down_.end()) down_.erase(it);
  if (!up && it == down_.end()) down_.push_back(name);
}

bool SimNetwork::link_up(const std::string& name) const {
  if (std::find(down_.begin(), down_.end(), name) != down_.end()) return false;
  const std::int64_t now = loop_.now_us();
  for (const auto& w : outages_) {
    if (now >= w.from_us && now < w.to_us && name.rfind(w.client_prefix, 0) == 0) return false;
  }
  return true;
}

std::int64_t SimNetwork::delay_us() {
  const std::int64_t j = options_.latency_us_jitter;
  std::int64_t d = options_.latency_us_mean + (j > 0 ? rng_.uniform_range(-j, j) : 0);
  if (rng_.bernoulli(options_.reorder_probability)) {
    ++reordered_;
    d += options_.reorder_delay_us;
  }
  return std::max<std::int64_t>(d, 0);
}

}  // namespace citycard::sim
