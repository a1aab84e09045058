#include "citycard/backend/backend.h"

#include <string_view>
#include <utility>

#include "schema.h"

namespace citycard::backend {
namespace {

Status validate(const BackendOptions& o) {
  if (Status s = validate_options(o.issuance); !s.is_ok()) return s;
  if (o.ingest.max_batch_records == 0 ||
      o.ingest.max_batch_records > Backend::kMaxBatchRecordsLimit) {
    return Status(Errc::kInvalidArgument,
                  "max_batch_records must be 1.." + std::to_string(Backend::kMaxBatchRecordsLimit));
  }
  if (o.ingest.max_text_field_bytes == 0) {
    return Status(Errc::kInvalidArgument, "max_text_field_bytes is 0");
  }
  return Status::ok();
}

}  // namespace

Backend::Backend(BackendOptions options, const sim::Clock& clock)
    : options_(std::move(options)), calendar_(clock, options_.clock_origin_epoch2000_s) {}

Backend::~Backend() = default;

Result<std::unique_ptr<Backend>> Backend::open(const std::string& db_path, BackendOptions options,
                                               const sim::Clock& clock) {
  if (Status s = validate(options); !s.is_ok()) return s;
  std::unique_ptr<Backend> b(new Backend(std::move(options), clock));
  const BackendOptions& o = b->options_;

  auto store = Store::open(db_path, o.store);
  if (!store.is_ok()) return store.status();
  b->store_ = std::move(store).value();
  if (Status s = b->store_->migrate(schema::migrations()); !s.is_ok()) return s;

  auto keys = Keys::open(*b->store_, o.key_seed);
  if (!keys.is_ok()) return keys.status();
  b->keys_ = std::move(keys).value();

  b->ledger_ = std::make_unique<Ledger>(*b->store_, b->calendar_);
  {
    auto txn = b->store_->begin();
    if (!txn.is_ok()) return txn.status();
    for (std::string_view name :
         {account::kIssuerCash, account::kCardFloat, account::kDeposits, account::kFeeIncome}) {
      if (Status s = b->ledger_->open_account(name); !s.is_ok()) return s;
    }
    if (Status s = txn->commit(); !s.is_ok()) return s;
  }

  b->issuance_ =
      std::make_unique<Issuance>(*b->store_, *b->ledger_, *b->keys_, b->calendar_, o.issuance);
  b->ingest_ = std::make_unique<Ingest>(*b->store_, *b->ledger_, *b->keys_, *b->issuance_,
                                        b->calendar_, o.ingest);
  b->clearing_ = std::make_unique<Clearing>(*b->store_, *b->ledger_);
  b->service_ = std::make_unique<Service>(*b->ingest_, *b->issuance_);
  if (Status s = b->open_money(); !s.is_ok()) return s;
  return b;
}

Status Backend::check_conservation() const {
  if (Status s = ledger_->verify(); !s.is_ok()) return s;

  auto card_float = ledger_->balance(account::kCardFloat);
  if (!card_float.is_ok()) return card_float.status();
  auto cards = issuance_->card_balance_sum_fen();
  if (!cards.is_ok()) return cards.status();
  if (*card_float != -*cards) {
    return Status(Errc::kInternal, "card_float is " + std::to_string(*card_float) +
                                       " fen but cards are believed to hold " +
                                       std::to_string(*cards) + " (difference " +
                                       std::to_string(*card_float + *cards) + ")");
  }

  auto deposits = ledger_->balance(account::kDeposits);
  if (!deposits.is_ok()) return deposits.status();
  auto held = issuance_->card_deposit_sum_fen();
  if (!held.is_ok()) return held.status();
  if (*deposits != -*held) {
    return Status(Errc::kInternal, "deposits account is " + std::to_string(*deposits) +
                                       " fen but cards hold deposits of " + std::to_string(*held));
  }
  if (Status s = check_money_conservation(); !s.is_ok()) return s;
  return clearing_->reconcile_with_ledger();
}

BackendCounters Backend::counters() const {
  BackendCounters c;
  c.ingest = ingest_->counters();
  c.requests = service_->requests();
  c.error_replies = service_->error_replies();
  return c;
}

}  // namespace citycard::backend
