#include "schema.h"

namespace citycard::backend::schema {
namespace {

// Version 1: the walking skeleton. Conventions:
// - money is INTEGER fen; uint64 values (batch numbers) are stored as their int64 bit pattern;
// - byte fields (serials, terminal ids, TACs, date-times) are BLOBs of checked length;
// - settlement dates are INTEGER YYYYMMDD;
// - times are the run clock's microseconds (at_us).
constexpr const char* kV1 = R"sql(
CREATE TABLE meta(
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE issuer_keys(
  key_version INTEGER PRIMARY KEY CHECK (key_version BETWEEN 0 AND 255),
  purchase BLOB NOT NULL CHECK (length(purchase) = 16),
  load BLOB NOT NULL CHECK (length(load) = 16),
  tac BLOB NOT NULL CHECK (length(tac) = 16),
  batch BLOB NOT NULL CHECK (length(batch) = 16)
);

CREATE TABLE accounts(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  balance_fen INTEGER NOT NULL DEFAULT 0,
  opened_at_us INTEGER NOT NULL
);

CREATE TABLE postings(
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  reference TEXT NOT NULL,
  at_us INTEGER NOT NULL
);

CREATE TABLE entries(
  id INTEGER PRIMARY KEY,
  posting_id INTEGER NOT NULL REFERENCES postings(id),
  account_id INTEGER NOT NULL REFERENCES accounts(id),
  amount_fen INTEGER NOT NULL CHECK (amount_fen <> 0)
);
CREATE INDEX entries_by_account ON entries(account_id);
CREATE INDEX entries_by_posting ON entries(posting_id);

CREATE TABLE cards(
  serial BLOB PRIMARY KEY CHECK (length(serial) = 8),
  card_number TEXT NOT NULL UNIQUE,
  family INTEGER NOT NULL,
  card_type INTEGER NOT NULL,
  status INTEGER NOT NULL,
  key_version INTEGER NOT NULL REFERENCES issuer_keys(key_version),
  algorithm_id INTEGER NOT NULL,
  balance_fen INTEGER NOT NULL,        -- what the backend believes the card holds
  last_counter INTEGER,                -- highest offline counter cleared; NULL: none yet
  deposit_fen INTEGER NOT NULL,
  overdraft_limit_fen INTEGER NOT NULL,
  valid_from INTEGER NOT NULL,         -- YYYYMMDD
  valid_to INTEGER NOT NULL,
  issued_at_us INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE terminals(
  terminal_id BLOB PRIMARY KEY CHECK (length(terminal_id) = 6),
  operator_id TEXT NOT NULL,
  route TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  device_id TEXT NOT NULL,
  key_version INTEGER NOT NULL REFERENCES issuer_keys(key_version),
  registered_at_us INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per processed batch; `ack` is the serialized UploadAck a replay gets back.
CREATE TABLE batches(
  terminal_id BLOB NOT NULL REFERENCES terminals(terminal_id),
  batch_no INTEGER NOT NULL,
  batch_mac BLOB NOT NULL,
  record_count INTEGER NOT NULL,
  total_amount_fen INTEGER NOT NULL,
  accepted INTEGER NOT NULL DEFAULT 0,
  duplicates INTEGER NOT NULL DEFAULT 0,
  rejected INTEGER NOT NULL DEFAULT 0,
  suspicious INTEGER NOT NULL DEFAULT 0,
  ack BLOB,
  settlement_date INTEGER NOT NULL,
  processed_at_us INTEGER NOT NULL,
  PRIMARY KEY (terminal_id, batch_no)
) WITHOUT ROWID;

-- Accepted purchases: the clearing records.
CREATE TABLE swipes(
  id INTEGER PRIMARY KEY,
  settlement_date INTEGER NOT NULL,
  terminal_id BLOB NOT NULL,
  batch_no INTEGER NOT NULL,
  card_serial BLOB NOT NULL REFERENCES cards(serial),
  card_counter INTEGER NOT NULL,
  balance_before_fen INTEGER NOT NULL,
  amount_fen INTEGER NOT NULL,
  fare_full_fen INTEGER NOT NULL,
  txn_type INTEGER NOT NULL,
  txn_datetime BLOB NOT NULL,
  tac BLOB NOT NULL,
  terminal_seq INTEGER NOT NULL,
  key_version INTEGER NOT NULL,
  algorithm_id INTEGER NOT NULL,
  operator_id TEXT NOT NULL,
  route TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  device TEXT NOT NULL,
  driver TEXT NOT NULL,
  transfer_count INTEGER NOT NULL,
  suspicious INTEGER NOT NULL DEFAULT 0,
  suspicion TEXT NOT NULL DEFAULT '',
  reconciled INTEGER NOT NULL DEFAULT 0,
  posting_id INTEGER REFERENCES postings(id),
  FOREIGN KEY (terminal_id, batch_no) REFERENCES batches(terminal_id, batch_no),
  UNIQUE (card_serial, card_counter),
  UNIQUE (terminal_id, terminal_seq)
);
CREATE INDEX swipes_by_date ON swipes(settlement_date);
CREATE INDEX swipes_by_batch ON swipes(terminal_id, batch_no);

-- Records refused inside an otherwise processed batch, kept for operators.
CREATE TABLE rejected_records(
  id INTEGER PRIMARY KEY,
  terminal_id BLOB NOT NULL,
  batch_no INTEGER NOT NULL,
  record_index INTEGER NOT NULL,
  code INTEGER NOT NULL,
  code_name TEXT NOT NULL,
  message TEXT NOT NULL,
  card_serial BLOB NOT NULL,           -- as uploaded, possibly of the wrong length
  record BLOB NOT NULL,                -- the serialized SwipeRecord
  at_us INTEGER NOT NULL,
  FOREIGN KEY (terminal_id, batch_no) REFERENCES batches(terminal_id, batch_no)
);
)sql";

constexpr Migration kMigrations[] = {{1, kV1}};

}  // namespace

std::span<const Migration> migrations() {
  return kMigrations;
}

}  // namespace citycard::backend::schema
