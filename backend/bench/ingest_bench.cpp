// Ingest throughput: uploaded purchase records per second, each with a real TAC, in signed
// batches, into a SQLite file on disk with synchronous=FULL (every acknowledged batch is
// fsynced: the group commit is the batch).
//
//   build/bench/backend_bench --benchmark_filter=Ingest --benchmark_counters_tabular=true
//
// The batches are made before the timed loop (the cards' and terminals' side is not measured);
// one iteration ingests one batch, and records_per_s is records over wall-clock seconds.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "citycard/backend/backend.h"
#include "citycard/backend/server.h"
#include "citycard/protocol/crypto.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/clock.h"

namespace {

using namespace citycard;
namespace crypto = protocol::crypto;
namespace pw = protocol::wire;

struct Card {
  protocol::CardImage image;
  std::uint16_t counter = 0;
  std::int64_t balance_fen = 0;
};

struct Terminal {
  protocol::PsamImage psam;
  std::uint32_t next_seq = 1;
  std::uint64_t next_batch_no = 1;
};

// Exactly what a card and a PSAM would produce: the card's TAC over the purchase, the
// PSAM's signature over the batch.
citycard::wire::SwipeRecord purchase(Card& card, Terminal& t, std::int64_t amount_fen,
                                     const protocol::DateTime7& when) {
  citycard::wire::SwipeRecord r;
  r.set_card_serial(pw::field(card.image.serial));
  r.set_card_counter(card.counter);
  r.set_balance_before_fen(card.balance_fen);
  r.set_amount_fen(amount_fen);
  r.set_txn_type(protocol::txn::kPurchase);
  r.set_terminal_id(pw::field(t.psam.terminal_id));
  r.set_terminal_seq(t.next_seq);
  r.set_datetime(pw::field(when));
  r.set_tac(pw::field(crypto::purchase_tac(
      crypto::tac_key(card.image.algorithm, card.image.dtk), static_cast<std::uint32_t>(amount_fen),
      protocol::txn::kPurchase, t.psam.terminal_id, t.next_seq, when)));
  r.set_key_version(card.image.key_version);
  r.set_algorithm_id(static_cast<std::uint32_t>(card.image.algorithm));
  r.set_operator_id("bus-co-1");
  r.set_route("R1");
  r.set_vehicle("B1");
  r.set_device("val-1");
  r.set_fare_full_fen(amount_fen);
  ++card.counter;
  card.balance_fen -= amount_fen;
  ++t.next_seq;
  return r;
}

citycard::wire::UploadBatch sign(Terminal& t, std::vector<citycard::wire::SwipeRecord>& records) {
  citycard::wire::UploadBatch b;
  b.set_terminal_id(pw::field(t.psam.terminal_id));
  b.set_batch_no(t.next_batch_no++);
  std::int64_t total = 0;
  for (auto& r : records) {
    total += r.amount_fen();
    *b.add_records() = std::move(r);
  }
  b.set_record_count(static_cast<std::uint32_t>(b.records_size()));
  b.set_total_amount_fen(total);
  b.set_batch_mac(pw::field(crypto::tdes_mac(t.psam.batch_key, pw::batch_mac_input(b))));
  return b;
}

class FixedClock final : public sim::Clock {
 public:
  std::int64_t now_us() const override { return 0; }
};

// A fresh database on disk with `card_count` cards and `terminal_count` terminals, and the
// batches they upload: `batch_count` batches of `records_per_batch`, round-robin over the
// terminals, each record from the next card.
struct City {
  FixedClock clock;
  std::unique_ptr<backend::Backend> be;
  std::vector<citycard::wire::UploadBatch> batches;

