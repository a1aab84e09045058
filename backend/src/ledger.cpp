#include "citycard/backend/ledger.h"

#include <map>

namespace citycard::backend {

std::string account::payable(std::string_view operator_id) {
  return std::string(kPayablePrefix) + std::string(operator_id);
}

namespace {

Status check_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxAccountNameBytes) {
    return Status(Errc::kInvalidArgument, "account name must be 1.." +
                                              std::to_string(kMaxAccountNameBytes) +
                                              " bytes, got " + std::to_string(name.size()));
  }
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return Status(Errc::kInvalidArgument, "account name has a control character");
    }
  }
  return Status::ok();
}

// Checks everything that can be checked without the database, so a refused posting never
// touches it.
Status check_posting(const Posting& p) {
  if (p.kind.empty() || p.kind.size() > kMaxPostingTextBytes ||
      p.reference.size() > kMaxPostingTextBytes) {
    return Status(Errc::kInvalidArgument, "posting kind must be 1.." +
                                              std::to_string(kMaxPostingTextBytes) +
                                              " bytes and reference at most as long");
  }
  if (p.entries.size() < 2 || p.entries.size() > kMaxEntriesPerPosting) {
    return Status(Errc::kInvalidArgument, "posting " + p.kind + " " + p.reference + " has " +
                                              std::to_string(p.entries.size()) +
                                              " entries; a posting needs 2.." +
                                              std::to_string(kMaxEntriesPerPosting));
  }
  std::int64_t sum = 0;
  for (const Entry& e : p.entries) {
    if (Status s = check_name(e.account); !s.is_ok()) return s;
    if (e.amount_fen == 0) {
      return Status(Errc::kInvalidArgument,
                    "posting " + p.kind + " " + p.reference + " has a zero entry on " + e.account);
    }
    if (__builtin_add_overflow(sum, e.amount_fen, &sum)) {
      return Status(Errc::kInvalidArgument,
                    "posting " + p.kind + " " + p.reference + " overflows 64-bit fen");
    }
  }
  if (sum != 0) {
    return Status(Errc::kInvalidArgument, "posting " + p.kind + " " + p.reference +
                                              " does not balance: entries sum to " +
                                              std::to_string(sum) + " fen");
  }
  return Status::ok();
}

}  // namespace

Status Ledger::open_account(std::string_view name) {
  if (Status s = check_name(name); !s.is_ok()) return s;
  return store_
      .query(
          "INSERT INTO accounts(name, balance_fen, opened_at_us) VALUES (?1, 0, ?2) "
          "ON CONFLICT(name) DO NOTHING")
      .bind(1, name)
      .bind(2, calendar_.now_us())
      .run();
}

Result<std::int64_t> Ledger::post(const Posting& p) {
  if (Status s = check_posting(p); !s.is_ok()) return s;
  auto txn = store_.begin();
  if (!txn.is_ok()) return txn.status();

  // Resolve every account and check the new balances before writing anything.
  struct Target {
    std::int64_t id;
    std::int64_t amount_fen;
  };
  std::vector<Target> targets;
  targets.reserve(p.entries.size());
  std::map<std::int64_t, std::int64_t> new_balance;
  for (const Entry& e : p.entries) {
    std::int64_t id = 0, current = 0;
    {
      auto q = store_.query("SELECT id, balance_fen FROM accounts WHERE name = ?1");
      q.bind(1, e.account);
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) {
        return Status(Errc::kNotFound,
                      "posting " + p.kind + " " + p.reference + ": no account " + e.account);
      }
      id = q.column_int64(0);
      current = q.column_int64(1);
    }
    auto it = new_balance.emplace(id, current).first;  // keeps the first, for repeats
    if (__builtin_add_overflow(it->second, e.amount_fen, &it->second)) {
      return Status(Errc::kInvalidArgument, "posting " + p.kind + " " + p.reference +
                                                " overflows the balance of " + e.account);
    }
    targets.push_back({id, e.amount_fen});
  }

  if (Status s = store_.query("INSERT INTO postings(kind, reference, at_us) VALUES (?1, ?2, ?3)")
                     .bind(1, p.kind)
                     .bind(2, p.reference)
                     .bind(3, calendar_.now_us())
                     .run();
      !s.is_ok()) {
    return s;
  }
  const std::int64_t posting_id = store_.last_insert_rowid();
  for (const Target& t : targets) {
    if (Status s = store_
                       .query("INSERT INTO entries(posting_id, account_id, amount_fen) "
                              "VALUES (?1, ?2, ?3)")
                       .bind(1, posting_id)
                       .bind(2, t.id)
                       .bind(3, t.amount_fen)
                       .run();
        !s.is_ok()) {
      return s;
    }
  }
  for (const auto& [id, balance_fen] : new_balance) {
    if (Status s = store_.query("UPDATE accounts SET balance_fen = ?2 WHERE id = ?1")
                       .bind(1, id)
                       .bind(2, balance_fen)
                       .run();
        !s.is_ok()) {
      return s;
    }
  }
  if (Status s = txn->commit(); !s.is_ok()) return s;
  return posting_id;
}

