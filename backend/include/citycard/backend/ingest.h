// Ingest: turns terminals' upload batches into cleared swipes and ledger postings.
//
// A batch is refused as a whole, with nothing written, when it is too large (REJECTED), its
// terminal id or MAC has the wrong length (MALFORMED), its terminal is unknown
// (UNKNOWN_TERMINAL), its signature — tdes_mac(terminal batch key, batch_mac_input) — does
// not verify or its record_count / total_amount_fen disagree with its records
// (BAD_SIGNATURE), or its (terminal, batch_no) was already used for different content
// (REJECTED). A refused batch is not a receipt: the terminal keeps it.
//
// Otherwise every record gets a verdict, in order:
//   MALFORMED     a field of the wrong length or out of range;
//   REJECTED      recorded by another terminal, unknown key version, an algorithm other than
//                 the card's, or (card, counter) / (terminal, seq) already cleared with a
//                 *different* transaction (a cloned card or a reused PSAM sequence);
//   UNKNOWN_CARD  serial never issued;
//   BAD_TAC       the TAC, recomputed with the card's DTK (derived from the issuer TAC master
//                 of the record's key version), does not match: forged or corrupted;
//   DUPLICATE     the same transaction was already cleared: counted, nothing moves;
//   SUSPICIOUS    accepted, but the counter skipped or went back, the balance before is not
//                 what the backend believed, the card is not active, or the record names
//                 another operator than the terminal's registration;
//   OK            accepted.
// Rejected records (MALFORMED, REJECTED, UNKNOWN_CARD, BAD_TAC) are kept in
// rejected_records for operators; no money moves for them. An accepted record is stored in
// swipes with every clearing field and posted Dr card_float / Cr payable:<operator> (the
// terminal's registered operator); the card's believed balance and last counter follow.
//
// The money of a batch is one posting (kind "swipes", reference "batch <terminal>#<no>"):
// Dr card_float / Cr payable:<operator> for the sum of its accepted records, and every swipe
// row points at it (posting_id; NULL for a zero fare, and no posting when the batch moved
// nothing). A batch is one terminal's, so one operator's: the detail is in swipes.

// All of a batch — swipes, postings, rejected records, card updates and the stored ack — is
// one SQLite transaction: after a crash either the whole batch is there or none of it. The
// ack is stored, so a replay of the batch gets the same ack with batch_duplicate set and
// changes nothing.
//
// Speed (backend/bench/ingest_bench.cpp): a card is read once per batch and written once per
// batch; a record is inserted straight away and the unique keys of swipes ((card, counter) and
// (terminal, seq)) detect a replay, so only a replay costs a query; the batch is posted before
// its records are stored (on the bet that all are accepted; when not, the batch is processed a
// second time with the right amount), so a row is written once; the cards' TAC keys are kept
// scheduled in a bounded cache (IngestOptions::tac_key_cache_max). The per-record cost is a MAC
// and one row insert.

// A SwipeHook (swipe_hook.h), when set, sees every record that passed ingest's own checks before
// its money moves (it may reject it or add reasons to flag it) and again once it is stored.
//
// Threads: one caller at a time (the Backend's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>

#include "citycard/backend/calendar.h"
#include "citycard/backend/issuance.h"
#include "citycard/backend/keys.h"
#include "citycard/backend/ledger.h"
#include "citycard/backend/store.h"
#include "citycard/backend/swipe_hook.h"
#include "citycard/protocol/crypto.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/status.h"
#include "citycard/protocol/wire.h"

