// Validator transactions per second per core with full crypto: the issue-5 bus terminal's whole
// tap on in-process links — card facts (SELECT, 0x15, 0x16, GET BALANCE, 0x1E), fare policy
// with transfer and card-type rules, composite purchase (INITIALIZE FOR CAPP PURCHASE, PSAM
// MAC1, UPDATE CAPP DATA CACHE 0x1E, DEBIT, PSAM MAC2 verify), every APDU encoded and parsed,
// the card's TAC and MACs, the record appended to the CRC-checked durable log (in memory: the
// figure is CPU, not a flash chip's fsync), and a PSAM-signed upload batch every 100 taps.
// Single-threaded, so CPU time is per core. Goal: >= 100,000 taps per second.
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "../src/test_support.h"
#include "citycard/devices/bus_terminal.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/qr_pay.h"
#include "citycard/protocol/qr.h"
#include "citycard/sim/event_loop.h"

namespace citycard::devices::bench {
namespace {

// Acknowledges every batch at once, keeping nothing (the bench must not grow).
class AckingChannel final : public sim::Channel {
 public:
  void request(Bytes frame, ReplyFn on_reply) override {
    Result<citycard::wire::Envelope> env = protocol::wire::decode(frame);
    citycard::wire::Envelope reply;
    reply.set_request_id(env->request_id());
    reply.mutable_upload_ack()->set_batch_no(env->upload().batch_no());
    reply.mutable_upload_ack()->set_accepted(env->upload().record_count());
    on_reply(protocol::wire::encode(reply));
  }
};

constexpr std::size_t kCards = 1024;
constexpr std::uint16_t kTapsPerCardMax = 60'000;  // offline counters stop at FFFF

void BM_BusTerminalTap(benchmark::State& state) {
  sim::EventLoop loop;
  Psam psam(testing::psam_image());
  AckingChannel channel;
  auto disk = std::make_shared<MemoryDisk>();
  MemoryLogStorage storage(disk);
  BusTerminalConfig config;
  config.core.device_id = "BENCH";
  config.core.operator_id = "OP";
  config.core.calendar_origin_epoch2000_s =
      protocol::epoch2000_from_datetime(array_from_hex<7>("20240315060000"));
  config.core.queue.batch_records_max = 100;
  config.core.double_tap_window_us = 1'000'000;
  config.fare.flat_fen = 1;  // 1 fen a tap: the cards last the whole run
  config.fare.transfer = {90 * 60, 1, std::nullopt};
  config.fare.card_type_discount_bp = {0, 5000, 10'000, 0};
  BusTerminal bus(config, psam, loop, channel, storage);
  bus.assign("71", "BUS-1");

  protocol::CardImage driver_image = testing::card_image(999'999, 0);
  driver_image.card_type = protocol::CardType::kStaff;
  CpuCard driver(driver_image, sim::Rng(7));
  DirectLink driver_link(driver);
  if (!bus.sign_in(driver_link)) state.SkipWithError("driver sign-in failed");

  std::vector<std::unique_ptr<CpuCard>> cards;
  for (std::size_t i = 0; i < kCards; ++i) {
    cards.push_back(std::make_unique<CpuCard>(testing::card_image(i + 1, 100'000),
                                              sim::Rng(static_cast<std::uint64_t>(i))));
  }
  std::size_t next = 0;
  std::int64_t taps = 0;
  std::int64_t now_us = 0;
  for (auto _ : state) {
    CpuCard& card = *cards[next];
    if (card.offline_counter() >= kTapsPerCardMax) {
      state.PauseTiming();
      cards[next] =
          std::make_unique<CpuCard>(testing::card_image(next + 1, 100'000), sim::Rng(next));
      state.ResumeTiming();
    }
    card.reset();
    DirectLink link(*cards[next]);
    const SaleResult r = bus.tap(link);
    if (!r.ok()) {
      state.SkipWithError(r.detail.c_str());
      break;
    }
    ++taps;
    if (++next == kCards) {
      next = 0;
      now_us += 2'000'000;  // a round of the card pool later: past the double-tap window
      loop.run_until(now_us);
    }
    if (taps % 100 == 0) bus.upload();
  }
  state.counters["taps_per_s"] =
      benchmark::Counter(static_cast<double>(taps), benchmark::Counter::kIsRate);
  state.counters["queue_left"] = static_cast<double>(bus.core().queue().size());
}
BENCHMARK(BM_BusTerminalTap)->MinTime(2.0);

// A QR-code scan on the validator, offline: decode, ECDSA P-256 verify of the issuer's grant and
// of the phone's signature (OpenSSL), the age window, the replay memory and the upload queue.
// Codes are made beforehand (the phone's signing is not the validator's CPU). Compare its
// scans_per_s with BM_BusTerminalTap's taps_per_s in the same run.
void BM_QrScan(benchmark::State& state) {
  constexpr std::size_t kCodes = 2048;
  auto issuer = protocol::qr::EcKey::generate();
  auto phone = protocol::qr::EcKey::generate();
  protocol::qr::Payload p;
  p.grant.key_id = 7;
  p.grant.card = testing::serial_of(1);
  p.grant.phone_key = phone->public_point();
  p.grant.valid_from_s = 0;
  p.grant.valid_to_s = 1'000'000'000;
  p.grant.max_amount_fen = 500;
  p.grant_signature = *issuer->sign(p.grant.encode());
  const std::int64_t now_s = 800'000'000;
  std::vector<Bytes> codes;
  for (std::size_t i = 0; i < kCodes; ++i) {
    p.seq = static_cast<std::uint32_t>(i + 1);
    p.created_s = now_s;
    p.signature = *phone->sign(p.signed_part());
    codes.push_back(p.encode());
  }
  QrValidatorOptions o;
  o.queue_max = kCodes;
  auto validator = std::make_unique<QrValidator>(issuer->public_point(), testing::kTerminal, o);
  std::size_t next = 0;
  std::int64_t scans = 0;
  for (auto _ : state) {
    if (next == kCodes) {  // every code used once: a fresh validator (no replays, empty queue)
      state.PauseTiming();
      validator = std::make_unique<QrValidator>(issuer->public_point(), testing::kTerminal, o);
      next = 0;
      state.ResumeTiming();
    }
    const QrScan r = validator->scan(codes[next++], now_s, 200);
    if (!r.ok()) {
      state.SkipWithError(r.detail.c_str());
      break;
    }
    ++scans;
  }
  state.counters["scans_per_s"] =
      benchmark::Counter(static_cast<double>(scans), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_QrScan)->MinTime(1.0);

}  // namespace
}  // namespace citycard::devices::bench

BENCHMARK_MAIN();
