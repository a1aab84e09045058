#include "citycard/backend/desk_service.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <openssl/evp.h>

#include <algorithm>
#include <string>

#include "citycard/backend/money_service.h"
#include "citycard/sim/rng.h"
#include "dates.h"

namespace citycard::backend {

namespace pw = protocol::wire;
namespace wire = citycard::wire;
using protocol::Serial8;
using wire::DeskReply;
using wire::DeskRequest;
using wire::Envelope;

namespace {

constexpr std::size_t kSessionBytes = 16;

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS desk_sessions ("
    "  id INTEGER PRIMARY KEY, token BLOB NOT NULL UNIQUE, terminal BLOB NOT NULL,"
    "  username TEXT NOT NULL, expires_us INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS desk_ops ("
    "  terminal BLOB NOT NULL, op_no INTEGER NOT NULL, fingerprint BLOB NOT NULL,"
    "  reply BLOB NOT NULL, at_us INTEGER NOT NULL, PRIMARY KEY (terminal, op_no));";

// Card operations name a card: an unknown one has its own code.
Envelope card_error(std::uint64_t id, const Status& s) {
  if (s.code() == Errc::kNotFound) return error_reply(id, wire::UNKNOWN_CARD, s.message());
  return error_reply(id, errc_to_code(s.code()), s.message());
}

Bytes sha256(std::string_view input) {
  Bytes out(EVP_MAX_MD_SIZE);
  unsigned int n = 0;
  if (EVP_Digest(input.data(), input.size(), out.data(), &n, EVP_sha256(), nullptr) != 1) {
    __builtin_trap();  // SHA-256 of a short string cannot fail
  }
  out.resize(n);
  return out;
}

// What makes two requests "the same operation": the op itself, without who sent it.
Bytes fingerprint(const DeskRequest& m) {
  DeskRequest op = m;
  op.clear_terminal_id();
  op.clear_session();
  op.clear_op_no();
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    op.SerializeToCodedStream(&coded);
  }
  return sha256(bytes);
}

bool changes_something(DeskRequest::OpCase op) {
  switch (op) {
    case DeskRequest::kIssue:
    case DeskRequest::kCancel:
    case DeskRequest::kRefund:
    case DeskRequest::kReplace:
    case DeskRequest::kReportLost:
    case DeskRequest::kReportFound:
      return true;
    default:
      return false;
  }
}

Result<Serial8> serial_of(const std::string& field) {
  Serial8 s{};
  if (!pw::to_serial(field, s)) return Status(Errc::kMalformed, "card serial must be 8 bytes");
  return s;
}

void to_wire(const protocol::CardImage& in, wire::DeskCardImage& out) {
  out.set_family(static_cast<std::uint32_t>(in.family));
  out.set_serial(pw::field(in.serial));
  out.set_card_number(in.card_number);
  out.set_card_type(static_cast<std::uint32_t>(in.card_type));
  out.set_key_version(in.key_version);
  out.set_algorithm_id(static_cast<std::uint32_t>(in.algorithm));
  out.set_dpk(pw::field(in.dpk));
  out.set_dlk(pw::field(in.dlk));
  out.set_dtk(pw::field(in.dtk));
  out.set_damk(pw::field(in.damk));
  out.set_balance_fen(in.balance_fen);
  out.set_overdraft_limit_fen(in.overdraft_limit_fen);
  out.set_valid_from(pw::field(in.valid_from));
  out.set_valid_to(pw::field(in.valid_to));
  out.set_issuer_data(pw::field(in.issuer_data));
  out.set_online_counter(in.online_counter);
  out.set_offline_counter(in.offline_counter);
}

// The backend's CardParams from the desk's issue, or kMalformed naming the bad field.
Result<IssueRequest> issue_request(const wire::DeskIssue& m) {
  IssueRequest r;
  CardParams& p = r.card;
  if (m.card_type() > static_cast<std::uint32_t>(protocol::CardType::kStaff)) {
    return Status(Errc::kMalformed, "card type " + std::to_string(m.card_type()) + " unknown");
  }
  p.card_type = static_cast<protocol::CardType>(m.card_type());
  if (m.family() > 2) {
    return Status(Errc::kMalformed, "family " + std::to_string(m.family()) + " unknown");
  }
  p.family = m.family() == 2 ? protocol::Family::kCjt166 : protocol::Family::kJtt978;
  const auto alg =
      m.algorithm_id() <= 0xFF
          ? protocol::crypto::algorithm_from_id(static_cast<std::uint8_t>(m.algorithm_id()))
          : std::nullopt;
  if (!alg) return Status(Errc::kMalformed, "purse algorithm unknown");
  p.algorithm = *alg;
  p.opening_balance_fen = m.opening_value_fen();
  p.deposit_fen = m.deposit_fen();
  for (auto [value, slot] :
       {std::pair{m.valid_from(), &p.valid_from}, std::pair{m.valid_to(), &p.valid_to}}) {
    if (value == 0) continue;
    const int v = static_cast<int>(std::min<std::uint32_t>(value, 99'999'999));
    if (!dates::valid(v)) {
      return Status(Errc::kMalformed,
                    "validity date " + std::to_string(value) + " is not a YYYYMMDD calendar date");
    }
    *slot = protocol::date_bcd(v / 10'000, v / 100 % 100, v % 100);
  }
  if (m.has_holder()) {
    const wire::DeskHolder& h = m.holder();
    r.holder = HolderInfo{h.name(), h.id_number(), h.phone(), h.email(), h.notify()};
  }
  return r;
}

}  // namespace

DeskService::DeskService(Store& store, Users& users, Cards& cards, Issuance& issuance,
                         Merchants& merchants, const Calendar& calendar, std::uint64_t secret_seed,
                         DeskOptions options)
    : store_(store),
      users_(users),
      cards_(cards),
      issuance_(issuance),
      merchants_(merchants),
      calendar_(calendar),
      options_(options) {
  sim::Rng rng = sim::Rng(secret_seed).fork("desk sessions");
  for (std::size_t i = 0; i < secret_.size(); i += 8) {
    const std::uint64_t v = rng.next_u64();
    for (std::size_t j = 0; j < 8; ++j) secret_[i + j] = static_cast<std::uint8_t>(v >> (8 * j));
  }
}

Status DeskService::open() {
  return store_.exec(kSchema);
}

Envelope DeskService::handle(const Envelope& request) {
  const std::uint64_t id = request.request_id();
  const DeskRequest& m = request.desk_request();
  protocol::TerminalId desk{};
  if (!pw::to_terminal(m.terminal_id(), desk)) {
    return error_reply(id, wire::MALFORMED, "terminal id must be 6 bytes");
  }
  auto t = issuance_.terminal(desk);
  if (!t.is_ok()) {
    if (t.status().code() == Errc::kNotFound) {
      return error_reply(id, wire::UNKNOWN_TERMINAL,
                         "terminal " + to_hex(desk) + " is not registered");
    }
    return error_reply(id, wire::INTERNAL, t.status().message());
  }
  const MerchantParams* owner = merchants_.find(t->operator_id);
  if (owner == nullptr || owner->kind != MerchantKind::kDesk) {
    return error_reply(id, wire::FORBIDDEN,
                       "terminal " + to_hex(desk) + " belongs to '" + t->operator_id +
                           "', which is not an issuing desk");
  }
  if (m.op_case() == DeskRequest::OP_NOT_SET) {
    return error_reply(id, wire::MALFORMED, "desk request without an operation");
  }
  if (m.op_case() == DeskRequest::kSignIn) return sign_in(id, desk, m.sign_in());

  auto by = session(desk, m.session());
  if (!by.is_ok()) {
    if (by.status().code() == Errc::kPermissionDenied) {
      return error_reply(id, wire::DESK_NOT_SIGNED_IN, by.status().message());
    }
    return error_reply(id, errc_to_code(by.status().code()), by.status().message());
  }

  Envelope e;
  e.set_request_id(id);
  if (m.op_case() == DeskRequest::kSignOut) {
    if (Status s =
            store_.query("DELETE FROM desk_sessions WHERE token = ?1")
                .bind_blob(1, ByteView(reinterpret_cast<const std::uint8_t*>(m.session().data()),
                                       m.session().size()))
                .run();
        !s) {
      return error_reply(id, wire::INTERNAL, s.message());
    }
    e.mutable_desk_reply()->mutable_card();
    return e;
  }
  if (!changes_something(m.op_case())) {
    bool changed = false;
    auto r = run(*by, m, &changed);
    if (!r.is_ok()) return card_error(id, r.status());
    *e.mutable_desk_reply() = std::move(r).value();
    return e;
  }

  if (m.op_no() == 0) {
    return error_reply(id, wire::MALFORMED, "a desk operation needs its operation number (> 0)");
  }
  const Bytes print = fingerprint(m);
  auto tx = store_.begin();
  if (!tx.is_ok()) return error_reply(id, wire::INTERNAL, tx.status().message());
  {
    auto q = store_.query(
        "SELECT fingerprint, reply FROM desk_ops WHERE terminal = ?1 AND "
        "op_no = ?2");
    q.bind_blob(1, desk).bind(2, static_cast<std::int64_t>(m.op_no()));
    auto row = q.step();
    if (!row.is_ok()) return error_reply(id, wire::INTERNAL, row.status().message());
    if (*row) {
      if (q.column_blob(0) != print) {
        return error_reply(id, wire::DESK_OP_REUSED,
                           "operation " + std::to_string(m.op_no()) + " of desk " + to_hex(desk) +
                               " was another operation; nothing changed");
      }
      const Bytes stored = q.column_blob(1);
      DeskReply* reply = e.mutable_desk_reply();
      if (!reply->ParseFromArray(stored.data(), static_cast<int>(stored.size()))) {
        return error_reply(id, wire::INTERNAL, "stored desk reply does not parse");
      }
      reply->set_replayed(true);
      return e;  // the transaction rolls back: it changed nothing
    }
  }
  bool changed = false;
  auto r = run(*by, m, &changed);
  if (!r.is_ok()) {
    if (changed) return error_reply(id, wire::INTERNAL, r.status().message());  // rolls back
    // A refusal: keep its audit row (Users::audited wrote it in this transaction).
    (void)tx->commit();
    return card_error(id, r.status());
  }
  r->set_op_no(m.op_no());
  const std::string stored = r->SerializeAsString();
  if (Status s = store_
                     .query("INSERT INTO desk_ops (terminal, op_no, fingerprint, reply, at_us) "
                            "VALUES (?1, ?2, ?3, ?4, ?5)")
                     .bind_blob(1, desk)
                     .bind(2, static_cast<std::int64_t>(m.op_no()))
                     .bind_blob(3, print)
                     .bind_blob(4, ByteView(reinterpret_cast<const std::uint8_t*>(stored.data()),
                                            stored.size()))
                     .bind(5, calendar_.now_us())
                     .run();
      !s) {
    return error_reply(id, wire::INTERNAL, s.message());  // rolls back the operation too
  }
  if (Status s = tx->commit(); !s) return error_reply(id, wire::INTERNAL, s.message());
  *e.mutable_desk_reply() = std::move(r).value();
  return e;
}

Envelope DeskService::sign_in(std::uint64_t id, const protocol::TerminalId& desk,
                              const wire::DeskSignIn& m) {
  auto s = users_.login(m.username(), m.password());
  if (!s.is_ok()) return error_reply(id, errc_to_code(s.status().code()), s.status().message());
  if (Status ok = users_.require(*s, {Role::kAdmin, Role::kFinance}, "desk sign-in"); !ok) {
    return error_reply(id, errc_to_code(ok.code()), ok.message());
  }
  auto tx = store_.begin();
  if (!tx.is_ok()) return error_reply(id, wire::INTERNAL, tx.status().message());
  std::int64_t next = 0;
  {
    auto q = store_.query("SELECT coalesce(max(id), 0) + 1 FROM desk_sessions");
    auto row = q.step();
    if (!row.is_ok() || !*row) return error_reply(id, wire::INTERNAL, "desk session id");
    next = q.column_int64(0);
  }
  // Unique per row, unguessable without the backend's secret, never reused after a restart.
  std::string input = "citycard desk session|";
  input.append(secret_.begin(), secret_.end());
  input += "|" + std::to_string(next);
  Bytes token = sha256(input);
  token.resize(kSessionBytes);
  const std::int64_t expires = calendar_.now_us() + options_.session_ttl_us;
  // Expired sessions go as new ones come.
  if (Status st = store_.query("DELETE FROM desk_sessions WHERE expires_us <= ?1")
                      .bind(1, calendar_.now_us())
                      .run();
      !st) {
    return error_reply(id, wire::INTERNAL, st.message());
  }
  if (Status st = store_
                      .query("INSERT INTO desk_sessions (id, token, terminal, username, "
                             "expires_us) VALUES (?1, ?2, ?3, ?4, ?5)")
                      .bind(1, next)
                      .bind_blob(2, token)
                      .bind_blob(3, desk)
                      .bind(4, s->user)
                      .bind(5, expires)
                      .run();
      !st) {
    return error_reply(id, wire::INTERNAL, st.message());
  }
  if (Status st = tx->commit(); !st) return error_reply(id, wire::INTERNAL, st.message());
  Envelope e;
  e.set_request_id(id);
  auto* reply = e.mutable_desk_reply()->mutable_signed_in();
  reply->set_session(std::string(token.begin(), token.end()));
  reply->set_role(role_name(s->role));
  reply->set_expires_us(expires);
  return e;
}

Result<Session> DeskService::session(const protocol::TerminalId& desk,
                                     const std::string& token) const {
  if (token.size() != kSessionBytes) {
    return Status(Errc::kPermissionDenied, "no operator is signed in at desk " + to_hex(desk));
  }
  auto q = store_.query(
      "SELECT terminal, username, expires_us FROM desk_sessions WHERE "
      "token = ?1");
  q.bind_blob(1, ByteView(reinterpret_cast<const std::uint8_t*>(token.data()), token.size()));
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) {
    return Status(Errc::kPermissionDenied,
                  "unknown desk session (signed out?): sign in at desk " + to_hex(desk));
  }
  const Bytes terminal = q.column_blob(0);
  if (!std::equal(terminal.begin(), terminal.end(), desk.begin(), desk.end())) {
    return Status(Errc::kPermissionDenied,
                  "the session belongs to desk " + to_hex(terminal) + ", not " + to_hex(desk));
  }
  if (q.column_int64(2) <= calendar_.now_us()) {
    return Status(Errc::kPermissionDenied,
                  "the session at desk " + to_hex(desk) + " has expired: sign in again");
  }
  const std::string username = q.column_text(1);
  auto u = users_.user(username);
  if (!u.is_ok()) return Status(Errc::kPermissionDenied, "desk user " + username + " is gone");
  // Cards re-checks role and activity against the stored user on every operation.
  return Session{u->username, u->role, u->merchant_id};
}

Result<wire::DeskCardState> DeskService::state(const Serial8& card) const {
  auto c = cards_.info(card);
  if (!c.is_ok()) return c.status();
  wire::DeskCardState s;
  s.set_card_serial(pw::field(c->card.serial));
  s.set_card_number(c->card.card_number);
  s.set_status(static_cast<std::uint32_t>(c->card.status));
  s.set_status_name(card_status_name(c->card.status));
  s.set_balance_fen(c->card.balance_fen);
  s.set_deposit_fen(c->card.deposit_fen);
  s.set_named(c->holder.has_value());
  s.set_card_type(static_cast<std::uint32_t>(c->card.card_type));
  s.set_valid_from(static_cast<std::uint32_t>(c->card.valid_from_yyyymmdd));
  s.set_valid_to(static_cast<std::uint32_t>(c->card.valid_to_yyyymmdd));
  if (c->replaced_by) s.set_replaced_by(pw::field(*c->replaced_by));
  s.set_blacklisted(c->blacklisted);
  s.set_key_version(c->card.key_version);
  s.set_algorithm_id(static_cast<std::uint32_t>(c->card.algorithm));
  return s;
}

Result<DeskReply> DeskService::run(const Session& by, const DeskRequest& m, bool* changed) {
  DeskReply reply;
  switch (m.op_case()) {
    case DeskRequest::kIssue: {
      auto r = issue_request(m.issue());
      if (!r.is_ok()) return r.status();
      auto image = cards_.issue(by, *r);
      if (!image.is_ok()) return image.status();
      *changed = true;
      to_wire(*image, *reply.mutable_issued());
      return reply;
    }
    case DeskRequest::kQuery: {
      auto serial = serial_of(m.query().card_serial());
      if (!serial.is_ok()) return serial.status();
      auto c = cards_.info(by, *serial);  // checks the desk role
      if (!c.is_ok()) return c.status();
      auto s = state(*serial);
      if (!s.is_ok()) return s.status();
      *reply.mutable_card() = std::move(s).value();
      return reply;
    }
    case DeskRequest::kCancel:
    case DeskRequest::kReportLost:
    case DeskRequest::kReportFound: {
      const wire::DeskCardRef& ref = m.op_case() == DeskRequest::kCancel       ? m.cancel()
                                     : m.op_case() == DeskRequest::kReportLost ? m.report_lost()
                                                                               : m.report_found();
      auto serial = serial_of(ref.card_serial());
      if (!serial.is_ok()) return serial.status();
      const Status done = m.op_case() == DeskRequest::kCancel ? cards_.cancel_issue(by, *serial)
                          : m.op_case() == DeskRequest::kReportLost
                              ? cards_.report_lost(by, *serial)
                              : cards_.report_found(by, *serial);
      if (!done) return done;
      *changed = true;
      auto s = state(*serial);
      if (!s.is_ok()) return s.status();
      *reply.mutable_card() = std::move(s).value();
      return reply;
    }
    case DeskRequest::kRefund: {
      auto serial = serial_of(m.refund().card_serial());
      if (!serial.is_ok()) return serial.status();
      auto r = cards_.refund(by, *serial, m.refund().card_balance_fen());
      if (!r.is_ok()) return r.status();
      *changed = true;
      auto s = state(*serial);
      if (!s.is_ok()) return s.status();
      wire::DeskRefundReply* out = reply.mutable_refunded();
      out->set_balance_fen(r->balance_fen);
      out->set_deposit_fen(r->deposit_fen);
      out->set_in_flight_fen(r->in_flight_fen);
      *out->mutable_card() = std::move(s).value();
      return reply;
    }
    case DeskRequest::kReplace: {
      auto serial = serial_of(m.replace().card_serial());
      if (!serial.is_ok()) return serial.status();
      auto image = cards_.replace(by, *serial);
      if (!image.is_ok()) return image.status();
      *changed = true;
      to_wire(*image, *reply.mutable_issued());
      auto s = state(*serial);
      if (!s.is_ok()) return s.status();
      *reply.mutable_old_card() = std::move(s).value();
      return reply;
    }
    default:
      return Status(Errc::kMalformed, "not a desk operation");
  }
}

}  // namespace citycard::backend
