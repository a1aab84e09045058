// The run's randomness. One seed drives everything: components take a fork() of the root
// generator, keyed by a stable name, so adding a component does not shift the others' streams.
// The algorithm (xoshiro256**, seeded by splitmix64) and every distribution are ours, not the
// standard library's, so the same seed gives the same numbers on every platform and compiler.
#pragma once

#include <cstdint>
#include <string_view>

namespace citycard::sim {

class Rng {
 public:
  explicit Rng(std::uint64_t seed);

  std::uint64_t next_u64();
  // Uniform in [0, n); n > 0. Unbiased (Lemire's method).
  std::uint64_t uniform(std::uint64_t n);
  // Uniform in [lo, hi].
  std::int64_t uniform_range(std::int64_t lo, std::int64_t hi);
  // Uniform double in [0, 1), 53 bits.
  double uniform01();
  bool bernoulli(double p) { return p > 0 && uniform01() < p; }
  // Exponentially distributed with the given mean (for Poisson arrivals).
  double exponential(double mean);
  // Normal via Box-Muller, for balance distributions and jitter.
  double normal(double mean, double stddev);

  // An independent stream for a named component, derived from this generator's seed.
  Rng fork(std::string_view name) const;
  std::uint64_t seed() const { return seed_; }

 private:
  std::uint64_t seed_;
  std::uint64_t s_[4];
};

}  // namespace citycard::sim