namespace citycard::backend {

struct IngestOptions {
  // Limit per batch; a larger one is refused as a whole (REJECTED), never truncated.
  std::size_t max_batch_records = 10'000;
  // The offline counter a new card's first purchase carries. PBOC cards report the counter
  // before the debit, so a fresh card's first purchase is 0; configurable because unconfirmed.
  std::uint16_t first_card_counter = 0;
  // Operator, route, vehicle, device and driver fields longer than this are MALFORMED.
  std::size_t max_text_field_bytes = 64;
  // Cards whose scheduled TAC key is kept between batches, at most (about 200 bytes each). A
  // full cache is emptied and refilled: bounded memory, a brief dip in speed.
  std::size_t tac_key_cache_max = 65'536;
  // Reorder window. A card's taps reach us from different terminals, each uploading on its
  // own schedule, so a counter gap is often a tap still on its way. With a window > 0 a gap of
  // at most reorder_gap_max counters is held open instead of flagged: the record after it is
  // accepted as OK, and when a missing counter arrives it closes its part of the gap (not
  // "counter went back") and its balance is checked against its stored neighbours (counter - 1
  // and + 1) instead of the backend's running belief. A missing counter still absent when the
  // window ends flags the record after the gap SUSPICIOUS ("counter gap: counter N never
  // arrived"); ingest looks for those at every batch, and Backend::poll() too. A wider gap is
  // flagged at once. 0 (the default) flags every gap at once.
  std::int64_t reorder_window_us = 0;
  std::uint16_t reorder_gap_max = 16;
};

// Counts since this process opened the backend, for the run summary.
struct IngestCounters {
  std::uint64_t batches_accepted = 0;   // processed and stored (records may still be refused)
  std::uint64_t batches_duplicate = 0;  // replays answered from the stored ack
  std::uint64_t batches_refused = 0;    // refused whole, nothing stored
  std::uint64_t records_accepted = 0;   // including suspicious ones
  std::uint64_t records_duplicate = 0;
  std::uint64_t records_rejected = 0;
  std::uint64_t records_suspicious = 0;  // including those a persisting gap flagged later
  std::int64_t amount_accepted_fen = 0;
  std::uint64_t gaps_held = 0;     // missing counters held open by the reorder window
  std::uint64_t gaps_closed = 0;   // of which arrived in time
  std::uint64_t gaps_flagged = 0;  // of which did not
};

struct IngestResult {
  // OK: `ack` is a durable receipt. Anything else: the batch was refused whole, nothing
  // changed, and `message` says why (a Service turns it into an ErrorReply).
  citycard::wire::Code code = citycard::wire::OK;
  std::string message;
  citycard::wire::UploadAck ack;
  bool ok() const { return code == citycard::wire::OK; }
};

// One cleared swipe as stored.
struct SwipeRow {
  int settlement_date_yyyymmdd = 0;
  protocol::TerminalId terminal_id{};
  std::uint64_t batch_no = 0;
  protocol::Serial8 card_serial{};
  std::uint16_t card_counter = 0;
  std::int64_t balance_before_fen = 0;
  std::int64_t amount_fen = 0;
  std::int64_t fare_full_fen = 0;
  std::uint8_t txn_type = 0;
  protocol::DateTime7 datetime{};
  protocol::Mac4 tac{};
  std::uint32_t terminal_seq = 0;
  std::uint8_t key_version = 0;
  std::uint8_t algorithm_id = 0;
  std::string operator_id;
  std::string route;
  std::string vehicle;
  std::string device;
  std::string driver;
  std::uint32_t transfer_count = 0;
  bool suspicious = false;
  std::string suspicion;  // why, "; "-separated
  bool reconciled = false;
  bool operator==(const SwipeRow&) const = default;
};

class Ingest {
 public:
  Ingest(Store& store, Ledger& ledger, Keys& keys, Issuance& issuance, const Calendar& calendar,
         IngestOptions options);

  IngestResult ingest(const citycard::wire::UploadBatch& batch);
  // The money side's rules; null (the default) for none. Must outlive the Ingest.
  void set_swipe_hook(SwipeHook* hook) { hook_ = hook; }

  const IngestCounters& counters() const { return counters_; }
  const IngestOptions& options() const { return options_; }

  // Queries for operators, reports and tests.
  Result<std::optional<SwipeRow>> find_swipe(const protocol::Serial8& card,
                                             std::uint16_t counter) const;
  Result<std::int64_t> swipe_count() const;
  Result<std::int64_t> suspicious_count() const;
  Result<std::int64_t> rejected_record_count() const;
  Result<std::int64_t> batch_count() const;
  // Missing counters held open by the reorder window.
  Result<std::int64_t> open_gap_count() const;
  // Flags the records after gaps whose window has ended (see reorder_window_us); returns how
  // many missing counters it flagged. Runs inside the caller's transaction when there is one.
  Result<std::int64_t> flag_persistent_gaps();
  // The ack stored for a processed batch (batch_duplicate false), or nullopt.
  Result<std::optional<citycard::wire::UploadAck>> stored_ack(const protocol::TerminalId& terminal,
                                                              std::uint64_t batch_no) const;

 private:
  struct Batch;
  struct Verdict;
  struct CardState;
  struct Accepted;
  struct Work;
  struct TacKeyId {
    std::uint64_t serial = 0;  // the 8 serial bytes, big-endian
    std::uint16_t version_and_algorithm = 0;
    bool operator==(const TacKeyId&) const = default;
  };
  struct TacKeyIdHash {
    std::size_t operator()(const TacKeyId& k) const {
      return std::hash<std::uint64_t>()(k.serial * 31 + k.version_and_algorithm);
    }
  };

  static Verdict verdict(citycard::wire::Code code, std::string message);
  IngestResult refuse(const citycard::wire::UploadBatch& batch, citycard::wire::Code code,
                      std::string message);
  Result<Verdict> process_record(Work& w, const citycard::wire::SwipeRecord& r);
  Result<CardState*> card_state(Work& w, const protocol::Serial8& serial);
  Result<const protocol::crypto::MacKey*> tac_key(std::uint8_t version,
                                                  protocol::crypto::Algorithm alg,
                                                  const protocol::Serial8& serial);
  Result<Verdict> classify_replay(const Accepted& a);
  Result<std::int64_t> flag_expired_gaps();  // inside the caller's transaction
  Status run_records(Work& w, const citycard::wire::UploadBatch& batch, std::int64_t post_fen,
                     citycard::wire::UploadAck& ack, IngestCounters& delta);
  Status store_rejected(const Batch& b, const citycard::wire::SwipeRecord& r, std::uint32_t index,
                        const Verdict& v);

  Store& store_;
  Ledger& ledger_;
  Keys& keys_;
  Issuance& issuance_;
  const Calendar& calendar_;
  IngestOptions options_;
  IngestCounters counters_;
  SwipeHook* hook_ = nullptr;
  std::unordered_map<TacKeyId, protocol::crypto::MacKey, TacKeyIdHash> tac_keys_;
};

}  // namespace citycard::backend
