// Crypto primitives: the fast path (des.h) against the EVP baseline it replaced.
#include <benchmark/benchmark.h>

#include "citycard/protocol/crypto.h"
#include "citycard/protocol/crypto_evp.h"

namespace citycard::devices::bench {
namespace {

namespace crypto = protocol::crypto;

const crypto::Block8 kKey8{0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF};
const crypto::Key16 kKey16{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                           0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};
const std::uint8_t kData[18] = {0,    0,    0x10, 0,    6,    0,    0x11, 0x22, 0x33,
                                0x44, 0x55, 0x20, 0x12, 0x02, 0x29, 0x13, 0x51, 0};

void BM_DesMac(benchmark::State& state, bool evp) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(evp ? crypto::evp::des_mac(kKey8, ByteView(kData, 18))
                                 : crypto::des_mac(kKey8, ByteView(kData, 18)));
  }
}
BENCHMARK_CAPTURE(BM_DesMac, fast, false);
BENCHMARK_CAPTURE(BM_DesMac, evp, true);

void BM_Diversify(benchmark::State& state, bool evp) {
  protocol::Serial8 serial{0, 0, 0, 0, 0, 0, 0, 1};
  for (auto _ : state) {
    std::optional<crypto::evp::ScopedEvpCrypto> baseline;
    if (evp) baseline.emplace();
    benchmark::DoNotOptimize(crypto::diversify(crypto::Algorithm::kTripleDes, kKey16, serial));
    ++serial[7];
  }
}
BENCHMARK_CAPTURE(BM_Diversify, fast, false);
BENCHMARK_CAPTURE(BM_Diversify, evp, true);

void BM_DiversifyScheduledMaster(benchmark::State& state) {
  const crypto::TdesKey master(kKey16);
  protocol::Serial8 serial{0, 0, 0, 0, 0, 0, 0, 1};
  for (auto _ : state) {
    benchmark::DoNotOptimize(crypto::diversify(master, serial));
    ++serial[7];
  }
}
BENCHMARK(BM_DiversifyScheduledMaster);

void BM_Sm4Mac(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(crypto::sm4_mac(kKey16, ByteView(kData, 18)));
}
BENCHMARK(BM_Sm4Mac);

}  // namespace
}  // namespace citycard::devices::bench
