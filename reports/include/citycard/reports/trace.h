// The run's trace: JSON lines, one event a line, the source of truth every report is rendered
// from. Lines hold only what a run computes (virtual time, ids, amounts), never wall time, so
// the same seed on the same build gives the same bytes, and the SHA-256 over them (the trace
// digest) is the run's fingerprint.
//
// Single-threaded: one writer per run.
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "citycard/protocol/status.h"

namespace citycard::reports {

using Json = nlohmann::json;

class TraceWriter {
 public:
  // path empty: digest only, nothing written (for benchmarks and tests).
  static Result<std::unique_ptr<TraceWriter>> open(const std::string& path);
  ~TraceWriter();

  // Appends {"t_us": t_us, "ev": type, ...fields}. Fields keep their insertion-independent
  // (sorted) key order so the line is canonical.
  void event(std::int64_t t_us, std::string_view type, Json fields);

  std::uint64_t events() const { return events_; }
  // SHA-256 over every line written so far, hex.
  std::string digest_hex() const;
  Status close();

 private:
  TraceWriter();
  struct Digest;
  std::unique_ptr<Digest> digest_;
  std::ofstream out_;
  bool writing_ = false;
  std::uint64_t events_ = 0;
};

}  // namespace citycard::reports
