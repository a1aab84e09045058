#include "citycard/backend/ingest.h"

#include <algorithm>
#include <unordered_map>
#include <utility>
#include <vector>

#include "citycard/protocol/crypto.h"
#include "citycard/protocol/wire.h"

namespace citycard::backend {

namespace crypto = protocol::crypto;
namespace pw = protocol::wire;
using citycard::wire::Code;
using citycard::wire::SwipeRecord;
using citycard::wire::UploadAck;
using citycard::wire::UploadBatch;
using protocol::DateTime7;
using protocol::Mac4;
using protocol::Serial8;
using protocol::TerminalId;

struct Ingest::Batch {
  TerminalId terminal{};
  std::uint64_t batch_no = 0;
  TerminalRecord registration;
  int settlement_date = 0;
};

struct Ingest::Verdict {
  Code code = citycard::wire::OK;
  std::string message;
  std::int64_t amount_fen = 0;  // moved, when accepted
};

// What the backend believes of a card while a batch is processed: read once, updated in
// memory by each accepted record, written back once when the batch is done.
struct Ingest::CardState {
  CardRecord record;
  std::int64_t spent_fen = 0;                // accepted in this batch
  std::optional<std::uint16_t> max_counter;  // highest counter accepted in this batch
};

// A record that passed the shape and TAC checks, as the swipes row and the hook see it.
struct Ingest::Accepted {
  const SwipeRecord* record = nullptr;
  Serial8 serial{};
  TerminalId terminal{};
  DateTime7 datetime{};
  Mac4 tac{};
  std::uint16_t counter = 0;
  std::uint8_t type = 0;
  std::uint8_t key_version = 0;
  crypto::Algorithm algorithm = crypto::Algorithm::kTripleDes;
};

struct Ingest::Work {
  Batch b;
  std::optional<std::int64_t> posting_id;              // of the batch's money, once posted
  std::unordered_map<std::uint64_t, CardState> cards;  // by serial, big-endian
  IngestCounters* delta = nullptr;                     // the pass's counts
};

namespace {

constexpr std::uint32_t kMaxCounter = 0xFFFF;         // the card's offline counter is 2 bytes
constexpr std::int64_t kMaxPurseFen = 0xFFFF'FFFFLL;  // the card's purse is 4 bytes

ByteView bytes_of(const std::string& s) {
  return ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

// SQLite integers are signed 64-bit; a batch number keeps its bit pattern.
std::int64_t as_sql(std::uint64_t v) {
  return static_cast<std::int64_t>(v);
}

std::uint64_t serial_u64(const Serial8& s) {
  std::uint64_t v = 0;
  for (std::uint8_t b : s) v = (v << 8) | b;
  return v;
}

template <std::size_t N>
void copy_blob(const Bytes& b, std::array<std::uint8_t, N>& out) {
  if (b.size() == N) std::copy(b.begin(), b.end(), out.begin());
}

template <std::size_t N>
bool blob_equals(const Query& q, int column, const std::array<std::uint8_t, N>& a) {
  const Bytes b = q.column_blob(column);
  return b.size() == N && std::equal(b.begin(), b.end(), a.begin());
}

std::string card_ref(const Serial8& serial, std::uint32_t counter) {
  return to_hex(serial) + "#" + std::to_string(counter);
}

// The swipe is inserted before anything else about it is known to be a replay: the unique keys
// (card, counter) and (terminal, seq) then refuse it, and only that rare case costs a query.
constexpr const char* kInsertSwipe =
    "INSERT INTO swipes(settlement_date, terminal_id, batch_no, card_serial, card_counter, "
    "balance_before_fen, amount_fen, fare_full_fen, txn_type, txn_datetime, tac, terminal_seq, "
    "key_version, algorithm_id, operator_id, route, vehicle, device, driver, transfer_count, "
    "suspicious, suspicion, posting_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
    "?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23) ON CONFLICT DO NOTHING";

}  // namespace

Ingest::Ingest(Store& store, Ledger& ledger, Keys& keys, Issuance& issuance,
               const Calendar& calendar, IngestOptions options)
    : store_(store),
      ledger_(ledger),
      keys_(keys),
      issuance_(issuance),
      calendar_(calendar),
      options_(options) {}

Ingest::Verdict Ingest::verdict(Code code, std::string message) {
  Verdict v;
  v.code = code;
  v.message = std::move(message);
  return v;
}

IngestResult Ingest::refuse(const UploadBatch& batch, Code code, std::string message) {
  ++counters_.batches_refused;
  IngestResult r;
  r.code = code;
  r.message = std::move(message);
  r.ack.set_batch_no(batch.batch_no());
  return r;
}

IngestResult Ingest::ingest(const UploadBatch& batch) {
  using namespace citycard::wire;
  const auto n = static_cast<std::size_t>(batch.records_size());
  if (n > options_.max_batch_records) {
    return refuse(batch, REJECTED,
                  "batch of " + std::to_string(n) + " records is over the limit of " +
                      std::to_string(options_.max_batch_records));
  }
  Work w;
  Batch& b = w.b;
  b.batch_no = batch.batch_no();
  Mac4 mac{};
  if (!pw::to_terminal(batch.terminal_id(), b.terminal)) {
    return refuse(batch, MALFORMED, "batch terminal id must be 6 bytes");
  }
  if (!pw::to_mac(batch.batch_mac(), mac)) {
    return refuse(batch, MALFORMED, "batch MAC must be 4 bytes");
  }
  auto registration = issuance_.terminal(b.terminal);
  if (!registration.is_ok()) {
    const bool unknown = registration.status().code() == Errc::kNotFound;
    return refuse(batch, unknown ? UNKNOWN_TERMINAL : INTERNAL, registration.status().message());
  }
  b.registration = std::move(registration).value();
  auto key = keys_.terminal_batch_key(b.registration.key_version, b.terminal);
  if (!key.is_ok()) return refuse(batch, INTERNAL, key.status().message());
  if (!crypto::mac_equal(crypto::tdes_mac(*key, pw::batch_mac_input(batch)), mac)) {
    return refuse(batch, BAD_SIGNATURE,
                  "signature of batch " + std::to_string(b.batch_no) + " from terminal " +
                      to_hex(b.terminal) + " does not verify");
  }
  // The totals are covered by the signature; a terminal that signs totals its records do not
  // add up to is as untrustworthy as a bad signature.
  if (batch.record_count() != n) {
    return refuse(batch, BAD_SIGNATURE,
                  "batch says " + std::to_string(batch.record_count()) + " records but has " +
                      std::to_string(n));
  }
  std::int64_t total = 0;
  for (const SwipeRecord& r : batch.records()) {
    if (__builtin_add_overflow(total, r.amount_fen(), &total)) {
      return refuse(batch, BAD_SIGNATURE, "batch total overflows");
    }
  }
  if (total != batch.total_amount_fen()) {
    return refuse(batch, BAD_SIGNATURE,
                  "batch says " + std::to_string(batch.total_amount_fen()) +
                      " fen but its records add up to " + std::to_string(total));
  }

  auto txn = store_.begin();
  if (!txn.is_ok()) return refuse(batch, INTERNAL, txn.status().message());
  {
    auto q =
        store_.query("SELECT batch_mac, ack FROM batches WHERE terminal_id = ?1 AND batch_no = ?2");
    q.bind_blob(1, b.terminal).bind(2, as_sql(b.batch_no));
    auto row = q.step();
    if (!row.is_ok()) return refuse(batch, INTERNAL, row.status().message());
    if (*row) {
      if (!blob_equals(q, 0, mac)) {
        return refuse(batch, REJECTED,
                      "batch " + std::to_string(b.batch_no) + " of terminal " + to_hex(b.terminal) +
                          " was already processed with other content");
      }
      const Bytes stored = q.column_blob(1);
      IngestResult replay;
      if (!replay.ack.ParseFromArray(stored.data(), static_cast<int>(stored.size()))) {
        return refuse(batch, INTERNAL,
                      "stored ack of batch " + std::to_string(b.batch_no) + " does not parse");
      }
      replay.ack.set_batch_duplicate(true);
      ++counters_.batches_duplicate;
      return replay;  // the guard rolls back an empty transaction
    }
  }

  b.settlement_date = calendar_.today_yyyymmdd();
  if (Status s = store_
                     .query("INSERT INTO batches(terminal_id, batch_no, batch_mac, record_count, "
                            "total_amount_fen, settlement_date, processed_at_us) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                     .bind_blob(1, b.terminal)
                     .bind(2, as_sql(b.batch_no))
                     .bind_blob(3, mac)
                     .bind(4, std::int64_t{batch.record_count()})
                     .bind(5, batch.total_amount_fen())
                     .bind(6, std::int64_t{b.settlement_date})
                     .bind(7, calendar_.now_us())
                     .run();
      !s.is_ok()) {
    return refuse(batch, INTERNAL, s.message());
  }
  std::int64_t gaps_flagged = 0;
  if (options_.reorder_window_us > 0) {
    auto flagged = flag_expired_gaps();
    if (!flagged.is_ok()) return refuse(batch, INTERNAL, flagged.status().message());
    gaps_flagged = *flagged;
  }

  // The batch's money is posted before its records are stored, so each swipe row carries its
  // posting id as it is inserted. The posting is for the batch's signed total, on the bet that
  // every record is accepted; when some are not, that first pass is rolled back and the batch is
  // processed again with a posting of exactly what the first pass accepted. Processing is
  // deterministic (the rollback undoes everything it and the hook wrote), so the second pass
  // accepts the same records; if it did not, the batch is refused rather than mis-posted.
  IngestResult result;
  IngestCounters delta;
  const std::int64_t claimed = batch.total_amount_fen();
  bool settled = false;
  {
    auto attempt = store_.begin();
    if (!attempt.is_ok()) return refuse(batch, INTERNAL, attempt.status().message());
    auto pass = run_records(w, batch, claimed, result.ack, delta);
    if (!pass.is_ok()) return refuse(batch, INTERNAL, pass.message());
    if (delta.amount_accepted_fen == claimed) {
      if (Status s = attempt->commit(); !s.is_ok()) return refuse(batch, INTERNAL, s.message());
      settled = true;
    }
  }
  if (!settled) {
    const std::int64_t accepted = delta.amount_accepted_fen;
    w = Work{w.b};
    result.ack.Clear();
    delta = IngestCounters{};
    auto pass = run_records(w, batch, accepted, result.ack, delta);
    if (!pass.is_ok()) return refuse(batch, INTERNAL, pass.message());
    if (delta.amount_accepted_fen != accepted) {
      return refuse(batch, INTERNAL,
                    "batch " + std::to_string(b.batch_no) + " of terminal " + to_hex(b.terminal) +
                        " accepted " + std::to_string(accepted) + " fen, then " +
                        std::to_string(delta.amount_accepted_fen) + " on the second pass");
    }
  }
  UploadAck& ack = result.ack;
  ack.set_accepted(static_cast<std::uint32_t>(delta.records_accepted));
  ack.set_duplicates(static_cast<std::uint32_t>(delta.records_duplicate));
  ack.set_rejected(static_cast<std::uint32_t>(delta.records_rejected));

  const std::string ack_bytes = ack.SerializeAsString();
  if (Status s = store_
                     .query("UPDATE batches SET accepted = ?3, duplicates = ?4, rejected = ?5, "
                            "suspicious = ?6, ack = ?7 WHERE terminal_id = ?1 AND batch_no = ?2")
                     .bind_blob(1, b.terminal)
                     .bind(2, as_sql(b.batch_no))
                     .bind(3, static_cast<std::int64_t>(delta.records_accepted))
                     .bind(4, static_cast<std::int64_t>(delta.records_duplicate))
                     .bind(5, static_cast<std::int64_t>(delta.records_rejected))
                     .bind(6, static_cast<std::int64_t>(delta.records_suspicious))
                     .bind_blob(7, bytes_of(ack_bytes))
                     .run();
      !s.is_ok()) {
    return refuse(batch, INTERNAL, s.message());
  }
  // The group commit: one fsync for the whole batch. Only now is the ack a receipt.
  if (Status s = txn->commit(); !s.is_ok()) return refuse(batch, INTERNAL, s.message());

  ++counters_.batches_accepted;
  counters_.records_accepted += delta.records_accepted;
  counters_.records_duplicate += delta.records_duplicate;
  counters_.records_rejected += delta.records_rejected;
  counters_.records_suspicious += delta.records_suspicious;
  counters_.amount_accepted_fen += delta.amount_accepted_fen;
  counters_.records_suspicious += static_cast<std::uint64_t>(gaps_flagged);
  counters_.gaps_flagged += static_cast<std::uint64_t>(gaps_flagged);
  counters_.gaps_held += delta.gaps_held;
  counters_.gaps_closed += delta.gaps_closed;
  return result;
}

Result<Ingest::CardState*> Ingest::card_state(Work& w, const Serial8& serial) {
  const std::uint64_t k = serial_u64(serial);
  auto it = w.cards.find(k);
  if (it != w.cards.end()) return &it->second;
  auto card = issuance_.card(serial);
  if (!card.is_ok()) return card.status();
  CardState& s = w.cards[k];
  s.record = std::move(card).value();
  return &s;
}

Result<const crypto::MacKey*> Ingest::tac_key(std::uint8_t version, crypto::Algorithm alg,
                                              const Serial8& serial) {
  const TacKeyId id{serial_u64(serial),
                    static_cast<std::uint16_t>((version << 8) | static_cast<std::uint8_t>(alg))};
  auto it = tac_keys_.find(id);
  if (it != tac_keys_.end()) return &it->second;
  auto key = keys_.card_tac_mac_key(version, alg, serial);
  if (!key.is_ok()) return key.status();
  // Keys of a (version, algorithm, serial) never change, so the cache never goes stale; it
  // only has to stay bounded.
  if (tac_keys_.size() >= options_.tac_key_cache_max) tac_keys_.clear();
  return &tac_keys_.emplace(id, std::move(key).value()).first->second;
}

Result<Ingest::Verdict> Ingest::process_record(Work& w, const SwipeRecord& r) {
  using namespace citycard::wire;
  const Batch& b = w.b;
  // Shape: every fixed-length field and every range a card imposes.
  Accepted a;
  a.record = &r;
  if (!pw::to_serial(r.card_serial(), a.serial)) {
    return verdict(MALFORMED, "card serial must be 8 bytes");
  }
  if (!pw::to_terminal(r.terminal_id(), a.terminal)) {
    return verdict(MALFORMED, "terminal id must be 6 bytes");
  }
  if (!pw::to_datetime(r.datetime(), a.datetime) || !Calendar::valid_datetime(a.datetime)) {
    return verdict(MALFORMED, "date-time must be 7 bytes of BCD YYYYMMDDhhmmss");
  }
  if (!pw::to_mac(r.tac(), a.tac)) return verdict(MALFORMED, "TAC must be 4 bytes");
  if (r.amount_fen() < 0 || r.amount_fen() > kMaxPurseFen) {
    return verdict(MALFORMED, "amount " + std::to_string(r.amount_fen()) + " fen out of range");
  }
  if (r.balance_before_fen() < 0 || r.balance_before_fen() > kMaxPurseFen) {
    return verdict(MALFORMED, "balance before " + std::to_string(r.balance_before_fen()) +
                                  " fen out of range");
  }
  if (r.card_counter() > kMaxCounter) {
    return verdict(MALFORMED,
                   "card counter " + std::to_string(r.card_counter()) + " does not fit 2 bytes");
  }
  if (r.txn_type() != protocol::txn::kPurchase && r.txn_type() != protocol::txn::kCappPurchase) {
    return verdict(MALFORMED, "transaction type " + std::to_string(r.txn_type()) +
                                  " is not a purchase (06 or 09)");
  }
  if (r.key_version() > 0xFF) return verdict(MALFORMED, "key version does not fit a byte");
  const auto alg = r.algorithm_id() <= 0xFF
                       ? crypto::algorithm_from_id(static_cast<std::uint8_t>(r.algorithm_id()))
                       : std::nullopt;
  if (!alg) {
    return verdict(MALFORMED, "unknown algorithm id " + std::to_string(r.algorithm_id()));
  }
  const std::size_t max_text = options_.max_text_field_bytes;
  if (r.operator_id().size() > max_text || r.route().size() > max_text ||
      r.vehicle().size() > max_text || r.device().size() > max_text ||
      r.driver().size() > max_text) {
    return verdict(MALFORMED, "a text field is over " + std::to_string(max_text) + " bytes");
  }
  a.counter = static_cast<std::uint16_t>(r.card_counter());
  a.type = static_cast<std::uint8_t>(r.txn_type());
  a.key_version = static_cast<std::uint8_t>(r.key_version());
  a.algorithm = *alg;
  if (a.terminal != b.terminal) {
    return verdict(REJECTED, "record " + card_ref(a.serial, a.counter) + " was made by terminal " +
                                 to_hex(a.terminal) + ", the batch comes from " +
                                 to_hex(b.terminal));
  }

  // Authenticity: the card's own TAC.
  auto state = card_state(w, a.serial);
  if (!state.is_ok()) {
    if (state.status().code() == Errc::kNotFound) {
      return verdict(UNKNOWN_CARD, "card " + to_hex(a.serial) + " was never issued");
    }
    return state.status();
  }
  CardState& cs = **state;
  const CardRecord& card = cs.record;
  if (a.algorithm != card.algorithm) {
    return verdict(REJECTED, "record " + card_ref(a.serial, a.counter) + " claims algorithm " +
                                 std::to_string(r.algorithm_id()) + ", the card uses " +
                                 std::to_string(static_cast<int>(card.algorithm)));
  }
  auto key = tac_key(a.key_version, a.algorithm, a.serial);
  if (!key.is_ok()) {
    return verdict(REJECTED,
                   "record " + card_ref(a.serial, a.counter) + ": " + key.status().message());
  }
  const auto amount = static_cast<std::uint32_t>(r.amount_fen());
  const Mac4 expected =
      crypto::purchase_tac(**key, amount, a.type, a.terminal, r.terminal_seq(), a.datetime);
  if (!crypto::mac_equal(expected, a.tac)) {
    return verdict(BAD_TAC, "TAC of " + card_ref(a.serial, a.counter) + " does not verify");
  }

  // Consistency: accepted, but an operator should look.
  std::vector<std::string> reasons;
  const std::uint32_t expected_counter =
      card.last_counter ? std::uint32_t{*card.last_counter} + 1 : options_.first_card_counter;
  const bool window = options_.reorder_window_us > 0;
  bool holds_gap = false;  // this record arrived after a gap the window holds open
  bool fills_gap = false;  // this record is a counter such a gap was waiting for
  if (a.counter > expected_counter) {
    if (window && a.counter - expected_counter <= options_.reorder_gap_max) {
      holds_gap = true;
    } else {
      reasons.push_back("counter gap: expected " + std::to_string(expected_counter) + ", got " +
                        std::to_string(a.counter));
    }
  } else if (a.counter < expected_counter) {
    if (window) {
      auto q =
          store_.query("SELECT 1 FROM counter_gaps WHERE card_serial = ?1 AND card_counter = ?2");
      q.bind_blob(1, a.serial).bind(2, std::int64_t{a.counter});
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      fills_gap = *row;
    }
    if (!fills_gap) {
      reasons.push_back("counter went back: expected " + std::to_string(expected_counter) +
                        ", got " + std::to_string(a.counter) + " (late record)");
    }
  }
  // The card's running belief misses the taps of a held gap: chain with the stored neighbours.
  bool behind_open_gap = false;
  if (window && !fills_gap && !holds_gap && a.counter == expected_counter) {
    auto q = store_.query("SELECT 1 FROM counter_gaps WHERE card_serial = ?1 LIMIT 1");
    q.bind_blob(1, a.serial);
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    behind_open_gap = *row;
  }
  if (fills_gap || behind_open_gap) {
    // The running belief already includes later taps: check the chain against the neighbours
    // that are stored (the one before must leave this balance, the one after must start from
    // what this one left).
    auto neighbour = [&](std::int64_t counter) -> Result<std::optional<std::int64_t>> {
      if (counter < 0 || counter > kMaxCounter) return std::optional<std::int64_t>{};
      auto q = store_.query(
          "SELECT balance_before_fen - amount_fen, balance_before_fen FROM swipes "
          "WHERE card_serial = ?1 AND card_counter = ?2");
      q.bind_blob(1, a.serial).bind(2, counter);
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) return std::optional<std::int64_t>{};
      return std::optional<std::int64_t>{counter < a.counter ? q.column_int64(0)
                                                             : q.column_int64(1)};
    };
    auto before = neighbour(std::int64_t{a.counter} - 1);
    if (!before.is_ok()) return before.status();
    if (*before && **before != r.balance_before_fen()) {
      reasons.push_back("balance chain broken: card had " + std::to_string(r.balance_before_fen()) +
                        " fen before, counter " + std::to_string(a.counter - 1) + " left " +
                        std::to_string(**before));
    }
    auto after = neighbour(std::int64_t{a.counter} + 1);
    if (!after.is_ok()) return after.status();
    if (*after && **after != r.balance_before_fen() - r.amount_fen()) {
      reasons.push_back("balance chain broken: card left " +
                        std::to_string(r.balance_before_fen() - r.amount_fen()) + " fen, counter " +
                        std::to_string(a.counter + 1) + " started from " + std::to_string(**after));
    }
  } else if (!holds_gap && r.balance_before_fen() != card.balance_fen) {
    // (A record after a held gap is checked when the missing ones arrive, against it.)
    reasons.push_back("balance chain broken: card had " + std::to_string(r.balance_before_fen()) +
                      " fen before, backend believed " + std::to_string(card.balance_fen));
  }
  if (card.status != CardStatus::kActive) {
    reasons.push_back(std::string("card is ") + card_status_name(card.status));
  }
  const int day = Calendar::yyyymmdd(a.datetime);
  if (day < card.valid_from_yyyymmdd || day > card.valid_to_yyyymmdd) {
    reasons.push_back("made on " + std::to_string(day) + ", outside the card's validity");
  }
  const TerminalRecord& reg = b.registration;
  if (!r.operator_id().empty() && r.operator_id() != reg.operator_id) {
    reasons.push_back("record names operator " + r.operator_id() + ", terminal is registered to " +
                      reg.operator_id);
  }
  auto suspicion_of = [](const std::vector<std::string>& why) {
    std::string out;
    for (const std::string& reason : why) {
      if (!out.empty()) out += "; ";
      out += reason;
    }
    return out;
  };
  std::string suspicion = suspicion_of(reasons);

  // Stored now; a replay is refused by the unique keys and classified by classify_replay().
  bool inserted = false;
  {
    auto insert = store_.query(kInsertSwipe);
    // Bound in place, without copies: `a`, the record, the registration and `suspicion` all
    // outlive `insert`.
    insert.bind(1, std::int64_t{b.settlement_date})
        .bind_blob_view(2, a.terminal)
        .bind(3, as_sql(b.batch_no))
        .bind_blob_view(4, a.serial)
        .bind(5, std::int64_t{a.counter})
        .bind(6, r.balance_before_fen())
        .bind(7, r.amount_fen())
        .bind(8, r.fare_full_fen())
        .bind(9, std::int64_t{a.type})
        .bind_blob_view(10, a.datetime)
        .bind_blob_view(11, a.tac)
        .bind(12, std::int64_t{r.terminal_seq()})
        .bind(13, std::int64_t{a.key_version})
        .bind(14, static_cast<std::int64_t>(a.algorithm))
        .bind_view(15, reg.operator_id)
        .bind_view(16, r.route().empty() ? reg.route : r.route())
        .bind_view(17, r.vehicle().empty() ? reg.vehicle : r.vehicle())
        .bind_view(18, r.device().empty() ? reg.device_id : r.device())
        .bind_view(19, r.driver())
        .bind(20, std::int64_t{r.transfer_count()})
        .bind(21, std::int64_t{reasons.empty() ? 0 : 1})
        .bind_view(22, suspicion);
    if (r.amount_fen() != 0 && w.posting_id) {
      insert.bind(23, *w.posting_id);
    } else {
      insert.bind_null(23);  // a zero fare moves nothing
    }
    if (Status s = insert.run(); !s.is_ok()) return s;
    inserted = store_.changes() != 0;
  }
  if (!inserted) return classify_replay(a);
  const std::int64_t swipe_id = store_.last_insert_rowid();

  // The money side's rules see what passed ingest's own checks, before the money moves.
  std::optional<SwipeFacts> facts;
  if (hook_ != nullptr) {
    facts.emplace(SwipeFacts{card, reg, r.amount_fen(), r.fare_full_fen(), a.datetime, a.counter,
                             card_ref(a.serial, a.counter)});
    auto check = hook_->check_swipe(*facts);
    if (!check.is_ok()) return check.status();
    if (check->reject) {
      if (Status s = store_.query("DELETE FROM swipes WHERE id = ?1").bind(1, swipe_id).run();
          !s.is_ok()) {
        return s;
      }
      return verdict(REJECTED, "record " + facts->ref + ": " + check->reject_reason);
    }
    if (!check->reasons.empty()) {
      reasons.insert(reasons.end(), check->reasons.begin(), check->reasons.end());
      suspicion = suspicion_of(reasons);
      if (Status s = store_.query("UPDATE swipes SET suspicious = 1, suspicion = ?2 WHERE id = ?1")
                         .bind(1, swipe_id)
                         .bind(2, suspicion)
                         .run();
          !s.is_ok()) {
        return s;
      }
    }
  }

  if (holds_gap) {
    const std::int64_t deadline = calendar_.now_us() + options_.reorder_window_us;
    for (std::uint32_t c = expected_counter; c < a.counter; ++c) {
      if (Status s = store_
                         .query("INSERT OR IGNORE INTO counter_gaps(card_serial, card_counter, "
                                "swipe_id, deadline_us) VALUES (?1, ?2, ?3, ?4)")
                         .bind_blob(1, a.serial)
                         .bind(2, std::int64_t{c})
                         .bind(3, swipe_id)
                         .bind(4, deadline)
                         .run();
          !s.is_ok()) {
        return s;
      }
      w.delta->gaps_held += store_.changes();
    }
  } else if (fills_gap) {
    if (Status s =
            store_.query("DELETE FROM counter_gaps WHERE card_serial = ?1 AND card_counter = ?2")
                .bind_blob(1, a.serial)
                .bind(2, std::int64_t{a.counter})
                .run();
        !s.is_ok()) {
      return s;
    }
    ++w.delta->gaps_closed;
  }
  if (hook_ != nullptr) {
    if (Status s = hook_->swipe_accepted(*facts, swipe_id); !s.is_ok()) return s;
  }
  // What the backend believes from now on, for the batch's later records of this card.
  cs.record.balance_fen -= r.amount_fen();
  if (!cs.record.last_counter || *cs.record.last_counter < a.counter) {
    cs.record.last_counter = a.counter;
  }
  cs.spent_fen += r.amount_fen();
  if (!cs.max_counter || *cs.max_counter < a.counter) cs.max_counter = a.counter;

  Verdict v;
  v.amount_fen = r.amount_fen();
  if (!reasons.empty()) {
    v.code = SUSPICIOUS;
    v.message = "record " + card_ref(a.serial, a.counter) + ": " + suspicion;
  }
  return v;
}

// The same card transaction, or the same PSAM sequence, is already in swipes (from an earlier
// batch or from this one). The TAC does not cover the card counter, so both keys matter.
Result<Ingest::Verdict> Ingest::classify_replay(const Accepted& a) {
  using namespace citycard::wire;
  const std::string ref = card_ref(a.serial, a.counter);
  const std::uint32_t seq = a.record->terminal_seq();
  {
    auto q = store_.query(
        "SELECT tac, terminal_id, terminal_seq FROM swipes "
        "WHERE card_serial = ?1 AND card_counter = ?2");
    q.bind_blob(1, a.serial).bind(2, std::int64_t{a.counter});
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (*row) {
      const bool same = blob_equals(q, 0, a.tac) && blob_equals(q, 1, a.terminal) &&
                        q.column_int64(2) == std::int64_t{seq};
      if (same) return verdict(DUPLICATE, "record " + ref + " was already cleared");
      return verdict(REJECTED, "counter of " + ref +
                                   " was already cleared with another transaction (cloned card?)");
    }
  }
  auto q = store_.query(
      "SELECT tac, card_serial, card_counter FROM swipes "
      "WHERE terminal_id = ?1 AND terminal_seq = ?2");
  q.bind_blob(1, a.terminal).bind(2, std::int64_t{seq});
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return Status(Errc::kInternal, "swipe " + ref + " conflicted with no stored swipe");
  const std::string seq_ref = to_hex(a.terminal) + " seq " + std::to_string(seq);
  if (blob_equals(q, 0, a.tac) && blob_equals(q, 1, a.serial)) {
    return verdict(DUPLICATE, "terminal " + seq_ref + " was already cleared as counter " +
                                  std::to_string(q.column_int64(2)));
  }
  return verdict(REJECTED, "terminal " + seq_ref + " was already cleared for another transaction");
}

Status Ingest::run_records(Work& w, const UploadBatch& batch, std::int64_t post_fen, UploadAck& ack,
                           IngestCounters& delta) {
  using namespace citycard::wire;
  const Batch& b = w.b;
  w.delta = &delta;
  ack.set_batch_no(b.batch_no);
  if (post_fen > 0) {
    auto posted = ledger_.post({"swipes",
                                "batch " + to_hex(b.terminal) + "#" + std::to_string(b.batch_no),
                                {{std::string(account::kCardFloat), post_fen},
                                 {account::payable(b.registration.operator_id), -post_fen}}});
    if (!posted.is_ok()) return posted.status();
    w.posting_id = *posted;
  }
  const auto n = static_cast<std::uint32_t>(batch.records_size());
  for (std::uint32_t i = 0; i < n; ++i) {
    const SwipeRecord& r = batch.records(static_cast<int>(i));
    auto v = process_record(w, r);
    if (!v.is_ok()) return v.status();
    switch (v->code) {
      case OK:
        ++delta.records_accepted;
        delta.amount_accepted_fen += v->amount_fen;
        continue;  // plainly accepted: not a problem
      case SUSPICIOUS:
        ++delta.records_accepted;
        ++delta.records_suspicious;
        delta.amount_accepted_fen += v->amount_fen;
        break;
      case DUPLICATE:
        ++delta.records_duplicate;
        break;
      default:
        ++delta.records_rejected;
        if (Status s = store_rejected(b, r, i, *v); !s.is_ok()) return s;
        break;
    }
    RecordResult* p = ack.add_problems();
    p->set_index(i);
    p->set_code(v->code);
    p->set_message(v->message);
  }
  // Each card touched is written once.
  for (const auto& [_, cs] : w.cards) {
    if (!cs.max_counter) continue;
    if (Status s = store_
                       .query("UPDATE cards SET balance_fen = balance_fen - ?2, "
                              "last_counter = max(coalesce(last_counter, -1), ?3) "
                              "WHERE serial = ?1")
                       .bind_blob_view(1, cs.record.serial)
                       .bind(2, cs.spent_fen)
                       .bind(3, std::int64_t{*cs.max_counter})
                       .run();
        !s.is_ok()) {
      return s;
    }
  }
  return Status::ok();
}

Status Ingest::store_rejected(const Batch& b, const SwipeRecord& r, std::uint32_t index,
                              const Verdict& v) {
  return store_
      .query(
          "INSERT INTO rejected_records(terminal_id, batch_no, record_index, code, code_name, "
          "message, card_serial, record, at_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
      .bind_blob(1, b.terminal)
      .bind(2, as_sql(b.batch_no))
      .bind(3, std::int64_t{index})
      .bind(4, std::int64_t{v.code})
      .bind(5, citycard::wire::Code_Name(v.code))
      .bind(6, v.message)
      .bind_blob(7, bytes_of(r.card_serial()))
      .bind_blob(8, bytes_of(r.SerializeAsString()))
      .bind(9, calendar_.now_us())
      .run();
}

Result<std::optional<SwipeRow>> Ingest::find_swipe(const Serial8& card,
                                                   std::uint16_t counter) const {
  auto q = store_.query(
      "SELECT settlement_date, terminal_id, batch_no, card_serial, card_counter, "
      "balance_before_fen, amount_fen, fare_full_fen, txn_type, txn_datetime, tac, terminal_seq, "
      "key_version, algorithm_id, operator_id, route, vehicle, device, driver, transfer_count, "
      "suspicious, suspicion, reconciled FROM swipes WHERE card_serial = ?1 AND card_counter = ?2");
  q.bind_blob(1, card).bind(2, std::int64_t{counter});
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return std::optional<SwipeRow>();
  SwipeRow s;
  s.settlement_date_yyyymmdd = static_cast<int>(q.column_int64(0));
  copy_blob(q.column_blob(1), s.terminal_id);
  s.batch_no = static_cast<std::uint64_t>(q.column_int64(2));
  copy_blob(q.column_blob(3), s.card_serial);
  s.card_counter = static_cast<std::uint16_t>(q.column_int64(4));
  s.balance_before_fen = q.column_int64(5);
  s.amount_fen = q.column_int64(6);
  s.fare_full_fen = q.column_int64(7);
  s.txn_type = static_cast<std::uint8_t>(q.column_int64(8));
  copy_blob(q.column_blob(9), s.datetime);
  copy_blob(q.column_blob(10), s.tac);
  s.terminal_seq = static_cast<std::uint32_t>(q.column_int64(11));
  s.key_version = static_cast<std::uint8_t>(q.column_int64(12));
  s.algorithm_id = static_cast<std::uint8_t>(q.column_int64(13));
  s.operator_id = q.column_text(14);
  s.route = q.column_text(15);
  s.vehicle = q.column_text(16);
  s.device = q.column_text(17);
  s.driver = q.column_text(18);
  s.transfer_count = static_cast<std::uint32_t>(q.column_int64(19));
  s.suspicious = q.column_int64(20) != 0;
  s.suspicion = q.column_text(21);
  s.reconciled = q.column_int64(22) != 0;
  return std::optional<SwipeRow>(std::move(s));
}

namespace {
Result<std::int64_t> count(Store& store, const char* sql) {
  auto q = store.query(sql);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  return q.column_int64(0);
}
}  // namespace

Result<std::int64_t> Ingest::swipe_count() const {
  return count(store_, "SELECT count(*) FROM swipes");
}
Result<std::int64_t> Ingest::open_gap_count() const {
  return count(store_, "SELECT count(*) FROM counter_gaps");
}

Result<std::int64_t> Ingest::flag_expired_gaps() {
  const std::int64_t now = calendar_.now_us();
  std::vector<std::pair<std::int64_t, std::int64_t>> expired;  // (swipe id, missing counter)
  {
    auto q = store_.query(
        "SELECT swipe_id, card_counter FROM counter_gaps WHERE deadline_us <= ?1 "
        "ORDER BY swipe_id, card_counter");
    q.bind(1, now);
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      expired.emplace_back(q.column_int64(0), q.column_int64(1));
    }
  }
  if (expired.empty()) return std::int64_t{0};
  for (const auto& [swipe_id, counter] : expired) {
    const std::string reason = "counter gap: counter " + std::to_string(counter) +
                               " never arrived within the reorder window";
    if (Status s = store_
                       .query("UPDATE swipes SET suspicious = 1, suspicion = CASE WHEN suspicion = "
                              "'' THEN ?2 ELSE suspicion || '; ' || ?2 END WHERE id = ?1")
                       .bind(1, swipe_id)
                       .bind(2, reason)
                       .run();
        !s.is_ok()) {
      return s;
    }
  }
  if (Status s =
          store_.query("DELETE FROM counter_gaps WHERE deadline_us <= ?1").bind(1, now).run();
      !s.is_ok()) {
    return s;
  }
  return static_cast<std::int64_t>(expired.size());
}

Result<std::int64_t> Ingest::flag_persistent_gaps() {
  auto txn = store_.begin();
  if (!txn.is_ok()) return txn.status();
  auto flagged = flag_expired_gaps();
  if (!flagged.is_ok()) return flagged.status();
  if (Status s = txn->commit(); !s.is_ok()) return s;
  counters_.gaps_flagged += static_cast<std::uint64_t>(*flagged);
  counters_.records_suspicious += static_cast<std::uint64_t>(*flagged);
  return flagged;
}

Result<std::int64_t> Ingest::suspicious_count() const {
  return count(store_, "SELECT count(*) FROM swipes WHERE suspicious <> 0");
}
Result<std::int64_t> Ingest::rejected_record_count() const {
  return count(store_, "SELECT count(*) FROM rejected_records");
}
Result<std::int64_t> Ingest::batch_count() const {
  return count(store_, "SELECT count(*) FROM batches");
}

Result<std::optional<UploadAck>> Ingest::stored_ack(const TerminalId& terminal,
                                                    std::uint64_t batch_no) const {
  auto q = store_.query("SELECT ack FROM batches WHERE terminal_id = ?1 AND batch_no = ?2");
  q.bind_blob(1, terminal).bind(2, as_sql(batch_no));
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return std::optional<UploadAck>();
  const Bytes b = q.column_blob(0);
  UploadAck ack;
  if (!ack.ParseFromArray(b.data(), static_cast<int>(b.size()))) {
    return Status(Errc::kInternal, "stored ack does not parse");
  }
  return std::optional<UploadAck>(std::move(ack));
}

}  // namespace citycard::backend
