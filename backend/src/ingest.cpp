#include "citycard/backend/ingest.h"

#include <algorithm>
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

template <std::size_t N>
void copy_blob(const Bytes& b, std::array<std::uint8_t, N>& out) {
  if (b.size() == N) std::copy(b.begin(), b.end(), out.begin());
}

std::string card_ref(const Serial8& serial, std::uint32_t counter) {
  return to_hex(serial) + "#" + std::to_string(counter);
}

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
  Batch b;
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
      if (q.column_blob(0) != Bytes(mac.begin(), mac.end())) {
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

  IngestResult result;
  UploadAck& ack = result.ack;
  ack.set_batch_no(b.batch_no);
  IngestCounters delta;
  for (std::uint32_t i = 0; i < n; ++i) {
    const SwipeRecord& r = batch.records(static_cast<int>(i));
    auto v = process_record(b, r);
    if (!v.is_ok()) return refuse(batch, INTERNAL, v.status().message());
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
        if (Status s = store_rejected(b, r, i, *v); !s.is_ok()) {
          return refuse(batch, INTERNAL, s.message());
        }
        break;
    }
    RecordResult* p = ack.add_problems();
    p->set_index(i);
    p->set_code(v->code);
    p->set_message(v->message);
  }
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
  return result;
}

Result<Ingest::Verdict> Ingest::process_record(const Batch& b, const SwipeRecord& r) {
  using namespace citycard::wire;
  // Shape: every fixed-length field and every range a card imposes.
  Serial8 serial{};
  TerminalId terminal{};
  DateTime7 datetime{};
  Mac4 tac{};
  if (!pw::to_serial(r.card_serial(), serial)) {
    return verdict(MALFORMED, "card serial must be 8 bytes");
  }
  if (!pw::to_terminal(r.terminal_id(), terminal)) {
    return verdict(MALFORMED, "terminal id must be 6 bytes");
  }
  if (!pw::to_datetime(r.datetime(), datetime) || !Calendar::valid_datetime(datetime)) {
    return verdict(MALFORMED, "date-time must be 7 bytes of BCD YYYYMMDDhhmmss");
  }
  if (!pw::to_mac(r.tac(), tac)) return verdict(MALFORMED, "TAC must be 4 bytes");
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
  const auto counter = static_cast<std::uint16_t>(r.card_counter());
  const std::string ref = card_ref(serial, counter);
  if (terminal != b.terminal) {
    return verdict(REJECTED, "record " + ref + " was made by terminal " + to_hex(terminal) +
                                 ", the batch comes from " + to_hex(b.terminal));
  }

  // Authenticity: the card's own TAC.
  auto card = issuance_.card(serial);
  if (!card.is_ok()) {
    if (card.status().code() == Errc::kNotFound) {
      return verdict(UNKNOWN_CARD, "card " + to_hex(serial) + " was never issued");
    }
    return card.status();
  }
  if (*alg != card->algorithm) {
    return verdict(REJECTED, "record " + ref + " claims algorithm " +
                                 std::to_string(r.algorithm_id()) + ", the card uses " +
                                 std::to_string(static_cast<int>(card->algorithm)));
  }
  const auto key_version = static_cast<std::uint8_t>(r.key_version());
  auto dtk = keys_.card_tac_key(key_version, *alg, serial);
  if (!dtk.is_ok()) {
    return verdict(REJECTED, "record " + ref + ": " + dtk.status().message());
  }
  const auto amount = static_cast<std::uint32_t>(r.amount_fen());
  const auto type = static_cast<std::uint8_t>(r.txn_type());
  const Mac4 expected = crypto::purchase_tac(crypto::tac_key(*alg, *dtk), amount, type, terminal,
                                             r.terminal_seq(), datetime);
  if (!crypto::mac_equal(expected, tac)) {
    return verdict(BAD_TAC, "TAC of " + ref + " does not verify");
  }

  // Replays: the same card transaction, or the same PSAM sequence. The TAC does not cover
  // the card counter, so both keys are needed.
  {
    auto q = store_.query(
        "SELECT tac, terminal_id, terminal_seq FROM swipes "
        "WHERE card_serial = ?1 AND card_counter = ?2");
    q.bind_blob(1, serial).bind(2, std::int64_t{counter});
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (*row) {
      const bool same = q.column_blob(0) == Bytes(tac.begin(), tac.end()) &&
                        q.column_blob(1) == Bytes(terminal.begin(), terminal.end()) &&
                        q.column_int64(2) == std::int64_t{r.terminal_seq()};
      if (same) return verdict(DUPLICATE, "record " + ref + " was already cleared");
      return verdict(REJECTED, "counter of " + ref +
                                   " was already cleared with another transaction (cloned card?)");
    }
  }
  {
    auto q = store_.query(
        "SELECT tac, card_serial, card_counter FROM swipes "
        "WHERE terminal_id = ?1 AND terminal_seq = ?2");
    q.bind_blob(1, terminal).bind(2, std::int64_t{r.terminal_seq()});
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (*row) {
      const std::string seq_ref = to_hex(terminal) + " seq " + std::to_string(r.terminal_seq());
      if (q.column_blob(0) == Bytes(tac.begin(), tac.end()) &&
          q.column_blob(1) == Bytes(serial.begin(), serial.end())) {
        return verdict(DUPLICATE, "terminal " + seq_ref + " was already cleared as counter " +
                                      std::to_string(q.column_int64(2)));
      }
      return verdict(REJECTED,
                     "terminal " + seq_ref + " was already cleared for another transaction");
    }
  }

  // Consistency: accepted, but an operator should look.
  std::vector<std::string> reasons;
  const std::uint32_t expected_counter =
      card->last_counter ? std::uint32_t{*card->last_counter} + 1 : options_.first_card_counter;
  if (counter > expected_counter) {
    reasons.push_back("counter gap: expected " + std::to_string(expected_counter) + ", got " +
                      std::to_string(counter));
  } else if (counter < expected_counter) {
    reasons.push_back("counter went back: expected " + std::to_string(expected_counter) + ", got " +
                      std::to_string(counter) + " (late record)");
  }
  if (r.balance_before_fen() != card->balance_fen) {
    reasons.push_back("balance chain broken: card had " + std::to_string(r.balance_before_fen()) +
                      " fen before, backend believed " + std::to_string(card->balance_fen));
  }
  if (card->status != CardStatus::kActive) {
    reasons.push_back(std::string("card is ") + card_status_name(card->status));
  }
  const int day = Calendar::yyyymmdd(datetime);
  if (day < card->valid_from_yyyymmdd || day > card->valid_to_yyyymmdd) {
    reasons.push_back("made on " + std::to_string(day) + ", outside the card's validity");
  }
  const TerminalRecord& reg = b.registration;
  if (!r.operator_id().empty() && r.operator_id() != reg.operator_id) {
    reasons.push_back("record names operator " + r.operator_id() + ", terminal is registered to " +
                      reg.operator_id);
  }
  std::string suspicion;
  for (const std::string& reason : reasons) {
    if (!suspicion.empty()) suspicion += "; ";
    suspicion += reason;
  }

  // Money: Dr card_float / Cr payable:<operator>. A zero fare moves nothing and posts nothing.
  std::optional<std::int64_t> posting_id;
  if (r.amount_fen() > 0) {
    auto posted = ledger_.post({"swipe",
                                "swipe " + ref,
                                {{std::string(account::kCardFloat), r.amount_fen()},
                                 {account::payable(reg.operator_id), -r.amount_fen()}}});
    if (!posted.is_ok()) return posted.status();
    posting_id = *posted;
  }
  auto insert = store_.query(
      "INSERT INTO swipes(settlement_date, terminal_id, batch_no, card_serial, card_counter, "
      "balance_before_fen, amount_fen, fare_full_fen, txn_type, txn_datetime, tac, terminal_seq, "
      "key_version, algorithm_id, operator_id, route, vehicle, device, driver, transfer_count, "
      "suspicious, suspicion, posting_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
      "?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)");
  insert.bind(1, std::int64_t{b.settlement_date})
      .bind_blob(2, terminal)
      .bind(3, as_sql(b.batch_no))
      .bind_blob(4, serial)
      .bind(5, std::int64_t{counter})
      .bind(6, r.balance_before_fen())
      .bind(7, r.amount_fen())
      .bind(8, r.fare_full_fen())
      .bind(9, std::int64_t{type})
      .bind_blob(10, datetime)
      .bind_blob(11, tac)
      .bind(12, std::int64_t{r.terminal_seq()})
      .bind(13, std::int64_t{key_version})
      .bind(14, static_cast<std::int64_t>(*alg))
      .bind(15, reg.operator_id)
      .bind(16, r.route().empty() ? reg.route : r.route())
      .bind(17, r.vehicle().empty() ? reg.vehicle : r.vehicle())
      .bind(18, r.device().empty() ? reg.device_id : r.device())
      .bind(19, r.driver())
      .bind(20, std::int64_t{r.transfer_count()})
      .bind(21, std::int64_t{reasons.empty() ? 0 : 1})
      .bind(22, suspicion);
  if (posting_id) {
    insert.bind(23, *posting_id);
  } else {
    insert.bind_null(23);
  }
  if (Status s = insert.run(); !s.is_ok()) return s;
  if (Status s = store_
                     .query("UPDATE cards SET balance_fen = balance_fen - ?2, "
                            "last_counter = max(coalesce(last_counter, -1), ?3) WHERE serial = ?1")
                     .bind_blob(1, serial)
                     .bind(2, r.amount_fen())
                     .bind(3, std::int64_t{counter})
                     .run();
      !s.is_ok()) {
    return s;
  }

  Verdict v;
  v.amount_fen = r.amount_fen();
  if (!reasons.empty()) {
    v.code = SUSPICIOUS;
    v.message = "record " + ref + ": " + suspicion;
  }
  return v;
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
