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
    // One state per request, shared by the delivery and the timeout: whichever fires first
    // answers the client, so the callback runs exactly once.
    auto state = std::make_shared<State>(State{std::move(on_reply), false});
    const bool lost_there = net_.rng_.bernoulli(net_.options_.loss_probability);
    const std::int64_t there = net_.one_way_delay_us();
    net_.loop_.schedule_after(net_.options_.timeout_us, [state] {
      if (state->done) return;
      state->done = true;
      state->on_reply(Result<Bytes>(Errc::kTimeout, "no reply within the timeout"));
    });
    if (lost_there) {
      ++net_.lost_;
      return;
    }
    net_.loop_.schedule_after(there, [this, state, frame = std::move(frame)] {
      Bytes reply = server_.handle(frame);
      if (net_.rng_.bernoulli(net_.options_.loss_probability)) {
        ++net_.lost_;
        return;  // the server acted, the answer is lost: the client will time out
      }
      net_.loop_.schedule_after(net_.one_way_delay_us(),
                                [state, reply = std::move(reply)]() mutable {
                                  if (state->done) return;
                                  state->done = true;
                                  state->on_reply(std::move(reply));
                                });
    });
  }

 private:
  struct State {
    ReplyFn on_reply;
    bool done;
  };
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
  return std::find(down_.begin(), down_.end(), name) == down_.end();
}

std::int64_t SimNetwork::one_way_delay_us() {
  const std::int64_t j = options_.latency_us_jitter;
  const std::int64_t d = options_.latency_us_mean + (j > 0 ? rng_.uniform_range(-j, j) : 0);
  return std::max<std::int64_t>(d, 0);
}

}  // namespace citycard::sim
