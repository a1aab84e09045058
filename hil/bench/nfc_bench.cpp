// Round trips through libnfc's pn532_uart driver and the software PN532 on a pty: what the
// CI path costs, and the ceiling a HIL test with a simulated card can run at. Real readers are
// far slower (a PN532 at 115200 baud and 106 kbit/s RF: a few hundred APDUs a second).
//
//   cmake -S . -B build-bench -DCITYCARD_BUILD_BENCHMARKS=ON
//   cmake --build build-bench --target hil_bench && build-bench/bench/hil_bench
//
// Times are wall-clock (UseRealTime): the work is split between this thread, libnfc and the
// emulator thread, so this thread's CPU time would flatter the figures.
#include <benchmark/benchmark.h>

#include <future>
#include <memory>

#include "citycard/devices/card_link.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/psam.h"
#include "citycard/devices/purchase.h"
#include "citycard/devices/sam_client.h"
#include "citycard/hil/nfc.h"
#include "citycard/hil/pn532_control.h"
#include "citycard/hil/soft_pn532.h"

namespace citycard::hil {
namespace {

const protocol::Command kGetBalance{0x80, 0x5C, 0x00, 0x02, {}, 4};
const protocol::Command kSelect{
    0x00, 0xA4, 0x04, 0x00, protocol::aid_for(protocol::Family::kJtt978), 256};

// A software PN532 with one CPU card, and a libnfc reader that has selected it.
struct Rig {
  explicit Rig(std::uint32_t balance_fen = 1000)
      : card(demo_card_image(1, balance_fen), sim::Rng(1)) {
    pn532 = SoftPn532::start().value();
    (void)pn532->insert(iso_dep_card(card, cpu_card_identity(demo_uid(1)))).value();
    ctx = NfcContext::create().value();
    reader = ctx->open(pn532->connstring()).value();
    (void)reader->start_initiator();
    (void)reader->select_card().value();
  }
  ~Rig() {
    reader.reset();
    ctx.reset();
  }
  devices::CpuCard card;
  std::unique_ptr<SoftPn532> pn532;
  std::unique_ptr<NfcContext> ctx;
  std::unique_ptr<NfcReader> reader;
};

void BM_ApduRoundTripThroughLibnfc(benchmark::State& state) {
  Rig rig;
  NfcCardLink link(*rig.reader);
  if (!link.transceive(kSelect)) state.SkipWithError("SELECT failed");
  for (auto _ : state) {
    Result<protocol::Response> r = link.transceive(kGetBalance);
    if (!r || !r->ok()) {
      state.SkipWithError("GET BALANCE failed");
      break;
    }
  }
  state.counters["apdus_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ApduRoundTripThroughLibnfc)->UseRealTime()->MinTime(2.0);

// The same APDU straight into the card model: the floor that the pty and libnfc add to.
void BM_ApduRoundTripDirect(benchmark::State& state) {
  devices::CpuCard card(demo_card_image(1, 1000), sim::Rng(1));
  devices::DirectLink link(card);
  (void)link.transceive(kSelect);
  for (auto _ : state) benchmark::DoNotOptimize(link.transceive(kGetBalance));
  state.counters["apdus_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ApduRoundTripDirect)->UseRealTime();

// A whole purchase (SELECT, READ BINARY, INITIALIZE, MAC1 in the PSAM, DEBIT, MAC2) per
// iteration, the card behind libnfc.
void BM_PurchaseThroughLibnfc(benchmark::State& state) {
  Rig rig(2'000'000'000);
  const protocol::IssuerKeys keys = demo_issuer_keys();
  protocol::PsamImage image;
  image.terminal_id = array_from_hex<6>("000102030405");
  image.key_version = keys.key_version;
  image.purchase_master = keys.purchase;
  image.batch_key = protocol::terminal_batch_key(keys.batch, image.terminal_id);
  devices::Psam psam(image);
  devices::DirectLink psam_link(psam);
  devices::SamClient sam(psam_link);
  devices::PurchaseEngine engine(sam);
  NfcCardLink link(*rig.reader);
  const devices::PurchaseRequest request{1, array_from_hex<7>("20240315080000")};
  for (auto _ : state) {
    if (!engine.purchase(link, request).ok()) {
      state.SkipWithError("purchase failed");
      break;
    }
  }
  state.counters["purchases_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PurchaseThroughLibnfc)->UseRealTime()->MinTime(2.0);

// Target mode: the simulated terminal's C-APDU goes to libnfc (TgGetData), the emulated card
// answers through libnfc (TgSetData).
void BM_TargetModeRoundTrip(benchmark::State& state) {
  Rig rig;
  CardEmulator emulator(*rig.reader);
  devices::CpuCard& card = rig.card;
  EmulationOptions options;
  options.apdus_max = UINT64_MAX;
  auto run = std::async(std::launch::async, [&] {
    return emulator.run([&card](ByteView c) { return card.process(c); }, options);
  });
  if (!rig.pn532->terminal_activate(5000)) state.SkipWithError("no activation");
  TerminalLink link(*rig.pn532);
  (void)link.transceive(kSelect);
  for (auto _ : state) {
    if (!link.transceive(kGetBalance)) {
      state.SkipWithError("GET BALANCE failed");
      break;
    }
  }
  rig.pn532->terminal_release();
  (void)run.get();
  state.counters["apdus_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_TargetModeRoundTrip)->UseRealTime()->MinTime(2.0);

}  // namespace
}  // namespace citycard::hil

BENCHMARK_MAIN();
