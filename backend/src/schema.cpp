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

// Version 2: the money side (card lifecycle, recharge, merchants, settlement, risk, fares,
// notifications, users and audit). Same conventions as version 1; every table here is written
// by one component, named in its comment.
constexpr const char* kV2Money = R"sql(
-- users.cpp
CREATE TABLE users(
  username TEXT PRIMARY KEY,
  role INTEGER NOT NULL,
  merchant_id TEXT NOT NULL,
  password_hash BLOB NOT NULL,
  active INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  created_at_us INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE audit_log(
  id INTEGER PRIMARY KEY,
  at_us INTEGER NOT NULL,
  actor TEXT NOT NULL,
  role TEXT NOT NULL,
  merchant_id TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  ok INTEGER NOT NULL,
  result TEXT NOT NULL
);
CREATE INDEX audit_by_action ON audit_log(action);

-- cards.cpp: named cards' holders and their online accounts
CREATE TABLE holders(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  id_hash TEXT NOT NULL UNIQUE,          -- SHA-256 of salt and id number, hex
  phone TEXT NOT NULL,
  email TEXT NOT NULL,
  notify INTEGER NOT NULL,
  account_fen INTEGER NOT NULL CHECK (account_fen >= 0),
  created_at_us INTEGER NOT NULL
);

-- cards.cpp, merchants.cpp, recharge.cpp: what the money side knows of a card beyond cards
CREATE TABLE card_ext(
  serial BLOB PRIMARY KEY REFERENCES cards(serial),
  holder_id INTEGER REFERENCES holders(id),   -- NULL: anonymous
  online_counter INTEGER,                     -- what its next INITIALIZE FOR LOAD should say
  points INTEGER NOT NULL DEFAULT 0 CHECK (points >= 0),
  spend_fen INTEGER NOT NULL DEFAULT 0,
  level INTEGER NOT NULL DEFAULT 0,
  replaced_by BLOB,
  status_reason TEXT NOT NULL DEFAULT '',
  expiry_notified INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- merchants.cpp
CREATE TABLE deployers(
  deployer_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  bank_name TEXT NOT NULL,
  bank_account TEXT NOT NULL,
  account_name TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE merchants(
  merchant_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  kind INTEGER NOT NULL,
  cycle INTEGER NOT NULL,
  txn_fee_bp INTEGER NOT NULL CHECK (txn_fee_bp BETWEEN 0 AND 10000),
  recharge_fee_bp INTEGER NOT NULL CHECK (recharge_fee_bp BETWEEN 0 AND 10000),
  deployer_id TEXT NOT NULL,
  deployer_share_bp INTEGER NOT NULL CHECK (deployer_share_bp BETWEEN 0 AND 10000),
  bank_name TEXT NOT NULL,
  bank_account TEXT NOT NULL,
  account_name TEXT NOT NULL,
  points_coefficient_milli INTEGER NOT NULL,
  points_funding INTEGER NOT NULL,
  recharge_enabled INTEGER NOT NULL,
  start_date INTEGER NOT NULL,
  quota_fen INTEGER NOT NULL DEFAULT 0 CHECK (quota_fen >= 0),
  points_stock INTEGER NOT NULL DEFAULT 0 CHECK (points_stock >= 0),
  settled_through INTEGER NOT NULL,       -- last day an approved settlement covers
  active INTEGER NOT NULL DEFAULT 1,
  created_at_us INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE card_levels(
  level INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  min_spend_fen INTEGER NOT NULL,
  points_pct INTEGER NOT NULL
);

-- Every change of a card's points: awards (kind 0), gifts (1), loads (2). line_id: the
-- settlement line that charged or paid it.
CREATE TABLE points_moves(
  id INTEGER PRIMARY KEY,
  serial BLOB NOT NULL,
  merchant_id TEXT NOT NULL,
  kind INTEGER NOT NULL,
  points INTEGER NOT NULL CHECK (points > 0),
  prepaid_points INTEGER NOT NULL,
  ref TEXT NOT NULL,
  settlement_date INTEGER NOT NULL,
  line_id INTEGER,
  at_us INTEGER NOT NULL
);
CREATE INDEX points_moves_open ON points_moves(merchant_id, line_id);

-- recharge.cpp
CREATE TABLE recharge_orders(
  order_id TEXT PRIMARY KEY,
  channel INTEGER NOT NULL,
  card_serial BLOB NOT NULL,
  holder_id INTEGER NOT NULL,             -- 0: none
  to_account INTEGER NOT NULL,
  amount_fen INTEGER NOT NULL CHECK (amount_fen > 0),
  merchant_id TEXT NOT NULL,
  voucher_code TEXT NOT NULL,
  actor TEXT NOT NULL,
  fingerprint TEXT NOT NULL,              -- the parameters; a repeat must match
  state INTEGER NOT NULL,
  failure TEXT NOT NULL DEFAULT '',
  created_at_us INTEGER NOT NULL,
  created_date INTEGER NOT NULL,
  paid_date INTEGER,
  done_date INTEGER,
  bank_ref TEXT NOT NULL DEFAULT '',
  bank_queries INTEGER NOT NULL DEFAULT 0,
  bank_next_query_us INTEGER,
  bank_gave_up INTEGER NOT NULL DEFAULT 0,
  bank_late_refund INTEGER NOT NULL DEFAULT 0,
  auth_terminal BLOB,
  auth_counter INTEGER,
  auth_balance_before INTEGER,
  auth_random BLOB,
  auth_mac1 BLOB,
  auth_datetime BLOB,
  auth_mac2 BLOB,
  auth_key_version INTEGER,
  tac BLOB,
  tac_verified INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX recharge_orders_by_card ON recharge_orders(card_serial, state);
CREATE INDEX recharge_orders_waiting ON recharge_orders(state, bank_next_query_us);

CREATE TABLE bank_callbacks(
  id INTEGER PRIMARY KEY,
  at_us INTEGER NOT NULL,
  order_id TEXT NOT NULL,
  bank_ref TEXT NOT NULL,
  result INTEGER NOT NULL,
  amount_fen INTEGER NOT NULL,
  outcome TEXT NOT NULL
);

CREATE TABLE vouchers(
  code TEXT PRIMARY KEY,
  issuer TEXT NOT NULL,
  face_fen INTEGER NOT NULL CHECK (face_fen > 0),
  state INTEGER NOT NULL,                 -- 0 unused, 1 redeemed
  order_id TEXT,
  redeemed_date INTEGER,
  settled INTEGER NOT NULL,
  imported_at_us INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE rebate_rules(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  min_recharge_fen INTEGER NOT NULL,
  rebate_fen INTEGER NOT NULL,
  installments INTEGER NOT NULL,
  interval_months INTEGER NOT NULL,
  enabled INTEGER NOT NULL,
  created_at_us INTEGER NOT NULL
);

CREATE TABLE rebate_installments(
  id INTEGER PRIMARY KEY,
  order_id TEXT NOT NULL,
  card_serial BLOB NOT NULL,
  rule_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  amount_fen INTEGER NOT NULL CHECK (amount_fen > 0),
  due_date INTEGER NOT NULL,
  state INTEGER NOT NULL,                 -- 0 owed, 1 released, 2 forfeited
  released_order_id TEXT
);
CREATE INDEX rebate_installments_due ON rebate_installments(state, due_date);

-- settlement.cpp
CREATE TABLE settlement_batches(
  id INTEGER PRIMARY KEY,
  business_date INTEGER NOT NULL,
  state INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  created_at_us INTEGER NOT NULL,
  approved_by TEXT NOT NULL DEFAULT '',
  approved_at_us INTEGER,
  file_attempts INTEGER NOT NULL DEFAULT 0,
  more_due INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE settlement_lines(
  id INTEGER PRIMARY KEY,
  batch_id INTEGER NOT NULL REFERENCES settlement_batches(id),
  party_kind INTEGER NOT NULL,
  party_id TEXT NOT NULL,
  period_from INTEGER NOT NULL,
  period_to INTEGER NOT NULL,
  txn_count INTEGER NOT NULL,
  gross_fen INTEGER NOT NULL,
  fee_fen INTEGER NOT NULL,
  deployer_id TEXT NOT NULL,
  deployer_share_fen INTEGER NOT NULL,
  recharge_count INTEGER NOT NULL,
  recharge_fen INTEGER NOT NULL,
  commission_fen INTEGER NOT NULL,
  points_redeemed_fen INTEGER NOT NULL,
  points_cost_fen INTEGER NOT NULL,
  net_fen INTEGER NOT NULL CHECK (net_fen >= 0),
  bank_name TEXT NOT NULL,
  bank_account TEXT NOT NULL,
  account_name TEXT NOT NULL,
  payout INTEGER NOT NULL,
  payout_ref TEXT NOT NULL DEFAULT '',
  file_date INTEGER
);
CREATE INDEX settlement_lines_by_batch ON settlement_lines(batch_id);
CREATE INDEX settlement_lines_by_party ON settlement_lines(party_kind, party_id);
CREATE INDEX settlement_lines_by_ref ON settlement_lines(payout_ref);

-- risk.cpp
CREATE TABLE blacklist(
  serial BLOB PRIMARY KEY,
  version INTEGER NOT NULL,
  reason TEXT NOT NULL,
  at_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX blacklist_by_version ON blacklist(version);

CREATE TABLE blacklist_changes(
  version INTEGER PRIMARY KEY,
  serial BLOB NOT NULL,
  listed INTEGER NOT NULL,
  reason TEXT NOT NULL,
  at_us INTEGER NOT NULL
);

CREATE TABLE risk_rules(
  id INTEGER PRIMARY KEY,
  kind INTEGER NOT NULL,
  merchant_id TEXT NOT NULL,
  threshold INTEGER NOT NULL,
  action INTEGER NOT NULL,
  enabled INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  created_at_us INTEGER NOT NULL
);

CREATE TABLE risk_events(
  id INTEGER PRIMARY KEY,
  at_us INTEGER NOT NULL,
  rule_id INTEGER NOT NULL,               -- 0: raised by the code (a finding)
  kind INTEGER NOT NULL,
  action INTEGER NOT NULL,
  merchant_id TEXT NOT NULL,
  card_serial BLOB,
  ref TEXT NOT NULL,
  amount_fen INTEGER NOT NULL,
  detail TEXT NOT NULL,
  state INTEGER NOT NULL,
  decided_by TEXT NOT NULL DEFAULT '',
  decided_at_us INTEGER
);
CREATE INDEX risk_events_by_state ON risk_events(state);

-- Per-merchant alarm counters: kind 0 purchases, 1 recharges, per calendar minute.
CREATE TABLE risk_activity(
  merchant_id TEXT NOT NULL,
  kind INTEGER NOT NULL,
  minute INTEGER NOT NULL,
  count INTEGER NOT NULL,
  amount_fen INTEGER NOT NULL,
  PRIMARY KEY (merchant_id, kind, minute)
) WITHOUT ROWID;

-- fares.cpp: versioned parameters for terminals; removed rows are tombstones
CREATE TABLE params(
  kind TEXT NOT NULL,
  key TEXT NOT NULL,
  version INTEGER NOT NULL,
  body BLOB NOT NULL,
  removed INTEGER NOT NULL,
  at_us INTEGER NOT NULL,
  PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE INDEX params_by_version ON params(version);

-- notify.cpp
CREATE TABLE notify_templates(
  event INTEGER NOT NULL,
  channel INTEGER NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY (event, channel)
) WITHOUT ROWID;

CREATE TABLE notifications(
  id INTEGER PRIMARY KEY,
  at_us INTEGER NOT NULL,
  event INTEGER NOT NULL,
  channel INTEGER NOT NULL,
  recipient TEXT NOT NULL,
  card_serial BLOB,
  body TEXT NOT NULL,
  state INTEGER NOT NULL,                 -- 0 queued, 1 sent, 2 failed
  attempts INTEGER NOT NULL,
  error TEXT NOT NULL
);
CREATE INDEX notifications_queued ON notifications(state);
CREATE INDEX notifications_by_card ON notifications(card_serial);
)sql";

// Version 3: the PKI (ca.h). The working CAs' and the RA's private keys are PEM text in
// pki_authorities: the database is the online CA's key store and must be kept like one
// (file mode 0600, backups encrypted). The root's key is not here (key_pem NULL): it is
// offline. Times are Unix seconds (UTC), as X.509 has them.
constexpr const char* kV3Pki = R"sql(
CREATE TABLE pki_authorities(
  name TEXT PRIMARY KEY,              -- 'root', 'national', 'city:3100', 'ra:3100'
  role INTEGER NOT NULL,
  cert_pem TEXT NOT NULL,
  key_pem TEXT,
  crl_number INTEGER NOT NULL DEFAULT 0,
  crl_pem TEXT,
  crl_this_update_s INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE certificates(
  serial TEXT PRIMARY KEY,            -- lower-case hex
  issuer TEXT NOT NULL,               -- pki_authorities.name
  role INTEGER NOT NULL,
  subject TEXT NOT NULL,
  subject_id TEXT NOT NULL,
  not_before_s INTEGER NOT NULL,
  not_after_s INTEGER NOT NULL,
  curve_key BLOB CHECK (curve_key IS NULL OR length(curve_key) = 32),
  cert_pem TEXT NOT NULL,
  issued_at_us INTEGER NOT NULL,
  revoked_at_s INTEGER,               -- NULL: not revoked
  revocation_reason INTEGER
) WITHOUT ROWID;
CREATE INDEX certificates_by_curve_key ON certificates(curve_key) WHERE curve_key IS NOT NULL;
CREATE INDEX certificates_revoked ON certificates(issuer) WHERE revoked_at_s IS NOT NULL;

-- A server's CURVE secret key and the certificate that binds its public half.
CREATE TABLE server_identities(
  name TEXT PRIMARY KEY,
  curve_secret BLOB NOT NULL CHECK (length(curve_secret) = 32),
  key_pem TEXT NOT NULL,
  cert_serial TEXT NOT NULL REFERENCES certificates(serial)
) WITHOUT ROWID;
)sql";

// Version 4: swipes without foreign-key clauses. Every swipe row paid for three parent lookups
// (its card, its batch, its posting) on insert, about a fifth of ingest's SQLite time; ingest
// itself guarantees each (it reads the card, inserts the batch row and the posting in the same
// transaction before the swipe). The table is rebuilt because SQLite cannot drop a constraint;
// no table references swipes. Columns, keys and indexes are otherwise unchanged.
constexpr const char* kV4SwipesNoForeignKeys = R"sql(
CREATE TABLE swipes_v4(
  id INTEGER PRIMARY KEY,
  settlement_date INTEGER NOT NULL,
  terminal_id BLOB NOT NULL,
  batch_no INTEGER NOT NULL,
  card_serial BLOB NOT NULL,
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
  posting_id INTEGER,
  UNIQUE (card_serial, card_counter),
  UNIQUE (terminal_id, terminal_seq)
);
INSERT INTO swipes_v4 SELECT id, settlement_date, terminal_id, batch_no, card_serial,
  card_counter, balance_before_fen, amount_fen, fare_full_fen, txn_type, txn_datetime, tac,
  terminal_seq, key_version, algorithm_id, operator_id, route, vehicle, device, driver,
  transfer_count, suspicious, suspicion, reconciled, posting_id FROM swipes;
DROP TABLE swipes;
ALTER TABLE swipes_v4 RENAME TO swipes;
CREATE INDEX swipes_by_date ON swipes(settlement_date);
CREATE INDEX swipes_by_batch ON swipes(terminal_id, batch_no);
)sql";

// Version 5: counters a card skipped, held open for IngestOptions::reorder_window_us (a card's
// taps reach the backend from different buses out of order). One row per missing counter,
// naming the swipe that arrived after the gap; closed when the counter arrives, turned into a
// suspicion on that swipe when the window ends first.
constexpr const char* kV5CounterGaps = R"sql(
CREATE TABLE counter_gaps(
  card_serial BLOB NOT NULL,
  card_counter INTEGER NOT NULL,
  swipe_id INTEGER NOT NULL,
  deadline_us INTEGER NOT NULL,
  PRIMARY KEY (card_serial, card_counter)
) WITHOUT ROWID;
CREATE INDEX counter_gaps_by_deadline ON counter_gaps(deadline_us);
)sql";

// Version 6: QR payment (qr.h) and POS refunds (pos_refund.h) in settlement. The QR tables
// were created by QrService::open() before (IF NOT EXISTS keeps such a database); QR payments
// get their settlement day; the QR issuer's keys and certificates are kept; refunds are
// deducted from a merchant's settlement line (line_id, like points_moves).
constexpr const char* kV6QrAndRefunds = R"sql(
CREATE TABLE IF NOT EXISTS qr_grants (
  key_id INTEGER PRIMARY KEY, card BLOB NOT NULL, phone_key BLOB NOT NULL,
  valid_from INTEGER NOT NULL, valid_to INTEGER NOT NULL, max_amount INTEGER NOT NULL,
  terminal BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS qr_payments (
  key_id INTEGER NOT NULL, seq INTEGER NOT NULL, card BLOB NOT NULL,
  amount_fen INTEGER NOT NULL, terminal BLOB NOT NULL, operator_id TEXT NOT NULL,
  scanned_s INTEGER NOT NULL, batch_no INTEGER NOT NULL, PRIMARY KEY (key_id, seq));
ALTER TABLE qr_payments ADD COLUMN settlement_date INTEGER NOT NULL DEFAULT 0;
CREATE INDEX qr_payments_by_day ON qr_payments(settlement_date, operator_id);
CREATE TABLE qr_issuer_keys(
  key_no INTEGER PRIMARY KEY,
  key_pem TEXT NOT NULL,
  cert_pem TEXT NOT NULL,
  cert_serial TEXT NOT NULL,
  not_after_unix_s INTEGER NOT NULL,
  created_at_us INTEGER NOT NULL
);
CREATE TABLE pos_refunds(
  refund_id TEXT PRIMARY KEY,
  kind INTEGER NOT NULL,
  terminal_id BLOB NOT NULL,
  merchant_id TEXT NOT NULL,
  card_serial BLOB NOT NULL,
  card_counter INTEGER NOT NULL,
  swipe_id INTEGER NOT NULL,
  amount_fen INTEGER NOT NULL CHECK (amount_fen > 0),
  holder_id INTEGER NOT NULL,
  manager TEXT NOT NULL,
  posting_id INTEGER NOT NULL,
  settlement_date INTEGER NOT NULL,
  created_at_us INTEGER NOT NULL,
  line_id INTEGER
);
CREATE INDEX pos_refunds_by_swipe ON pos_refunds(swipe_id);
CREATE INDEX pos_refunds_by_merchant ON pos_refunds(merchant_id, line_id);
ALTER TABLE settlement_lines ADD COLUMN qr_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE settlement_lines ADD COLUMN qr_fen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE settlement_lines ADD COLUMN refund_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE settlement_lines ADD COLUMN refund_fen INTEGER NOT NULL DEFAULT 0;
)sql";

constexpr Migration kMigrations[] = {{1, kV1},
                                     {2, kV2Money},
                                     {3, kV3Pki},
                                     {4, kV4SwipesNoForeignKeys},
                                     {5, kV5CounterGaps},
                                     {6, kV6QrAndRefunds}};

}  // namespace

std::span<const Migration> migrations() {
  return kMigrations;
}

}  // namespace citycard::backend::schema
