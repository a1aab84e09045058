#include "citycard/backend/issuance.h"

#include <cstdio>
#include <cstdlib>

#include "citycard/protocol/check.h"

namespace citycard::backend {

namespace crypto = protocol::crypto;
using protocol::Serial8;
using protocol::TerminalId;

namespace {

constexpr const char* kNextCardSeq = "next_card_seq";
constexpr const char* kNextTerminalSeq = "next_terminal_seq";
constexpr std::uint64_t kMaxCardSeq = 999'999'999'999;  // 12 digits after the city code
constexpr std::uint64_t kMaxTerminalSeq = 99'999'999;   // 8 digits after the city code
constexpr int kMaxTerminalIdTries = 1'000;  // ids registered by hand may sit in the sequence

bool all_digits(const std::string& s) {
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Digits to packed BCD, two per byte; `digits` has exactly 2 * N digits.
template <std::size_t N>
std::array<std::uint8_t, N> bcd_pack(const std::string& digits) {
  CITYCARD_CHECK(digits.size() == 2 * N, "BCD digit count");
  std::array<std::uint8_t, N> out{};
  for (std::size_t i = 0; i < N; ++i) {
    out[i] = static_cast<std::uint8_t>(((digits[2 * i] - '0') << 4) | (digits[2 * i + 1] - '0'));
  }
  return out;
}

std::string zero_pad(std::uint64_t n, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*llu", width, static_cast<unsigned long long>(n));
  return buf;
}

int unbcd(std::uint8_t b) {
  return (b >> 4) * 10 + (b & 0x0f);
}

bool valid_date(const std::array<std::uint8_t, 4>& d) {
  for (std::uint8_t b : d) {
    if ((b >> 4) > 9 || (b & 0x0f) > 9) return false;
  }
  const int m = unbcd(d[2]), day = unbcd(d[3]);
  return m >= 1 && m <= 12 && day >= 1 && day <= 31;
}

int date_yyyymmdd(const std::array<std::uint8_t, 4>& d) {
  return (unbcd(d[0]) * 100 + unbcd(d[1])) * 10'000 + unbcd(d[2]) * 100 + unbcd(d[3]);
}

std::array<std::uint8_t, 4> date_from_yyyymmdd(int v) {
  return protocol::date_bcd(v / 10'000, v / 100 % 100, v % 100);
}

bool leap(int y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int add_years(int yyyymmdd, int years) {
  int y = yyyymmdd / 10'000 + years;
  const int md = yyyymmdd % 10'000;
  return y * 10'000 + (md == 229 && !leap(y) ? 228 : md);
}

Status check_text(const char* what, const std::string& s, std::size_t max_bytes, bool required) {
  if (required && s.empty()) return Status(Errc::kInvalidArgument, std::string(what) + " is empty");
  if (s.size() > max_bytes) {
    return Status(Errc::kInvalidArgument,
                  std::string(what) + " is over " + std::to_string(max_bytes) + " bytes");
  }
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return Status(Errc::kInvalidArgument, std::string(what) + " has a control character");
    }
  }
  return Status::ok();
}

// First 8 bytes of file 0x15, the PSAM's diversification data (STANDARDS.md). CJ/T 166: city
// code then FF 00... JT/T 978: issuer(4) city(2) industry(2); the codes are not public, so our
// reading is issuer = BCD city ‖ 0000, city = BCD city, industry = 0001.
std::array<std::uint8_t, 8> issuer_data(protocol::Family family, const std::string& city) {
  const auto c = bcd_pack<2>(city);
  if (family == protocol::Family::kCjt166) return {c[0], c[1], 0xFF, 0, 0, 0, 0, 0};
  return {c[0], c[1], 0x00, 0x00, c[0], c[1], 0x00, 0x01};
}

CardRecord card_from_row(const Query& q) {
  CardRecord c;
  const ByteView serial = q.column_blob_view(0);
  if (serial.size() == c.serial.size()) std::copy(serial.begin(), serial.end(), c.serial.begin());
  c.card_number = q.column_text(1);
  c.family = static_cast<protocol::Family>(q.column_int64(2));
  c.card_type = static_cast<protocol::CardType>(q.column_int64(3));
  c.status = static_cast<CardStatus>(q.column_int64(4));
  c.key_version = static_cast<std::uint8_t>(q.column_int64(5));
  c.algorithm = static_cast<crypto::Algorithm>(q.column_int64(6));
  c.balance_fen = q.column_int64(7);
  if (!q.column_is_null(8)) c.last_counter = static_cast<std::uint16_t>(q.column_int64(8));
  c.deposit_fen = q.column_int64(9);
  c.overdraft_limit_fen = static_cast<std::uint32_t>(q.column_int64(10));
  c.valid_from_yyyymmdd = static_cast<int>(q.column_int64(11));
  c.valid_to_yyyymmdd = static_cast<int>(q.column_int64(12));
  return c;
}

constexpr const char* kCardColumns =
    "SELECT serial, card_number, family, card_type, status, key_version, algorithm_id, "
    "balance_fen, last_counter, deposit_fen, overdraft_limit_fen, valid_from, valid_to "
    "FROM cards ";

TerminalRecord terminal_from_row(const Query& q) {
  TerminalRecord t;
  const Bytes id = q.column_blob(0);
  if (id.size() == t.terminal_id.size()) std::copy(id.begin(), id.end(), t.terminal_id.begin());
  t.operator_id = q.column_text(1);
  t.route = q.column_text(2);
  t.vehicle = q.column_text(3);
  t.device_id = q.column_text(4);
  t.key_version = static_cast<std::uint8_t>(q.column_int64(5));
  return t;
}

constexpr const char* kTerminalColumns =
    "SELECT terminal_id, operator_id, route, vehicle, device_id, key_version FROM terminals ";

}  // namespace

const char* card_status_name(CardStatus s) {
  switch (s) {
    case CardStatus::kActive:
      return "active";
    case CardStatus::kBlocked:
      return "blocked";
    case CardStatus::kCancelled:
      return "cancelled";
    case CardStatus::kLost:
      return "lost";
    case CardStatus::kFrozen:
      return "frozen";
    case CardStatus::kRefunded:
      return "refunded";
    case CardStatus::kReplaced:
      return "replaced";
  }
  return "unknown";
}

Status validate_options(const IssuanceOptions& o) {
  if (o.city_code.size() != 4 || !all_digits(o.city_code)) {
    return Status(Errc::kInvalidArgument,
                  "city code must be 4 digits, got \"" + o.city_code + "\"");
  }
  if (o.max_balance_fen < 0 || o.max_balance_fen > 0xFFFF'FFFFLL) {
    return Status(Errc::kInvalidArgument, "max_balance_fen must fit a card's 32-bit purse");
  }
  if (o.max_deposit_fen < 0) return Status(Errc::kInvalidArgument, "max_deposit_fen < 0");
  if (o.max_overdraft_fen > 0xFF'FFFFu) {
    return Status(Errc::kInvalidArgument, "max_overdraft_fen must fit 24 bits");
  }
  if (o.validity_years < 1 || o.validity_years > 50) {
    return Status(Errc::kInvalidArgument, "validity_years must be 1..50");
  }
  if (o.max_text_bytes == 0) return Status(Errc::kInvalidArgument, "max_text_bytes is 0");
  return Status::ok();
}

Issuance::Issuance(Store& store, Ledger& ledger, Keys& keys, const Calendar& calendar,
                   IssuanceOptions options)
    : store_(store),
      ledger_(ledger),
      keys_(keys),
      calendar_(calendar),
      options_(std::move(options)) {
  CITYCARD_CHECK(validate_options(options_).is_ok(), "Issuance with invalid options");
}

Result<std::uint64_t> Issuance::next_sequence(const char* name) {
  std::uint64_t next = 1;
  {
    auto q = store_.query("SELECT value FROM meta WHERE key = ?1");
    q.bind(1, name);
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (*row) next = std::strtoull(q.column_text(0).c_str(), nullptr, 10);
  }
  if (Status s = store_
                     .query("INSERT INTO meta(key, value) VALUES (?1, ?2) "
                            "ON CONFLICT(key) DO UPDATE SET value = excluded.value")
                     .bind(1, name)
                     .bind(2, std::to_string(next + 1))
                     .run();
      !s.is_ok()) {
    return s;
  }
  return next;
}

Result<protocol::CardImage> Issuance::issue_card(const CardParams& p) {
  if (p.opening_balance_fen < 0 || p.opening_balance_fen > options_.max_balance_fen) {
    return Status(Errc::kInvalidArgument,
                  "opening balance " + std::to_string(p.opening_balance_fen) +
                      " fen is outside 0.." + std::to_string(options_.max_balance_fen));
  }
  if (p.deposit_fen < 0 || p.deposit_fen > options_.max_deposit_fen) {
    return Status(Errc::kInvalidArgument, "deposit " + std::to_string(p.deposit_fen) +
                                              " fen is outside 0.." +
                                              std::to_string(options_.max_deposit_fen));
  }
  if (p.overdraft_limit_fen > options_.max_overdraft_fen) {
    return Status(Errc::kInvalidArgument,
                  "overdraft limit is over " + std::to_string(options_.max_overdraft_fen));
  }
  if (!crypto::algorithm_from_id(static_cast<std::uint8_t>(p.algorithm))) {
    return Status(Errc::kInvalidArgument, "unknown purse algorithm");
  }
  if (p.family != protocol::Family::kJtt978 && p.family != protocol::Family::kCjt166) {
    return Status(Errc::kInvalidArgument, "unknown application family");
  }
  if (static_cast<std::uint8_t>(p.card_type) >
      static_cast<std::uint8_t>(protocol::CardType::kStaff)) {
    return Status(Errc::kInvalidArgument, "unknown card type");
  }
  const int today = calendar_.today_yyyymmdd();
  const auto from = p.valid_from.value_or(date_from_yyyymmdd(today));
  const auto to = p.valid_to.value_or(
      date_from_yyyymmdd(add_years(date_yyyymmdd(from), options_.validity_years)));
  if (!valid_date(from) || !valid_date(to) || date_yyyymmdd(from) > date_yyyymmdd(to)) {
    return Status(Errc::kInvalidArgument, "validity must be two BCD dates, from <= to");
  }

  auto txn = store_.begin();
  if (!txn.is_ok()) return txn.status();
  auto seq = next_sequence(kNextCardSeq);
  if (!seq.is_ok()) return seq.status();
  if (*seq > kMaxCardSeq) return Status(Errc::kTooLarge, "card number sequence exhausted");

  protocol::CardImage card;
  card.family = p.family;
  card.card_number = options_.city_code + zero_pad(*seq, 12);
  card.serial = bcd_pack<8>(card.card_number);
  card.card_type = p.card_type;
  card.balance_fen = static_cast<std::uint32_t>(p.opening_balance_fen);
  card.overdraft_limit_fen = p.overdraft_limit_fen;
  card.valid_from = from;
  card.valid_to = to;
  card.issuer_data = issuer_data(p.family, options_.city_code);
  if (Status s = keys_.derive_card_keys(keys_.current_version(), p.algorithm, card); !s.is_ok()) {
    return s;
  }

  if (Status s = store_
                     .query("INSERT INTO cards(serial, card_number, family, card_type, status, "
                            "key_version, algorithm_id, balance_fen, last_counter, deposit_fen, "
                            "overdraft_limit_fen, valid_from, valid_to, issued_at_us) VALUES "
                            "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9, ?10, ?11, ?12, ?13)")
                     .bind_blob(1, card.serial)
                     .bind(2, card.card_number)
                     .bind(3, static_cast<std::int64_t>(card.family))
                     .bind(4, static_cast<std::int64_t>(card.card_type))
                     .bind(5, static_cast<std::int64_t>(CardStatus::kActive))
                     .bind(6, std::int64_t{card.key_version})
                     .bind(7, static_cast<std::int64_t>(card.algorithm))
                     .bind(8, p.opening_balance_fen)
                     .bind(9, p.deposit_fen)
                     .bind(10, std::int64_t{p.overdraft_limit_fen})
                     .bind(11, std::int64_t{date_yyyymmdd(from)})
                     .bind(12, std::int64_t{date_yyyymmdd(to)})
                     .bind(13, calendar_.now_us())
                     .run();
      !s.is_ok()) {
    return s;
  }

  Posting posting{"issue", "card " + card.card_number, {}};
  const std::int64_t cash = p.opening_balance_fen + p.deposit_fen;
  if (cash > 0) posting.entries.push_back({std::string(account::kIssuerCash), cash});
  if (p.opening_balance_fen > 0) {
    posting.entries.push_back({std::string(account::kCardFloat), -p.opening_balance_fen});
  }
  if (p.deposit_fen > 0) {
    posting.entries.push_back({std::string(account::kDeposits), -p.deposit_fen});
  }
  if (!posting.entries.empty()) {
    auto posted = ledger_.post(posting);
    if (!posted.is_ok()) return posted.status();
  }
  if (Status s = txn->commit(); !s.is_ok()) return s;
  return card;
}

Result<bool> Issuance::terminal_exists(const TerminalId& id) const {
  auto q = store_.query("SELECT 1 FROM terminals WHERE terminal_id = ?1");
  q.bind_blob(1, id);
  return q.step();
}

Result<protocol::PsamImage> Issuance::register_terminal(const TerminalParams& p) {
  const std::size_t max = options_.max_text_bytes;
  for (Status s :
       {check_text("operator id", p.operator_id, max, true),
        check_text("route", p.route, max, false), check_text("vehicle", p.vehicle, max, false),
        check_text("device id", p.device_id, max, false)}) {
    if (!s.is_ok()) return s;
  }
  auto txn = store_.begin();
  if (!txn.is_ok()) return txn.status();

  TerminalId id{};
  if (p.terminal_id) {
    id = *p.terminal_id;
    auto exists = terminal_exists(id);
    if (!exists.is_ok()) return exists.status();
    if (*exists) return Status(Errc::kDuplicate, "terminal " + to_hex(id) + " is registered");
  } else {
    bool found = false;
    for (int tries = 0; tries < kMaxTerminalIdTries && !found; ++tries) {
      auto seq = next_sequence(kNextTerminalSeq);
      if (!seq.is_ok()) return seq.status();
      if (*seq > kMaxTerminalSeq) return Status(Errc::kTooLarge, "terminal ids exhausted");
      id = bcd_pack<6>(options_.city_code + zero_pad(*seq, 8));
      auto exists = terminal_exists(id);
      if (!exists.is_ok()) return exists.status();
      found = !*exists;
    }
    if (!found) return Status(Errc::kInternal, "no free terminal id after many tries");
  }

  const std::uint8_t version = keys_.current_version();
  auto issuer = keys_.issuer(version);
  if (!issuer.is_ok()) return issuer.status();
  if (Status s = store_
                     .query("INSERT INTO terminals(terminal_id, operator_id, route, vehicle, "
                            "device_id, key_version, registered_at_us) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                     .bind_blob(1, id)
                     .bind(2, p.operator_id)
                     .bind(3, p.route)
                     .bind(4, p.vehicle)
                     .bind(5, p.device_id)
                     .bind(6, std::int64_t{version})
                     .bind(7, calendar_.now_us())
                     .run();
      !s.is_ok()) {
    return s;
  }
  if (Status s = ledger_.open_account(account::payable(p.operator_id)); !s.is_ok()) return s;
  if (Status s = txn->commit(); !s.is_ok()) return s;

  protocol::PsamImage psam;
  psam.terminal_id = id;
  psam.key_version = version;
  psam.purchase_master = issuer->purchase;
  // The blacklist lock (801A + 80FA) needs it: without it a terminal cannot block a card.
  psam.maintenance_master = issuer->maintenance;
  psam.batch_key = protocol::terminal_batch_key(issuer->batch, id);
  psam.next_sequence = 1;
  return psam;
}

Result<CardRecord> Issuance::card(const Serial8& serial) const {
  // Built once: ingest reads a card per record.
  static const std::string kBySerial = std::string(kCardColumns) + "WHERE serial = ?1";
  auto q = store_.query(kBySerial);
  q.bind_blob_view(1, serial);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return Status(Errc::kNotFound, "unknown card " + to_hex(serial));
  return card_from_row(q);
}

Result<TerminalRecord> Issuance::terminal(const TerminalId& terminal_id) const {
  auto q = store_.query(std::string(kTerminalColumns) + "WHERE terminal_id = ?1");
  q.bind_blob(1, terminal_id);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return Status(Errc::kNotFound, "unknown terminal " + to_hex(terminal_id));
  return terminal_from_row(q);
}

Result<std::vector<CardRecord>> Issuance::list_cards(std::size_t max_count) const {
  auto q = store_.query(std::string(kCardColumns) + "ORDER BY serial LIMIT ?1");
  q.bind(1, static_cast<std::int64_t>(max_count));
  std::vector<CardRecord> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    out.push_back(card_from_row(q));
  }
}

Result<std::vector<TerminalRecord>> Issuance::list_terminals(std::size_t max_count) const {
  auto q = store_.query(std::string(kTerminalColumns) + "ORDER BY terminal_id LIMIT ?1");
  q.bind(1, static_cast<std::int64_t>(max_count));
  std::vector<TerminalRecord> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    out.push_back(terminal_from_row(q));
  }
}

Result<std::int64_t> Issuance::card_count() const {
  auto q = store_.query("SELECT count(*) FROM cards");
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  return q.column_int64(0);
}

Result<std::int64_t> Issuance::card_balance_sum_fen() const {
  auto q = store_.query("SELECT coalesce(sum(balance_fen), 0) FROM cards");
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  return q.column_int64(0);
}

Result<std::int64_t> Issuance::card_deposit_sum_fen() const {
  auto q = store_.query("SELECT coalesce(sum(deposit_fen), 0) FROM cards");
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  return q.column_int64(0);
}

}  // namespace citycard::backend
