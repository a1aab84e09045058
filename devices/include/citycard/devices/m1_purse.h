// The terminal side of an M1 purse (MIFARE Classic) debit or load, with the write order of
// STANDARDS.md that makes every tear recoverable, and the recovery itself.
//
// Blocks (protocol::m1::PurseLayout): purse value block 8 and its backup 9 (sector 2),
// process information 24 (master) and 25 (backup) in sector 6, nine cyclic records in
// sectors 3-5, issuer information in blocks 4-5. Process information is the
// protocol::m1::ProcessInfo with its XOR check byte; `type` 0 marks a state that describes no
// transaction (personalisation, or a transaction rolled back).
//
// A transaction, after reading 24, 25, 8, 9 and recovering (below), and reading 4-5:
//   S1 write 24 = in progress (counter+1, record slot, balance before, amount, type)
//   S2 write the cyclic record, read it back
//   S3 write 25 = 24
//   S4 DECREMENT (INCREMENT for a load) + TRANSFER block 8, read it back
//   S5 RESTORE 8 + TRANSFER to the backup 9, read it back
//   S6 write 24 = done
//   S7 write 25 = done
// The transaction counts (is reported ok, its record goes to clearing) only when S7 is done.
//
// Recovery at every tap, from what blocks 24, 25, 8 and 9 hold (a torn block fails its check):
// - 24 and 25 done and equal: consistent. A value block that fails its format is restored
//   from the other (RESTORE + TRANSFER).
// - 24 done, 25 not its copy (S7 missing or torn): 25 = 24; if 25 was in progress for the same
//   counter the transaction is complete now and counts (rolled forward).
// - 24 in progress (or torn with 25 in progress): the purse decides. Block 8 already holds the
//   balance after -> the money moved: finish S5-S7, the transaction counts (rolled forward).
//   Block 8 holds the balance before (or is torn and 9 holds it) -> roll back: 8 restored from
//   9 when torn, 24 and 25 = done with the previous counter and type 0; nothing counts.
// - 24 torn, 25 done: S1 was torn; 24 = 25.
// A tap that rolls a transaction forward reports it as `recovered` and charges nothing new,
// as the CPU purse engine does. A terminal also keeps a grey record of its own transactions
// that tore; when the card comes back consistent with that transaction's counter (a tear
// after S7 lost only the answer), the grey record is reported as recovered.
// A roll forward by another terminal than the one that started the transaction is reported by
// both (no terminal can know the other's); the clearing centre deduplicates by (card,
// counter).
//
// Not thread-safe. Does not own the link.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "citycard/devices/m1_link.h"
#include "citycard/devices/purchase.h"
#include "citycard/protocol/crypto.h"
#include "citycard/protocol/mifare.h"
#include "citycard/protocol/purse.h"

namespace citycard::devices {

struct M1Request {
  std::uint32_t amount_fen = 0;
  protocol::DateTime7 datetime{};
  std::uint8_t type = protocol::txn::kPurchase;  // or txn::kLoadEp (INCREMENT, key B)
};

// A transaction as a clearing record needs it.
struct M1Transaction {
  protocol::m1::Uid4 uid{};
  std::uint16_t counter = 0;
  std::uint8_t type = protocol::txn::kPurchase;
  std::uint32_t balance_before_fen = 0;
  std::uint32_t amount_fen = 0;
  std::uint32_t epoch2000_s = 0;   // date-time, seconds since 2000 (the record's)
  std::uint16_t terminal_low = 0;  // last two bytes of the terminal id that wrote it
  bool operator==(const M1Transaction&) const = default;
};

struct M1Result {
  std::optional<Refusal> refusal;  // empty: a transaction counts (new, or recovered)
  std::string detail;
  bool recovered = false;    // an earlier torn transaction completed; nothing new
  bool rolled_back = false;  // this tap undid an earlier torn transaction
  M1Transaction txn;         // valid when ok()
  std::int64_t duration_us = 0;

  bool ok() const { return !refusal.has_value(); }
};

struct M1PurseOptions {
  protocol::TerminalId terminal{};
  protocol::crypto::Key16 m1_master{};  // sector keys are derived from it by UID
  protocol::m1::PurseLayout layout{};
  bool check_validity = true;
  std::uint32_t balance_max_fen = 100'000;  // a load past it is refused
};

struct M1GreyCounters {
  std::uint64_t recorded = 0;
  std::uint64_t completed = 0;  // counted from a grey record at a later tap
  std::uint64_t cleared = 0;
  std::uint64_t unresolved = 0;
  std::uint64_t rolled_forward = 0;  // by this terminal's recovery
  std::uint64_t rolled_back = 0;
};

class M1PurseEngine {
 public:
  static constexpr std::size_t kGreyRecordsMax = 16;

  explicit M1PurseEngine(M1PurseOptions options);

  M1Result transact(M1Link& card, const M1Request& request);

  std::size_t grey_records() const { return grey_.size(); }
  const M1GreyCounters& counters() const { return counters_; }

 private:
  class Ops;
  struct State;
  M1Result run(M1Link& card, const M1Request& request);
  // Brings the card to a consistent done state; fills `rolled_forward` when a transaction was
  // completed by it.
  Status recover(Ops& ops, State& state, std::optional<M1Transaction>& rolled_forward,
                 bool& rolled_back);
  Status resolve_in_progress(Ops& ops, State& state, const protocol::m1::ProcessInfo& p,
                             std::optional<M1Transaction>& rolled_forward, bool& rolled_back);
  Status repair_values(Ops& ops, State& state);
  M1Transaction transaction_of(Ops& ops, const protocol::m1::ProcessInfo& p);
  void keep_grey(const M1Transaction& t);
  std::optional<M1Transaction> take_grey(const protocol::m1::Uid4& uid);

  M1PurseOptions options_;
  std::vector<M1Transaction> grey_;
  M1GreyCounters counters_;
};

}  // namespace citycard::devices
