#include "citycard/backend/cards.h"

#include <openssl/evp.h>

#include <algorithm>

#include "citycard/backend/money.h"
#include "sql_util.h"

namespace citycard::backend {

using protocol::Serial8;

namespace {

constexpr std::initializer_list<Role> kDesk = {Role::kAdmin, Role::kFinance};

Status order_state_blocks(Store& store, const Serial8& card, const char* what) {
  // Orders in states 1 (paid, waiting for the card) and 2 (authorized, in doubt) hold money
  // for this card that a refund or cancel would strand.
  auto q = store.query(
      "SELECT count(*) FROM recharge_orders WHERE card_serial = ?1 AND state IN (1, 2)");
  q.bind_blob(1, card);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (q.column_int64(0) > 0) {
    return Status(Errc::kRejected, std::string(what) + " of card " + to_hex(card) +
                                       " refused: it has pending or in-doubt loads; collect "
                                       "or reverse them first");
  }
  return Status::ok();
}

}  // namespace

std::string Cards::id_hash(const std::string& id_number) const {
  const std::string input =
      "citycard holder id|" + std::to_string(options_.id_salt) + "|" + id_number;
  Bytes out(EVP_MAX_MD_SIZE);
  unsigned int n = 0;
  if (EVP_Digest(input.data(), input.size(), out.data(), &n, EVP_sha256(), nullptr) != 1) {
    __builtin_trap();  // SHA-256 of a short string cannot fail
  }
  out.resize(n);
  return to_hex(out);
}

Status Cards::ensure_ext(const Serial8& card) {
  return store_.query("INSERT INTO card_ext(serial) VALUES (?1) ON CONFLICT DO NOTHING")
      .bind_blob(1, card)
      .run();
}

Result<protocol::CardImage> Cards::issue(const Session& by, const IssueRequest& req) {
  return users_.audited(
      by, "issue_card", req.holder ? "named" : "anonymous", [&]() -> Result<protocol::CardImage> {
        if (Status s = users_.require(by, kDesk, "issue_card"); !s.is_ok()) return s;
        if (req.holder) {
          const HolderInfo& h = *req.holder;
          const std::size_t max = options_.text_max_bytes;
          for (Status s : {sql::check_text("holder name", h.name, max, true),
                           sql::check_text("id number", h.id_number, max, true),
                           sql::check_text("phone", h.phone, max, false),
                           sql::check_text("email", h.email, max, false)}) {
            if (!s.is_ok()) return s;
          }
        }
        auto image = issuance_.issue_card(req.card);
        if (!image.is_ok()) return image.status();
        if (Status s = ensure_ext(image->serial); !s.is_ok()) return s;
        if (req.holder) {
          const HolderInfo& h = *req.holder;
          const std::string hash = id_hash(h.id_number);
          // One holder per identity: a second named card joins the same online account.
          auto q = store_.query(
              "INSERT INTO holders(name, id_hash, phone, email, notify, account_fen, "
              "created_at_us) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6) ON CONFLICT(id_hash) DO "
              "UPDATE SET name = excluded.name, phone = excluded.phone, email = excluded.email, "
              "notify = excluded.notify RETURNING id");
          q.bind(1, h.name)
              .bind(2, hash)
              .bind(3, h.phone)
              .bind(4, h.email)
              .bind(5, std::int64_t{h.notify ? 1 : 0})
              .bind(6, calendar_.now_us());
          auto row = q.step();
          if (!row.is_ok()) return row.status();
          const std::int64_t holder_id = q.column_int64(0);
          if (Status s = store_.query("UPDATE card_ext SET holder_id = ?2 WHERE serial = ?1")
                             .bind_blob(1, image->serial)
                             .bind(2, holder_id)
                             .run();
              !s.is_ok()) {
            return s;
          }
          if (Status s = notifier_.on_issue(image->serial); !s.is_ok()) return s;
        }
        return image;
      });
}

Result<CardInfo> Cards::info(const Serial8& card) const {
  auto rec = issuance_.card(card);
  if (!rec.is_ok()) return rec.status();
  CardInfo out;
  out.card = std::move(rec).value();
  {
    auto q = store_.query(
        "SELECT x.online_counter, x.replaced_by, x.status_reason, h.id, h.name, h.id_hash, "
        "h.phone, h.email, h.notify, h.account_fen FROM card_ext x "
        "LEFT JOIN holders h ON h.id = x.holder_id WHERE x.serial = ?1");
    q.bind_blob(1, card);
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (*row) {
      if (!q.column_is_null(0)) out.online_counter = static_cast<std::uint16_t>(q.column_int64(0));
      if (!q.column_is_null(1)) {
        Serial8 s{};
        if (sql::copy_blob(q.column_blob(1), s)) out.replaced_by = s;
      }
      out.status_reason = q.column_text(2);
      if (!q.column_is_null(3)) {
        HolderRecord h;
        h.id = q.column_int64(3);
        h.name = q.column_text(4);
        h.id_hash = q.column_text(5);
        h.phone = q.column_text(6);
        h.email = q.column_text(7);
        h.notify = q.column_int64(8) != 0;
        h.account_fen = q.column_int64(9);
        out.holder = std::move(h);
      }
    }
  }
  auto listed = risk_.listed(card);
  if (!listed.is_ok()) return listed.status();
  out.blacklisted = *listed;
  return out;
}

Result<CardInfo> Cards::info(const Session& by, const Serial8& card) const {
  if (Status s = users_.require(by, kDesk, "card info"); !s.is_ok()) return s;
  return info(card);
}

Status Cards::set_status(const Serial8& card, CardStatus status, const std::string& reason) {
  if (Status s = store_.query("UPDATE cards SET status = ?2 WHERE serial = ?1")
                     .bind_blob(1, card)
                     .bind(2, static_cast<std::int64_t>(status))
                     .run();
      !s.is_ok()) {
    return s;
  }
  if (Status s = ensure_ext(card); !s.is_ok()) return s;
  if (Status s = store_.query("UPDATE card_ext SET status_reason = ?2 WHERE serial = ?1")
                     .bind_blob(1, card)
                     .bind(2, reason)
                     .run();
      !s.is_ok()) {
    return s;
  }
  if (status == CardStatus::kActive) return risk_.unlist_card(card);
  return risk_.list_card(
      card, std::string(card_status_name(status)) + (reason.empty() ? "" : ": " + reason));
}

Status Cards::transition(const Session& by, const char* action, const Serial8& card,
                         std::initializer_list<CardStatus> from, CardStatus to,
                         const std::string& reason, bool named_only) {
  return users_.audited(by, action, to_hex(card), [&]() -> Status {
    if (Status s = users_.require(by, kDesk, action); !s.is_ok()) return s;
    if (Status s = sql::check_text("reason", reason, options_.text_max_bytes, false); !s.is_ok()) {
      return s;
    }
    auto c = info(card);
    if (!c.is_ok()) return c.status();
    if (named_only && !c->holder) {
      return Status(Errc::kRejected, std::string(action) + ": card " + to_hex(card) +
                                         " is anonymous; only named cards can be reported lost");
    }
    if (std::find(from.begin(), from.end(), c->card.status) == from.end()) {
      return Status(Errc::kRejected, std::string(action) + ": card " + to_hex(card) + " is " +
                                         card_status_name(c->card.status));
    }
    return set_status(card, to, reason);
  });
}

Status Cards::report_lost(const Session& by, const Serial8& card) {
  return transition(by, "report_lost", card, {CardStatus::kActive}, CardStatus::kLost, "", true);
}
Status Cards::report_found(const Session& by, const Serial8& card) {
  return transition(by, "report_found", card, {CardStatus::kLost}, CardStatus::kActive, "", true);
}
Status Cards::freeze(const Session& by, const Serial8& card, const std::string& reason) {
  return transition(by, "freeze", card, {CardStatus::kActive}, CardStatus::kFrozen, reason, false);
}
Status Cards::unfreeze(const Session& by, const Serial8& card) {
  return transition(by, "unfreeze", card, {CardStatus::kFrozen}, CardStatus::kActive, "", false);
}

Status Cards::unblock(const Session& by, const Serial8& card) {
  return users_.audited(by, "unblock", to_hex(card), [&]() -> Status {
    if (Status s = users_.require(by, {Role::kAdmin}, "unblock"); !s.is_ok()) return s;
    auto c = issuance_.card(card);
    if (!c.is_ok()) return c.status();
    if (c->status != CardStatus::kBlocked) {
      return Status(Errc::kRejected,
                    "unblock: card " + to_hex(card) + " is " + card_status_name(c->status));
    }
    return set_status(card, CardStatus::kActive, "");
  });
}

Status Cards::block(const Serial8& card, const std::string& reason) {
  auto c = issuance_.card(card);
  if (!c.is_ok()) return c.status();
  // A card already out of use stays in its final state; it is on the list anyway.
  if (c->status != CardStatus::kActive && c->status != CardStatus::kFrozen &&
      c->status != CardStatus::kLost) {
    return Status::ok();
  }
  return set_status(card, CardStatus::kBlocked, reason);
}

Status Cards::cancel_issue(const Session& by, const Serial8& card) {
  return users_.audited(by, "cancel_issue", to_hex(card), [&]() -> Status {
    if (Status s = users_.require(by, kDesk, "cancel_issue"); !s.is_ok()) return s;
    auto c = info(card);
    if (!c.is_ok()) return c.status();
    if (c->card.status != CardStatus::kActive) {
      return Status(Errc::kRejected, "cancel_issue: card " + to_hex(card) + " is " +
                                         card_status_name(c->card.status));
    }
    // Used: a purchase cleared, or any recharge order ever made for it.
    auto orders = store_.query("SELECT count(*) FROM recharge_orders WHERE card_serial = ?1");
    orders.bind_blob(1, card);
    auto row = orders.step();
    if (!row.is_ok()) return row.status();
    if (c->card.last_counter || orders.column_int64(0) > 0) {
      return Status(Errc::kRejected,
                    "cancel_issue: card " + to_hex(card) + " has been used; refund it instead");
    }
    const std::int64_t balance = c->card.balance_fen, deposit = c->card.deposit_fen;
    if (Status s =
            store_.query("UPDATE cards SET balance_fen = 0, deposit_fen = 0 WHERE serial = ?1")
                .bind_blob(1, card)
                .run();
        !s.is_ok()) {
      return s;
    }
    if (balance + deposit > 0) {
      Posting p{"cancel_issue", "card " + c->card.card_number, {}};
      if (balance > 0) p.entries.push_back({std::string(account::kCardFloat), balance});
      if (deposit > 0) p.entries.push_back({std::string(account::kDeposits), deposit});
      p.entries.push_back({std::string(account::kIssuerCash), -(balance + deposit)});
      if (auto posted = ledger_.post(p); !posted.is_ok()) return posted.status();
    }
    return set_status(card, CardStatus::kCancelled, "issue cancelled");
  });
}

Result<RefundResult> Cards::refund(const Session& by, const Serial8& card,
                                   std::int64_t card_balance_fen) {
  return users_.audited(
      by, "refund_card", to_hex(card) + " " + std::to_string(card_balance_fen),
      [&]() -> Result<RefundResult> {
        if (Status s = users_.require(by, kDesk, "refund_card"); !s.is_ok()) return s;
        auto c = info(card);
        if (!c.is_ok()) return c.status();
        if (c->card.status != CardStatus::kActive) {
          return Status(Errc::kRejected, "refund_card: card " + to_hex(card) + " is " +
                                             card_status_name(c->card.status) +
                                             "; only an active card in hand can be refunded");
        }
        if (card_balance_fen < 0) {
          return Status(Errc::kInvalidArgument, "card balance read cannot be negative");
        }
        if (card_balance_fen > c->card.balance_fen) {
          return Status(Errc::kRejected, "refund_card: card " + to_hex(card) + " says it holds " +
                                             std::to_string(card_balance_fen) +
                                             " fen, more than the " +
                                             std::to_string(c->card.balance_fen) +
                                             " the backend believes; investigate before paying");
        }
        if (Status s = order_state_blocks(store_, card, "refund"); !s.is_ok()) return s;
        RefundResult r;
        r.balance_fen = card_balance_fen;
        r.deposit_fen = c->card.deposit_fen;
        r.in_flight_fen = c->card.balance_fen - card_balance_fen;
        if (Status s = store_
                           .query("UPDATE cards SET balance_fen = balance_fen - ?2, "
                                  "deposit_fen = 0 WHERE serial = ?1")
                           .bind_blob(1, card)
                           .bind(2, r.balance_fen)
                           .run();
            !s.is_ok()) {
          return s;
        }
        if (r.total_fen() > 0) {
          Posting p{"refund_card", "card " + c->card.card_number, {}};
          if (r.balance_fen > 0)
            p.entries.push_back({std::string(account::kCardFloat), r.balance_fen});
          if (r.deposit_fen > 0)
            p.entries.push_back({std::string(account::kDeposits), r.deposit_fen});
          p.entries.push_back({std::string(account::kIssuerCash), -r.total_fen()});
          if (auto posted = ledger_.post(p); !posted.is_ok()) return posted.status();
        }
        if (Status s = set_status(card, CardStatus::kRefunded, "refunded"); !s.is_ok()) return s;
        return r;
      });
}

Result<protocol::CardImage> Cards::replace(const Session& by, const Serial8& old_card) {
  return users_.audited(by, "replace_card", to_hex(old_card), [&]() -> Result<protocol::CardImage> {
    if (Status s = users_.require(by, kDesk, "replace_card"); !s.is_ok()) return s;
    auto c = info(old_card);
    if (!c.is_ok()) return c.status();
    const bool lost_named = c->card.status == CardStatus::kLost && c->holder;
    if (c->card.status != CardStatus::kActive && !lost_named) {
      return Status(Errc::kRejected, "replace_card: card " + to_hex(old_card) + " is " +
                                         card_status_name(c->card.status));
    }
    {
      auto q =
          store_.query("SELECT count(*) FROM recharge_orders WHERE card_serial = ?1 AND state = 2");
      q.bind_blob(1, old_card);
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (q.column_int64(0) > 0) {
        return Status(Errc::kRejected, "replace_card: a load of card " + to_hex(old_card) +
                                           " is in doubt; present the card once more");
      }
    }
    const std::int64_t balance = std::max<std::int64_t>(c->card.balance_fen, 0);
    const std::int64_t deposit = c->card.deposit_fen;
    CardParams p;
    p.card_type = c->card.card_type;
    p.family = c->card.family;
    p.algorithm = c->card.algorithm;
    p.overdraft_limit_fen = c->card.overdraft_limit_fen;
    auto image = issuance_.issue_card(p);
    if (!image.is_ok()) return image.status();
    const Serial8 fresh = image->serial;
    if (Status s = store_
                       .query("UPDATE cards SET balance_fen = ?2, deposit_fen = ?3 "
                              "WHERE serial = ?1")
                       .bind_blob(1, fresh)
                       .bind(2, balance)
                       .bind(3, deposit)
                       .run();
        !s.is_ok()) {
      return s;
    }
    if (Status s = store_
                       .query("UPDATE cards SET balance_fen = balance_fen - ?2, "
                              "deposit_fen = 0 WHERE serial = ?1")
                       .bind_blob(1, old_card)
                       .bind(2, balance)
                       .run();
        !s.is_ok()) {
      return s;
    }
    if (Status s = ensure_ext(fresh); !s.is_ok()) return s;
    if (Status s = ensure_ext(old_card); !s.is_ok()) return s;
    // Holder, points and level follow the person; pending loads and rebates follow the
    // money.
    if (Status s = store_
                       .query("UPDATE card_ext SET (holder_id, points, spend_fen, level) = "
                              "(SELECT holder_id, points, spend_fen, level FROM card_ext "
                              "WHERE serial = ?2) WHERE serial = ?1")
                       .bind_blob(1, fresh)
                       .bind_blob(2, old_card)
                       .run();
        !s.is_ok()) {
      return s;
    }
    if (Status s = store_
                       .query("UPDATE card_ext SET points = 0, replaced_by = ?2 "
                              "WHERE serial = ?1")
                       .bind_blob(1, old_card)
                       .bind_blob(2, fresh)
                       .run();
        !s.is_ok()) {
      return s;
    }
    for (const char* sql :
         {"UPDATE recharge_orders SET card_serial = ?2, auth_counter = NULL WHERE "
          "card_serial = ?1 AND state = 1",
          "UPDATE rebate_installments SET card_serial = ?2 WHERE card_serial = ?1 AND "
          "state = 0"}) {
      if (Status s = store_.query(sql).bind_blob(1, old_card).bind_blob(2, fresh).run();
          !s.is_ok()) {
        return s;
      }
    }
    if (balance + deposit > 0) {
      Posting post{"replace_card", to_hex(old_card) + " -> " + to_hex(fresh), {}};
      if (balance > 0) {
        post.entries.push_back({std::string(account::kCardFloat), balance});
        post.entries.push_back({std::string(account::kCardFloat), -balance});
      }
      if (deposit > 0) {
        post.entries.push_back({std::string(account::kDeposits), deposit});
        post.entries.push_back({std::string(account::kDeposits), -deposit});
      }
      if (auto posted = ledger_.post(post); !posted.is_ok()) return posted.status();
    }
    if (Status s = set_status(old_card, CardStatus::kReplaced, "replaced by " + to_hex(fresh));
        !s.is_ok()) {
      return s;
    }
    image->balance_fen = static_cast<std::uint32_t>(balance);
    return image;
  });
}

Status Cards::update_contact(const Session& by, const Serial8& card, const std::string& phone,
                             const std::string& email, bool notify) {
  return users_.audited(by, "update_contact", to_hex(card), [&]() -> Status {
    if (Status s = users_.require(by, kDesk, "update_contact"); !s.is_ok()) return s;
    for (Status s : {sql::check_text("phone", phone, options_.text_max_bytes, false),
                     sql::check_text("email", email, options_.text_max_bytes, false)}) {
      if (!s.is_ok()) return s;
    }
    auto c = info(card);
    if (!c.is_ok()) return c.status();
    if (!c->holder) return Status(Errc::kRejected, "card " + to_hex(card) + " is anonymous");
    return store_.query("UPDATE holders SET phone = ?2, email = ?3, notify = ?4 WHERE id = ?1")
        .bind(1, c->holder->id)
        .bind(2, phone)
        .bind(3, email)
        .bind(4, std::int64_t{notify ? 1 : 0})
        .run();
  });
}

Status Cards::set_online_counter(const Serial8& card, std::uint16_t counter) {
  if (Status s = ensure_ext(card); !s.is_ok()) return s;
  return store_.query("UPDATE card_ext SET online_counter = ?2 WHERE serial = ?1")
      .bind_blob(1, card)
      .bind(2, std::int64_t{counter})
      .run();
}

Status Cards::credit(const Serial8& card, std::int64_t amount_fen) {
  return store_.query("UPDATE cards SET balance_fen = balance_fen + ?2 WHERE serial = ?1")
      .bind_blob(1, card)
      .bind(2, amount_fen)
      .run();
}

Status Cards::credit_account(std::int64_t holder_id, std::int64_t amount_fen) {
  auto q = store_.query(
      "UPDATE holders SET account_fen = account_fen + ?2 WHERE id = ?1 AND "
      "account_fen + ?2 <= ?3 RETURNING account_fen");
  q.bind(1, holder_id).bind(2, amount_fen).bind(3, options_.account_max_fen);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) {
    return Status(Errc::kRejected, "online account " + std::to_string(holder_id) +
                                       " would hold more than " +
                                       std::to_string(options_.account_max_fen) + " fen");
  }
  return Status::ok();
}

Status Cards::debit_account(std::int64_t holder_id, std::int64_t amount_fen) {
  auto q = store_.query(
      "UPDATE holders SET account_fen = account_fen - ?2 WHERE id = ?1 AND account_fen >= ?2 "
      "RETURNING account_fen");
  q.bind(1, holder_id).bind(2, amount_fen);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) {
    return Status(Errc::kInsufficientFunds, "online account " + std::to_string(holder_id) +
                                                " holds less than " + std::to_string(amount_fen) +
                                                " fen");
  }
  return Status::ok();
}

Result<std::int64_t> Cards::account_sum_fen() const {
  return sql::scalar(store_, "SELECT coalesce(sum(account_fen), 0) FROM holders");
}

}  // namespace citycard::backend
