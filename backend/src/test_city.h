// Test support for the backend's tests: a clock that moves only when told, and a tiny city
// that makes exactly the uploads a real card and terminal would, using protocol's crypto on
// the CardImage and PsamImage that issuance returned (backend tests never use devices/).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "citycard/backend/backend.h"
#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/clock.h"

namespace citycard::backend::testing {

class FixedClock final : public sim::Clock {
 public:
  std::int64_t now_us() const override { return now_us_; }
  void advance_us(std::int64_t us) { now_us_ += us; }

 private:
  std::int64_t now_us_ = 0;
};

// A fresh directory for a test's database files, removed afterwards.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  std::string file(const std::string& name) const;

 private:
  std::string path_;
};

// A card as the card itself knows it.
struct TestCard {
  protocol::CardImage image;
  std::uint16_t counter = 0;  // offline counter its next purchase carries
  std::int64_t balance_fen = 0;
};

// A terminal with its PSAM.
struct TestTerminal {
  protocol::PsamImage psam;
  std::string operator_id;
  std::string route;
  std::uint32_t next_seq = 1;
  std::uint64_t next_batch_no = 1;
};

// A purchase as the card and terminal make it: the record carries the card's TAC; the card's
// counter and balance and the PSAM sequence advance.
citycard::wire::SwipeRecord purchase(TestCard& card, TestTerminal& terminal,
                                     std::int64_t amount_fen, const protocol::DateTime7& when);
// A batch as the terminal uploads it: numbered, totalled and signed with the PSAM's batch key.
citycard::wire::UploadBatch make_batch(TestTerminal& terminal,
                                       std::vector<citycard::wire::SwipeRecord> records);
// Recomputes count, total and signature after a test tampered with a batch (what a terminal
// with a valid PSAM but bad records would send).
void sign(citycard::wire::UploadBatch& batch, const protocol::crypto::Key16& batch_key);
Bytes upload_frame(const citycard::wire::UploadBatch& batch, std::uint64_t request_id);

// A backend on a fixed clock, with conservation asserted after every test.
class BackendTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  // Opens (or reopens) the backend on `path` with this fixture's options and clock.
  void open(const std::string& path);

  TestCard issue(std::int64_t balance_fen, std::int64_t deposit_fen = 0);
  TestTerminal add_terminal(const std::string& operator_id, const std::string& route);
  protocol::DateTime7 now() const { return backend->calendar().now_datetime(); }
  std::int64_t balance(std::string_view account) const;
  CardRecord card(const TestCard& c) const;

  FixedClock clock;
  BackendOptions options;
  std::unique_ptr<Backend> backend;
};

}  // namespace citycard::backend::testing