Result<std::int64_t> Ledger::balance(std::string_view name) const {
  auto q = store_.query("SELECT balance_fen FROM accounts WHERE name = ?1");
  q.bind(1, name);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return Status(Errc::kNotFound, "no account " + std::string(name));
  return q.column_int64(0);
}

Result<std::vector<AccountBalance>> Ledger::balances(std::string_view prefix) const {
  // substr() rather than LIKE: operator ids may contain % or _.
  auto q = store_.query(
      "SELECT name, balance_fen FROM accounts WHERE substr(name, 1, length(?1)) = ?1 "
      "ORDER BY name");
  q.bind(1, prefix);
  std::vector<AccountBalance> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) break;
    out.push_back({q.column_text(0), q.column_int64(1)});
  }
  return out;
}

Result<TrialBalance> Ledger::trial_balance() const {
  auto all = balances("");
  if (!all.is_ok()) return all.status();
  TrialBalance tb;
  tb.accounts = std::move(all).value();
  for (const AccountBalance& a : tb.accounts) {
    if (__builtin_add_overflow(tb.sum_fen, a.balance_fen, &tb.sum_fen)) {
      return Status(Errc::kInternal, "trial balance overflows 64-bit fen");
    }
  }
  return tb;
}

Result<std::int64_t> Ledger::posting_count() const {
  auto q = store_.query("SELECT count(*) FROM postings");
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  return q.column_int64(0);
}

Status Ledger::verify() const {
  {
    auto q = store_.query(
        "SELECT a.name, a.balance_fen, coalesce(sum(e.amount_fen), 0) AS total "
        "FROM accounts a LEFT JOIN entries e ON e.account_id = a.id "
        "GROUP BY a.id HAVING a.balance_fen <> total ORDER BY a.name LIMIT 1");
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (*row) {
      return Status(Errc::kInternal,
                    "account " + q.column_text(0) + " says " + std::to_string(q.column_int64(1)) +
                        " fen but its entries sum to " + std::to_string(q.column_int64(2)));
    }
  }
  {
    auto q = store_.query(
        "SELECT p.id, p.kind, p.reference, sum(e.amount_fen) AS total FROM postings p "
        "JOIN entries e ON e.posting_id = p.id GROUP BY p.id HAVING total <> 0 LIMIT 1");
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (*row) {
      return Status(Errc::kInternal, "posting " + std::to_string(q.column_int64(0)) + " (" +
                                         q.column_text(1) + " " + q.column_text(2) + ") sums to " +
                                         std::to_string(q.column_int64(3)));
    }
  }
  auto tb = trial_balance();
  if (!tb.is_ok()) return tb.status();
  if (!tb->balanced()) {
    return Status(Errc::kInternal,
                  "trial balance is " + std::to_string(tb->sum_fen) + " fen, not zero");
  }
  return Status::ok();
}

}  // namespace citycard::backend
