#include "load_local.h"

#include <pthread.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace citycard::scenarios {

namespace {

constexpr std::int64_t kUnixAtEpoch2000 = 946'684'800;
constexpr std::int64_t kCityUtcOffsetS = 8 * 3600;  // cards keep China Standard Time

// Windows from the workers to the merging thread. Bounded (a window holds a dense histogram
// per op, ~184 KiB each): a worker that finds it full waits, which shows as its lateness. The
// merging thread takes everything at each wake-up, so with windows of a second it never is.
class WindowQueue {
 public:
  static constexpr std::size_t kCapacity = 64;
  struct Item {
    std::size_t worker;
    std::optional<WindowStats> window;  // empty: the worker has finished
  };

  void push(Item item) {
    std::unique_lock lock(mu_);
    room_.wait(lock, [&] { return items_.size() < kCapacity; });
    items_.push_back(std::move(item));
    ready_.notify_one();
  }
  std::deque<Item> take_all() {
    std::unique_lock lock(mu_);
    ready_.wait(lock, [&] { return !items_.empty(); });
    std::deque<Item> out;
    out.swap(items_);
    room_.notify_all();
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable ready_, room_;
  std::deque<Item> items_;
};

}  // namespace

Result<std::vector<citycard::load::City>> split_city(const citycard::load::City& city,
                                                     std::size_t parts) {
  using R = Result<std::vector<citycard::load::City>>;
  if (parts == 0) return R(Errc::kInvalidArgument, "cannot split a city into no parts");
  if (static_cast<std::size_t>(city.cards_size()) < parts ||
      static_cast<std::size_t>(city.terminals_size()) < parts) {
    return R(Errc::kInvalidArgument, "the city has " + std::to_string(city.cards_size()) +
                                         " cards and " + std::to_string(city.terminals_size()) +
                                         " buses: too few for " + std::to_string(parts) +
                                         " workers, each of which needs a card and a bus");
  }
  std::vector<citycard::load::City> out(parts);
  for (int i = 0; i < city.cards_size(); ++i) {
    *out[static_cast<std::size_t>(i) % parts].add_cards() = city.cards(i);
  }
  for (int i = 0; i < city.terminals_size(); ++i) {
    *out[static_cast<std::size_t>(i) % parts].add_terminals() = city.terminals(i);
  }
  for (auto& c : out) c.set_provenance(city.provenance());
  return out;
}

std::int64_t city_calendar_origin(const sim::Clock& clock) {
  return sim::unix_time_s() - kUnixAtEpoch2000 + kCityUtcOffsetS - clock.now_us() / 1'000'000;
}

LocalLoad::LocalLoad(const LoadKnobs& knobs, std::vector<std::string> op_names,
                     const citycard::load::City& share, std::string endpoint, std::string name,
                     std::size_t threads, const sim::Clock& clock)
    : knobs_(knobs),
      op_names_(std::move(op_names)),
      share_(share),
      endpoint_(std::move(endpoint)),
      name_(std::move(name)),
      threads_(threads),
      clock_(clock),
      ctx_(1) {}

LocalLoad::~LocalLoad() = default;

Status LocalLoad::prepare() {
  auto parts = split_city(share_, threads_);
  if (!parts) return parts.status();
  const std::int64_t origin = city_calendar_origin(clock_);
  workers_.clear();
  for (std::size_t i = 0; i < threads_; ++i) {
    workers_.push_back(std::make_unique<Worker>(knobs_, op_names_, std::move((*parts)[i]),
                                                endpoint_, ctx_, clock_,
                                                name_ + "/worker-" + std::to_string(i), origin));
    if (Status s = workers_.back()->prepare(); !s) return s;
  }
  return Status::ok();
}

LoadTotals LocalLoad::run(const sim::RateCurve& curve, std::int64_t start_us, std::uint64_t step,
                          const std::function<void(const WindowStats&)>& on_window,
                          std::atomic<bool>& stop) {
  CITYCARD_CHECK(!workers_.empty(), "prepare() before run()");
  const sim::RateCurve part = curve.scaled(1.0 / static_cast<double>(workers_.size()));
  WindowQueue queue;
  std::vector<LoadTotals> results(workers_.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    threads.emplace_back([&, i] {
      const std::string name = "cc-load-" + std::to_string(i);  // at most 15 characters
      pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
      results[i] = workers_[i]->run(
          part, start_us, step,
          [&queue, i](WindowStats w) {
            queue.push({i, std::move(w)});
          },
          stop);
      queue.push({i, std::nullopt});
    });
  }
  WindowMerger merger(workers_.size(), op_names_.size());
  while (!merger.all_finished()) {
    for (auto& item : queue.take_all()) {
      if (item.window) {
        const Status added = merger.add(item.worker, std::move(*item.window));
        CITYCARD_CHECK(added.is_ok(), "a worker's windows come in order, one per index");
      } else {
        merger.finish(item.worker);
      }
    }
    for (const auto& w : merger.take_complete()) on_window(w);
  }
  for (auto& t : threads) t.join();
  LoadTotals totals;
  totals.ops = empty_ops(op_names_.size());
  for (const auto& r : results) totals.merge(r);
  return totals;
}

}  // namespace citycard::scenarios
