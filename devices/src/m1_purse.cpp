#include "citycard/devices/m1_purse.h"

#include <algorithm>
#include <cstring>

namespace citycard::devices {

namespace m1 = protocol::m1;
namespace txn = protocol::txn;
using m1::Block;
using m1::ProcessInfo;

namespace {

Result<Block> as_block(const Bytes& answer) {
  Block b;
  std::memcpy(b.data(), answer.data() + 1, 16);
  return b;
}

M1Result refusal_of(const Status& s, const char* step) {
  M1Result r;
  r.refusal = s.code() == Errc::kTorn ? Refusal::kTorn : Refusal::kCardError;
  r.detail = std::string(step) + ": " + s.to_string();
  return r;
}

}  // namespace

// The MIFARE operations of one tap, authenticating sectors as needed, each failure a Status:
// kTorn when the card is gone, kRejected for a NAK, kMalformed for an answer of the wrong size.
class M1PurseEngine::Ops {
 public:
  Ops(M1Link& link, const protocol::crypto::Key16& master)
      : link_(link), master_(master), uid_(link.uid()) {}

  const m1::Uid4& uid() const { return uid_; }

  Result<Block> read(std::uint8_t n) {
    if (Status s = auth(n, m1::KeyType::kA); !s) return s;
    Result<Bytes> r = exchange({m1::cmd::kRead, n}, 16, "READ");
    if (!r) return r.status();
    return as_block(*r);
  }
  Status write(std::uint8_t n, const Block& b) {
    if (Status s = auth(n, m1::KeyType::kA); !s) return s;
    Bytes c{m1::cmd::kWrite, n};
    put_bytes(c, b);
    return exchange(std::move(c), 0, "WRITE").status();
  }
  // INCREMENT needs key B on the purse sector (access 110); the rest is done with key A.
  Status value(std::uint8_t command, std::uint8_t n, std::uint32_t operand) {
    const auto key = command == m1::cmd::kIncrement ? m1::KeyType::kB : m1::KeyType::kA;
    if (Status s = auth(n, key); !s) return s;
    Bytes c{command, n};
    for (int i = 0; i < 4; ++i) c.push_back(static_cast<std::uint8_t>(operand >> (8 * i)));
    return exchange(std::move(c), 0, "VALUE").status();
  }
  Status transfer(std::uint8_t n) {
    // Same sector and key as the value operation before it.
    return exchange({m1::cmd::kTransfer, n}, 0, "TRANSFER").status();
  }
  // RESTORE `from` + TRANSFER `to`, then read `to` back and check it holds `expected`.
  Status copy_value(std::uint8_t from, std::uint8_t to, std::int32_t expected) {
    if (Status s = value(m1::cmd::kRestore, from, 0); !s) return s;
    if (Status s = transfer(to); !s) return s;
    Result<Block> b = read(to);
    if (!b) return b.status();
    const auto v = m1::decode_value(*b);
    if (!v || v->value != expected) return Status(Errc::kRejected, "value copy did not verify");
    return Status::ok();
  }

 private:
  Status auth(std::uint8_t n, m1::KeyType type) {
    const std::uint8_t sector = m1::sector_of(n);
    if (sector == sector_ && type == type_) return Status::ok();
    sector_ = 0xFF;
    const m1::Key6 key = m1::sector_key(master_, uid_, sector, type);
    Bytes c{type == m1::KeyType::kA ? m1::cmd::kAuthA : m1::cmd::kAuthB, n};
    put_bytes(c, key);
    put_bytes(c, uid_);
    if (Status s = exchange(std::move(c), 0, "AUTH").status(); !s) return s;
    sector_ = sector;
    type_ = type;
    return Status::ok();
  }
  Result<Bytes> exchange(Bytes command, std::size_t data_bytes, const char* what) {
    Result<Bytes> r = link_.transceive(command);
    if (!r) {
      sector_ = 0xFF;
      return r;
    }
    if (r->empty() || (*r)[0] != m1::status::kOk) {
      sector_ = 0xFF;  // the card dropped its authentication
      return Result<Bytes>(Errc::kRejected, std::string(what) + " of block " +
                                                std::to_string(command[1]) + " refused");
    }
    if (r->size() != 1 + data_bytes) {
      return Result<Bytes>(Errc::kMalformed, std::string(what) + " answered " +
                                                 std::to_string(r->size() - 1) + " bytes");
    }
    return r;
  }

