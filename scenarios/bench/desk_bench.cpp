// What the issuing desk's wire costs: one card issued and refunded through IssuingDesk (wire
// framing, session check, the at-most-once table, the CpuCard personalised, GET BALANCE read at
// the refund) against the baseline of the same two Cards calls made in process. Both commit
// to a real SQLite file (without fsync, as the tests do); compare the two lines of one run.
//
//   cmake -S . -B build -DCITYCARD_BUILD_BENCHMARKS=ON && cmake --build build --target
//   desk_bench && build/bench/desk_bench
#include <benchmark/benchmark.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "citycard/backend/backend.h"
#include "citycard/devices/card_link.h"
#include "citycard/devices/issuing_desk.h"
#include "citycard/sim/event_loop.h"
#include "citycard/sim/transport.h"

namespace citycard {
namespace {

// The backend's Service answering at once, in process: no network time to wait for.
class InProcessChannel final : public sim::Channel {
 public:
  explicit InProcessChannel(backend::Backend& b) : backend_(b) {}
  void request(Bytes frame, ReplyFn on_reply) override {
    on_reply(backend_.service().handle(frame));
  }

 private:
  backend::Backend& backend_;
};

struct World {
  std::filesystem::path dir;
  sim::EventLoop loop;
  std::unique_ptr<backend::Backend> backend;
  backend::Session clerk;
  protocol::TerminalId desk_id{};

  ~World() {
    backend.reset();
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
};

Status open_world(World& w) {
  std::string templ = (std::filesystem::temp_directory_path() / "desk_bench_XXXXXX").string();
  if (::mkdtemp(templ.data()) == nullptr) return Status(Errc::kInternal, "mkdtemp failed");
  w.dir = templ;
  backend::BackendOptions o;
  o.key_seed = 23;
  o.store.synchronous_full = false;
  auto opened = backend::Backend::open((w.dir / "backend.db").string(), o, w.loop);
  if (!opened) return opened.status();
  w.backend = std::move(opened).value();
  if (Status s = w.backend->users().bootstrap_admin("root", "password-1"); !s) return s;
  auto admin = w.backend->users().login("root", "password-1");
  if (!admin) return admin.status();
  if (Status s = w.backend->users().create_user(
          *admin, backend::NewUser{"clerk", "password-2", backend::Role::kFinance, ""});
      !s) {
    return s;
  }
  auto clerk = w.backend->users().login("clerk", "password-2");
  if (!clerk) return clerk.status();
  w.clerk = *clerk;
  backend::MerchantParams p;
  p.merchant_id = "DESK-CENTRAL";
  p.name = "Central desk";
  p.kind = backend::MerchantKind::kDesk;
  p.bank_name = "ICBC";
  p.bank_account = "6222000011112222";
  p.account_name = "Central desk";
  if (Status s = w.backend->merchants().create(*admin, p); !s) return s;
  backend::TerminalParams tp;
  tp.operator_id = "DESK-CENTRAL";
  tp.device_id = "DESK-1";
  auto image = w.backend->register_terminal(tp);
  if (!image) return image.status();
  w.desk_id = image->terminal_id;
  return Status::ok();
}

void BM_CardsIssueRefundInProcess(benchmark::State& state) {
  World w;
  if (Status s = open_world(w); !s) {
    state.SkipWithError(s.to_string().c_str());
    return;
  }
  backend::IssueRequest req;
  req.card.opening_balance_fen = 1'000;
  req.card.deposit_fen = 500;
  for (auto _ : state) {
    auto image = w.backend->cards().issue(w.clerk, req);
    if (!image) {
      state.SkipWithError(image.status().to_string().c_str());
      break;
    }
    auto refund = w.backend->cards().refund(w.clerk, image->serial, 1'000);
    if (!refund) {
      state.SkipWithError(refund.status().to_string().c_str());
      break;
    }
  }
  state.counters["cards_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_CardsIssueRefundInProcess)->Unit(benchmark::kMicrosecond);

void BM_DeskIssueRefundOverWire(benchmark::State& state) {
  World w;
  if (Status s = open_world(w); !s) {
    state.SkipWithError(s.to_string().c_str());
    return;
  }
  InProcessChannel channel(*w.backend);
  devices::IssuingDeskOptions o;
  o.terminal_id = w.desk_id;
  o.pump = [] {};
  devices::IssuingDesk desk(o, channel, sim::Rng(5));
  if (Status s = desk.sign_in("clerk", "password-2"); !s) {
    state.SkipWithError(s.to_string().c_str());
    return;
  }
  devices::DeskIssueSpec spec;
  spec.opening_value_fen = 1'000;
  spec.deposit_fen = 500;
  for (auto _ : state) {
    auto issued = desk.issue(spec);
    if (!issued) {
      state.SkipWithError(issued.status().to_string().c_str());
      break;
    }
    devices::DirectLink link(issued->card);
    auto refund = desk.refund(link);
    if (!refund || refund->total_fen() != 1'500) {
      state.SkipWithError("refund refused or short");
      break;
    }
  }
  state.counters["cards_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DeskIssueRefundOverWire)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace citycard

BENCHMARK_MAIN();