  City(bool durable, int records_per_batch, int batch_count) {
    const std::string db =
        (std::filesystem::temp_directory_path() / "citycard_ingest_bench.db").string();
    for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(db + s);
    backend::BackendOptions o;
    o.store.synchronous_full = durable;
    be = std::move(backend::Backend::open(db, o, clock).value());
    if (const char* pragmas = std::getenv("INGEST_BENCH_PRAGMAS")) (void)be->store().exec(pragmas);
    const int card_count = 20'000, terminal_count = 50;
    std::vector<Card> cards;
    std::vector<Terminal> terminals;
    {
      auto tx = be->store().begin();
      for (int i = 0; i < card_count; ++i) {
        backend::CardParams p;
        p.opening_balance_fen = 100'000;
        cards.push_back({be->issue_card(p).value(), 0, 100'000});
      }
      for (int i = 0; i < terminal_count; ++i) {
        backend::TerminalParams tp;
        tp.operator_id = "bus-co-1";
        tp.route = "R" + std::to_string(i % 10);
        tp.vehicle = "B" + std::to_string(i);
        tp.device_id = "val-" + std::to_string(i);
        terminals.push_back({be->register_terminal(tp).value()});
      }
      (void)tx->commit();
    }
    const protocol::DateTime7 when = be->calendar().now_datetime();
    std::size_t next_card = 0;
    for (int b = 0; b < batch_count; ++b) {
      Terminal& t = terminals[static_cast<std::size_t>(b) % terminals.size()];
      std::vector<citycard::wire::SwipeRecord> records;
      for (int i = 0; i < records_per_batch; ++i) {
        records.push_back(purchase(cards[next_card++ % cards.size()], t, 1, when));
      }
      batches.push_back(sign(t, records));
    }
  }
};

// Arguments: records per batch; synchronous FULL (1) or NORMAL (0); the money side's swipe
// rules on (1, as the Backend opens) or off (0, ingest's own cost); through the Service as wire
// frames (1: decode included) or straight into Backend::upload (0).
void BM_Ingest(benchmark::State& state) {
  const int per_batch = static_cast<int>(state.range(0));
  const bool durable = state.range(1) != 0;
  const bool hook = state.range(2) != 0;
  const bool frames = state.range(3) != 0;
  const int batch_count = static_cast<int>(state.max_iterations);
  City city(durable, per_batch, batch_count);
  if (!hook) city.be->ingest().set_swipe_hook(nullptr);
  std::vector<Bytes> encoded;
  if (frames) {
    for (const auto& b : city.batches) {
      pw::Envelope e;
      e.set_request_id(encoded.size() + 1);
      *e.mutable_upload() = b;
      encoded.push_back(pw::encode(e));
    }
  }
  sim::WallClock wall;
  const std::int64_t start_us = wall.now_us();
  std::size_t next = 0;
  std::uint64_t accepted = 0;
  for (auto _ : state) {
    if (frames) {
      auto reply = pw::decode(city.be->service().handle(encoded[next++]));
      if (!reply.is_ok() || !reply->has_upload_ack()) {
        state.SkipWithError("an upload was refused");
        break;
      }
      accepted += reply->upload_ack().accepted();
      continue;
    }
    const backend::IngestResult r = city.be->upload(city.batches[next++]);
    if (!r.ok()) {
      state.SkipWithError(r.message.c_str());
      break;
    }
    accepted += r.ack.accepted();
  }
  const double wall_s = static_cast<double>(wall.now_us() - start_us) / 1e6;
  if (accepted != static_cast<std::uint64_t>(per_batch) * next) {
    state.SkipWithError("not every record was accepted");
  }
  if (Status s = city.be->check_conservation(); !s.is_ok()) {
    state.SkipWithError(s.to_string().c_str());
  }
  state.counters["records_per_s"] = static_cast<double>(accepted) / wall_s;
  state.counters["records"] = static_cast<double>(accepted);
  state.SetLabel(std::string(durable ? "synchronous=FULL" : "synchronous=NORMAL") +
                 (hook ? ", swipe rules" : ", ingest only") + (frames ? ", wire frames" : ""));
}
// Iterations are batches; each configuration ingests 200,000 records.
BENCHMARK(BM_Ingest)
    ->ArgNames({"per_batch", "full", "rules", "frames"})
    ->Args({100, 1, 1, 0})
    ->Iterations(2'000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Ingest)
    ->ArgNames({"per_batch", "full", "rules", "frames"})
    ->Args({1'000, 1, 1, 0})
    ->Args({1'000, 0, 1, 0})
    ->Args({1'000, 1, 0, 0})
    ->Args({1'000, 1, 1, 1})
    ->Iterations(200)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Ingest)
    ->ArgNames({"per_batch", "full", "rules", "frames"})
    ->Args({10'000, 1, 1, 0})
    ->Iterations(20)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// The same uploads through the ZeroMQ server (plain tcp, one machine): `terminals` clients,
// each with one batch in flight, as buses upload. With group commit the server ingests the
// batches that are waiting in one transaction: one fsync for the group instead of one per batch.
// Arguments: records per batch; group_commit_max_requests (1: off).
void BM_ServerIngest(benchmark::State& state) {
  const int per_batch = static_cast<int>(state.range(0));
  const auto group = static_cast<std::size_t>(state.range(1));
  constexpr int kClients = 16;
  const int batch_count = static_cast<int>(state.max_iterations);
  City city(true, per_batch, batch_count);
  zmq::context_t ctx;
  backend::ServerOptions so;
  so.listen = "tcp://127.0.0.1:*";
  so.curve = false;
  so.group_commit_max_requests = group;
  std::string root_key;
  auto server = backend::Server::open(*city.be, ctx, so, &root_key);
  if (!server.is_ok()) {
    state.SkipWithError(server.status().to_string().c_str());
    return;
  }
  std::thread serving([&] { (*server)->serve(); });
  std::vector<zmq::socket_t> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back(ctx, zmq::socket_type::dealer);
    clients.back().set(zmq::sockopt::linger, 0);
    clients.back().connect((*server)->endpoint());
  }
  // Batches are per terminal in order, so each client sends the batches of its terminals.
  std::vector<std::vector<Bytes>> queues(kClients);
  for (std::size_t i = 0; i < city.batches.size(); ++i) {
    pw::Envelope e;
    e.set_request_id(i + 1);
    *e.mutable_upload() = city.batches[i];
    queues[(i % 50) % kClients].push_back(pw::encode(e));
  }
  std::vector<std::size_t> next(kClients, 0);
  auto send = [&](int c) {
    if (next[static_cast<std::size_t>(c)] >= queues[static_cast<std::size_t>(c)].size()) return;
    const Bytes& f = queues[static_cast<std::size_t>(c)][next[static_cast<std::size_t>(c)]++];
    clients[static_cast<std::size_t>(c)].send(zmq::message_t(), zmq::send_flags::sndmore);
    clients[static_cast<std::size_t>(c)].send(zmq::buffer(f), zmq::send_flags::none);
  };
  sim::WallClock wall;
  const std::int64_t start_us = wall.now_us();
  for (int c = 0; c < kClients; ++c) send(c);
  std::uint64_t accepted = 0;
  std::vector<zmq::pollitem_t> items;
  for (auto& c : clients) items.push_back({c.handle(), 0, ZMQ_POLLIN, 0});
  for (auto _ : state) {  // one reply per iteration
    for (;;) {
      zmq::poll(items, std::chrono::milliseconds(-1));
      int got = -1;
      for (int c = 0; c < kClients && got < 0; ++c) {
        if (items[static_cast<std::size_t>(c)].revents & ZMQ_POLLIN) got = c;
      }
      std::vector<zmq::message_t> parts;
      do {
        zmq::message_t m;
        (void)clients[static_cast<std::size_t>(got)].recv(m, zmq::recv_flags::none);
        parts.push_back(std::move(m));
      } while (parts.back().more());
      auto reply = pw::decode(
          ByteView(static_cast<const std::uint8_t*>(parts.back().data()), parts.back().size()));
      if (reply.is_ok() && reply->has_upload_ack()) accepted += reply->upload_ack().accepted();
      send(got);
      break;
    }
  }
  const double wall_s = static_cast<double>(wall.now_us() - start_us) / 1e6;
  (*server)->stop();
  serving.join();
  const backend::ServerCounters c = (*server)->counters();
  if (accepted != static_cast<std::uint64_t>(per_batch) * static_cast<std::uint64_t>(batch_count)) {
    state.SkipWithError("not every record was accepted");
  }
  state.counters["records_per_s"] = static_cast<double>(accepted) / wall_s;
  state.counters["groups"] = static_cast<double>(c.groups);
  state.counters["grouped_uploads"] = static_cast<double>(c.grouped_uploads);
  state.SetLabel(group > 1 ? "group commit" : "a commit per batch");
}
BENCHMARK(BM_ServerIngest)
    ->ArgNames({"per_batch", "group"})
    ->Args({100, 1})
    ->Args({100, 64})
    ->Iterations(2'000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