  M1Link& link_;
  const protocol::crypto::Key16& master_;
  m1::Uid4 uid_;
  std::uint8_t sector_ = 0xFF;  // authenticated sector, FF: none
  m1::KeyType type_ = m1::KeyType::kA;
};

struct M1PurseEngine::State {
  std::optional<ProcessInfo> a;  // block 24
  std::optional<ProcessInfo> b;  // block 25
  std::optional<m1::Value> v8;
  std::optional<m1::Value> v9;
};

M1PurseEngine::M1PurseEngine(M1PurseOptions options) : options_(options) {}

M1Result M1PurseEngine::transact(M1Link& card, const M1Request& request) {
  const std::int64_t start_us = card.elapsed_us();
  M1Result r = run(card, request);
  r.duration_us = card.elapsed_us() - start_us;
  return r;
}

M1Transaction M1PurseEngine::transaction_of(Ops& ops, const ProcessInfo& p) {
  M1Transaction t;
  t.uid = ops.uid();
  t.counter = p.counter;
  t.type = p.type;
  t.balance_before_fen = p.balance_before_fen;
  t.amount_fen = p.amount_fen;
  if (p.slot < options_.layout.record_blocks.size()) {
    Result<Block> b = ops.read(options_.layout.record_blocks[p.slot]);
    if (b) {
      if (auto rec = m1::Record::decode(*b); rec && rec->counter == p.counter) {
        t.epoch2000_s = rec->epoch2000_s;
        t.terminal_low = rec->terminal_low;
      }
    }
  }
  return t;
}

Status M1PurseEngine::repair_values(Ops& ops, State& st) {
  const m1::PurseLayout& l = options_.layout;
  if (st.v8 && st.v9) {
    if (st.v8->value != st.v9->value) {
      return Status(Errc::kRejected, "purse and backup disagree in a consistent state");
    }
    return Status::ok();
  }
  if (st.v8) {
    if (Status s = ops.copy_value(l.purse_block, l.purse_backup_block, st.v8->value); !s) return s;
    st.v9 = st.v8;
    return Status::ok();
  }
  if (st.v9) {
    if (Status s = ops.copy_value(l.purse_backup_block, l.purse_block, st.v9->value); !s) return s;
    st.v8 = st.v9;
    return Status::ok();
  }
  return Status(Errc::kRejected, "purse and backup both unreadable");
}

Status M1PurseEngine::resolve_in_progress(Ops& ops, State& st, const ProcessInfo& p,
                                          std::optional<M1Transaction>& rolled_forward,
                                          bool& rolled_back) {
  const m1::PurseLayout& l = options_.layout;
  const bool load = p.type == txn::kLoadEp;
  const auto before = static_cast<std::int32_t>(p.balance_before_fen);
  const auto after = static_cast<std::int32_t>(load ? p.balance_before_fen + p.amount_fen
                                                    : p.balance_before_fen - p.amount_fen);
  ProcessInfo done = p;
  done.state = ProcessInfo::kDone;
  if (st.v8 && st.v8->value == after && p.amount_fen != 0) {
    // S4 happened: the money moved. Finish S5-S7; the transaction counts.
    M1Transaction t = transaction_of(ops, p);  // before writing, so a tear here loses nothing
    if (!st.v9 || st.v9->value != after) {
      if (Status s = ops.copy_value(l.purse_block, l.purse_backup_block, after); !s) return s;
      st.v9 = st.v8;
    }
    if (Status s = ops.write(l.info_block, done.encode()); !s) return s;
    if (Status s = ops.write(l.info_backup_block, done.encode()); !s) return s;
    st.a = st.b = done;
    rolled_forward = t;
    return Status::ok();
  }
  // S4 did not happen (block 8 holds the balance before, or is torn while 9 holds it).
  if (!(st.v8 && st.v8->value == before) && !(!st.v8 && st.v9 && st.v9->value == before)) {
    return Status(Errc::kRejected, "purse matches neither side of the interrupted transaction");
  }
  if (!st.v8) {
    if (Status s = ops.copy_value(l.purse_backup_block, l.purse_block, before); !s) return s;
    st.v8 = st.v9;
  }
  ProcessInfo old = p;
  old.state = ProcessInfo::kDone;
  old.counter = static_cast<std::uint16_t>(p.counter - 1);
  old.slot =
      static_cast<std::uint8_t>((p.slot + l.record_blocks.size() - 1) % l.record_blocks.size());
  old.amount_fen = 0;
  old.type = 0;  // describes no transaction: a roll forward never counts it
  old.terminal_seq_low = 0;
  if (Status s = ops.write(l.info_block, old.encode()); !s) return s;
  if (Status s = ops.write(l.info_backup_block, old.encode()); !s) return s;
  st.a = st.b = old;
  rolled_back = true;
  return Status::ok();
}

Status M1PurseEngine::recover(Ops& ops, State& st, std::optional<M1Transaction>& rolled_forward,
                              bool& rolled_back) {
  const m1::PurseLayout& l = options_.layout;
  auto done = [](const std::optional<ProcessInfo>& p) {
    return p && p->state == ProcessInfo::kDone;
  };
  auto in_progress = [](const std::optional<ProcessInfo>& p) {
    return p && p->state == ProcessInfo::kInProgress;
  };
  if (done(st.a)) {
    if (st.b != st.a) {
      // S7 missing or torn (or a roll-back's second write): 25 becomes 24's copy. When 25 was
      // in progress for the same counter, that completes a real transaction.
      const bool completes =
          st.a->type != 0 && (!st.b || (in_progress(st.b) && st.b->counter == st.a->counter));
      std::optional<M1Transaction> t;
      if (completes) t = transaction_of(ops, *st.a);
      if (Status s = ops.write(l.info_backup_block, st.a->encode()); !s) return s;
      st.b = st.a;
      rolled_forward = t;
    }
  } else if (in_progress(st.a)) {
    if (Status s = resolve_in_progress(ops, st, *st.a, rolled_forward, rolled_back); !s) return s;
  } else if (done(st.b)) {
    // S1 torn: nothing else was written.
    if (Status s = ops.write(l.info_block, st.b->encode()); !s) return s;
    st.a = st.b;
  } else if (in_progress(st.b)) {
    // 24 torn while being written done (S6) or rolled back: 25 still says what was running.
    if (Status s = resolve_in_progress(ops, st, *st.b, rolled_forward, rolled_back); !s) return s;
  } else {
    return Status(Errc::kRejected, "both process-information blocks unreadable");
  }
  return repair_values(ops, st);
}

void M1PurseEngine::keep_grey(const M1Transaction& t) {
  ++counters_.recorded;
  if (grey_.size() == kGreyRecordsMax) {
    grey_.erase(grey_.begin());
    ++counters_.unresolved;
  }
  grey_.push_back(t);
}

std::optional<M1Transaction> M1PurseEngine::take_grey(const m1::Uid4& uid) {
  const auto it = std::find_if(grey_.begin(), grey_.end(),
                               [&](const M1Transaction& t) { return t.uid == uid; });
  if (it == grey_.end()) return std::nullopt;
  M1Transaction t = *it;
  grey_.erase(it);
  return t;
}

M1Result M1PurseEngine::run(M1Link& card, const M1Request& request) {
  const m1::PurseLayout& l = options_.layout;
  Ops ops(card, options_.m1_master);
  State st;
  for (std::uint8_t n : {l.info_block, l.info_backup_block}) {
    Result<Block> b = ops.read(n);
    if (!b) return refusal_of(b.status(), "READ process information");
    (n == l.info_block ? st.a : st.b) = ProcessInfo::decode(*b);
  }
  for (std::uint8_t n : {l.purse_block, l.purse_backup_block}) {
    Result<Block> b = ops.read(n);
    if (!b) return refusal_of(b.status(), "READ purse");
    (n == l.purse_block ? st.v8 : st.v9) = m1::decode_value(*b);
  }

  std::optional<M1Transaction> rolled_forward;
  bool rolled_back = false;
  if (Status s = recover(ops, st, rolled_forward, rolled_back); !s) {
    return refusal_of(s, "recovery");
  }
  if (rolled_back) ++counters_.rolled_back;
  std::optional<M1Transaction> grey = take_grey(ops.uid());
  if (rolled_forward) {
    ++counters_.rolled_forward;
    if (grey && grey->counter != rolled_forward->counter) keep_grey(*grey);
    M1Result r;
    r.recovered = true;
    r.txn = *rolled_forward;
    return r;
  }
  if (grey) {
    if (st.a->counter == grey->counter && st.a->type != 0) {
      // Completed on the card, only the answer was lost: it counts now.
      ++counters_.completed;
      M1Result r;
      r.recovered = true;
      r.rolled_back = rolled_back;
      r.txn = *grey;
      return r;
    }
    ++(st.a->counter < grey->counter ? counters_.cleared : counters_.unresolved);
  }

  // Issuer information: validity.
  Result<Block> i1 = ops.read(l.issuer_block);
  if (!i1) return refusal_of(i1.status(), "READ issuer information");
  Result<Block> i2 = ops.read(static_cast<std::uint8_t>(l.issuer_block + 1));
  if (!i2) return refusal_of(i2.status(), "READ issuer information");
  const m1::IssuerInfo info = m1::IssuerInfo::decode(*i1, *i2);
  const std::array<std::uint8_t, 4> date{request.datetime[0], request.datetime[1],
                                         request.datetime[2], request.datetime[3]};
  if (options_.check_validity && (date < info.valid_from || date > info.valid_to)) {
    M1Result r;
    r.refusal = Refusal::kCardExpired;
    r.detail = "outside the card's validity dates";
    return r;
  }

  const bool load = request.type == txn::kLoadEp;
  const auto balance = static_cast<std::uint32_t>(st.v8->value);
  if (!load && balance < request.amount_fen) {
    M1Result r;
    r.refusal = Refusal::kInsufficientBalance;
    r.detail = "balance " + std::to_string(balance) + " fen";
    return r;
  }
  if ((load && std::uint64_t{balance} + request.amount_fen > options_.balance_max_fen) ||
      st.a->counter == UINT16_MAX || st.v8->value < 0) {
    M1Result r;
    r.refusal = Refusal::kCardError;
    r.detail = "balance limit, counter limit or negative purse";
    return r;
  }

  ProcessInfo p;
  p.state = ProcessInfo::kInProgress;
  p.counter = static_cast<std::uint16_t>(st.a->counter + 1);
  p.slot = static_cast<std::uint8_t>((st.a->slot + 1) % l.record_blocks.size());
  p.balance_before_fen = balance;
  p.amount_fen = request.amount_fen;
  p.type = request.type;
  p.terminal_seq_low = 0;
  const std::uint32_t after = load ? balance + request.amount_fen : balance - request.amount_fen;
  m1::Record record;
  record.counter = p.counter;
  record.type = p.type;
  record.amount_fen = p.amount_fen;
  record.balance_after_fen = after;
  record.epoch2000_s =
      static_cast<std::uint32_t>(protocol::epoch2000_from_datetime(request.datetime));
  record.terminal_low = get_u16be(options_.terminal, 4);
  M1Transaction t{
      ops.uid(),          p.counter,          p.type, p.balance_before_fen, p.amount_fen,
      record.epoch2000_s, record.terminal_low};

  // From S1 on the card may hold part of this transaction: a failure leaves a grey record.
  auto failed = [&](const Status& s, const char* step) {
    keep_grey(t);
    return refusal_of(s, step);
  };
  const std::uint8_t record_block = l.record_blocks[p.slot];
  if (Status s = ops.write(l.info_block, p.encode()); !s) return failed(s, "S1 write 24");
  if (Status s = ops.write(record_block, record.encode()); !s) return failed(s, "S2 record");
  Result<Block> back = ops.read(record_block);
  if (!back) return failed(back.status(), "S2 read back");
  if (*back != record.encode()) {
    return failed(Status(Errc::kRejected, "record did not verify"), "S2 read back");
  }
  if (Status s = ops.write(l.info_backup_block, p.encode()); !s) return failed(s, "S3 write 25");
  if (Status s = ops.value(load ? m1::cmd::kIncrement : m1::cmd::kDecrement, l.purse_block,
                           request.amount_fen);
      !s) {
    return failed(s, "S4 value");
  }
  if (Status s = ops.transfer(l.purse_block); !s) return failed(s, "S4 transfer");
  Result<Block> purse = ops.read(l.purse_block);
  if (!purse) return failed(purse.status(), "S4 read back");
  const auto v = m1::decode_value(*purse);
  if (!v || v->value != static_cast<std::int32_t>(after)) {
    return failed(Status(Errc::kRejected, "purse did not verify"), "S4 read back");
  }
  if (Status s =
          ops.copy_value(l.purse_block, l.purse_backup_block, static_cast<std::int32_t>(after));
      !s) {
    return failed(s, "S5 backup");
  }
  ProcessInfo done = p;
  done.state = ProcessInfo::kDone;
  if (Status s = ops.write(l.info_block, done.encode()); !s) return failed(s, "S6 write 24");
  if (Status s = ops.write(l.info_backup_block, done.encode()); !s) {
    return failed(s, "S7 write 25");
  }
  M1Result r;
  r.rolled_back = rolled_back;
  r.txn = t;
  return r;
}

}  // namespace citycard::devices
