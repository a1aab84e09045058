#include "test_city.h"

#include <unistd.h>

#include <filesystem>

namespace citycard::backend::testing {

namespace crypto = protocol::crypto;
namespace pw = protocol::wire;
using citycard::wire::SwipeRecord;
using citycard::wire::UploadBatch;

TempDir::TempDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = "citycard_backend_" + std::to_string(::getpid());
  if (info != nullptr) name += std::string("_") + info->test_suite_name() + "_" + info->name();
  path_ = (std::filesystem::temp_directory_path() / name).string();
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::file(const std::string& name) const {
  return (std::filesystem::path(path_) / name).string();
}

SwipeRecord purchase(TestCard& card, TestTerminal& terminal, std::int64_t amount_fen,
                     const protocol::DateTime7& when) {
  const protocol::CardImage& img = card.image;
  SwipeRecord r;
  r.set_card_serial(pw::field(img.serial));
  r.set_card_counter(card.counter);
  r.set_balance_before_fen(card.balance_fen);
  r.set_amount_fen(amount_fen);
  r.set_txn_type(protocol::txn::kPurchase);
  r.set_terminal_id(pw::field(terminal.psam.terminal_id));
  r.set_terminal_seq(terminal.next_seq);
  r.set_datetime(pw::field(when));
  const protocol::Mac4 tac = crypto::purchase_tac(
      crypto::tac_key(img.algorithm, img.dtk), static_cast<std::uint32_t>(amount_fen),
      protocol::txn::kPurchase, terminal.psam.terminal_id, terminal.next_seq, when);
  r.set_tac(pw::field(tac));
  r.set_key_version(img.key_version);
  r.set_algorithm_id(static_cast<std::uint32_t>(img.algorithm));
  r.set_operator_id(terminal.operator_id);
  r.set_route(terminal.route);
  r.set_vehicle("V-" + terminal.route);
  r.set_device("D-1");
  r.set_driver("driver-7");
  r.set_fare_full_fen(amount_fen);
  ++card.counter;
  card.balance_fen -= amount_fen;
  ++terminal.next_seq;
  return r;
}

void sign(UploadBatch& batch, const crypto::Key16& batch_key) {
  std::int64_t total = 0;
  for (const SwipeRecord& r : batch.records()) total += r.amount_fen();
  batch.set_record_count(static_cast<std::uint32_t>(batch.records_size()));
  batch.set_total_amount_fen(total);
  batch.set_batch_mac(pw::field(crypto::tdes_mac(batch_key, pw::batch_mac_input(batch))));
}

UploadBatch make_batch(TestTerminal& terminal, std::vector<SwipeRecord> records) {
  UploadBatch b;
  b.set_terminal_id(pw::field(terminal.psam.terminal_id));
  b.set_batch_no(terminal.next_batch_no++);
  for (SwipeRecord& r : records) *b.add_records() = std::move(r);
  sign(b, terminal.psam.batch_key);
  return b;
}

Bytes upload_frame(const UploadBatch& batch, std::uint64_t request_id) {
  pw::Envelope e;
  e.set_request_id(request_id);
  *e.mutable_upload() = batch;
  return pw::encode(e);
}

void BackendTest::SetUp() {
  options.key_seed = 20240101;
  open(":memory:");
}

void BackendTest::TearDown() {
  if (backend) {
    const Status s = backend->check_conservation();
    EXPECT_TRUE(s.is_ok()) << "conservation after the test: " << s.to_string();
  }
}

void BackendTest::open(const std::string& path) {
  backend.reset();
  auto b = Backend::open(path, options, clock);
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  backend = std::move(b).value();
}

TestCard BackendTest::issue(std::int64_t balance_fen, std::int64_t deposit_fen) {
  CardParams p;
  p.opening_balance_fen = balance_fen;
  p.deposit_fen = deposit_fen;
  auto img = backend->issue_card(p);
  EXPECT_TRUE(img.is_ok()) << img.status().to_string();
  if (!img.is_ok()) return {};
  return TestCard{*img, 0, balance_fen};
}

TestTerminal BackendTest::add_terminal(const std::string& operator_id, const std::string& route) {
  TerminalParams p;
  p.operator_id = operator_id;
  p.route = route;
  p.vehicle = "bus-" + route;
  p.device_id = "validator";
  auto psam = backend->register_terminal(p);
  EXPECT_TRUE(psam.is_ok()) << psam.status().to_string();
  if (!psam.is_ok()) return {};
  return TestTerminal{*psam, operator_id, route, 1, 1};
}

std::int64_t BackendTest::balance(std::string_view account) const {
  auto b = backend->ledger().balance(account);
  EXPECT_TRUE(b.is_ok()) << b.status().to_string();
  return b.is_ok() ? *b : 0;
}

CardRecord BackendTest::card(const TestCard& c) const {
  auto r = backend->issuance().card(c.image.serial);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r.is_ok() ? *r : CardRecord{};
}

}  // namespace citycard::backend::testing
