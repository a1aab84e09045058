// The embedded clearing centre: one object that owns the Store and every component over it,
// and the Service that terminals talk to.
//
// Contract:
// - Backend::open opens (or creates) the database at `db_path` (":memory:" for a throwaway
//   one), migrates its schema, loads or creates the issuer keys from `options.key_seed`, and
//   opens the fixed ledger accounts. Reopening the same path restores everything: keys, cards,
//   terminals, ledger, swipes and processed batches (so a replayed batch is still a
//   duplicate). Opening a database made with another key seed is refused.
// - Time comes only from `clock` (through a Calendar); the clock must outlive the Backend.
// - check_conservation() checks the invariants that must hold at every moment.
//
// Threads: single-threaded. One caller at a time, whether that is a scenario, a test, or the
// thread running a ZmqServer over service(). Components are owned by the Backend; references
// handed out live as long as it does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "citycard/backend/calendar.h"
#include "citycard/backend/clearing.h"
#include "citycard/backend/desk_service.h"
#include "citycard/backend/ingest.h"
#include "citycard/backend/issuance.h"
#include "citycard/backend/keys.h"
#include "citycard/backend/ledger.h"
#include "citycard/backend/money_options.h"
#include "citycard/backend/money_service.h"
#include "citycard/backend/pos_refund.h"
#include "citycard/backend/qr.h"
#include "citycard/backend/report_data.h"
#include "citycard/backend/service.h"
#include "citycard/backend/sign_on.h"
#include "citycard/backend/store.h"
#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/status.h"
#include "citycard/sim/clock.h"

namespace citycard::backend {

struct BackendOptions {
  std::uint64_t key_seed = 1;  // the run's seed (or a fork of it): same seed, same keys
  // The calendar second (since 2000-01-01) at which the clock reads zero.
  std::int64_t clock_origin_epoch2000_s = kDefaultClockOriginEpoch2000S;
  StoreOptions store;
  IssuanceOptions issuance;
  IngestOptions ingest;
  MoneyOptions money;  // the money side (backend_money.cpp)
  QrOptions qr;        // QR payment (qr.h)
};

// For the run summary: counts since this process opened the backend.
struct BackendCounters {
  IngestCounters ingest;
  std::uint64_t requests = 0;       // frames handled by the Service
  std::uint64_t error_replies = 0;  // of which answered with an ErrorReply
};

class Backend {
 public:
  // Hard limit on IngestOptions::max_batch_records: a larger batch would not fit a wire frame.
  static constexpr std::size_t kMaxBatchRecordsLimit = 20'000;

  static Result<std::unique_ptr<Backend>> open(const std::string& db_path, BackendOptions options,
                                               const sim::Clock& clock);
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  Result<protocol::CardImage> issue_card(const CardParams& params) {
    return issuance_->issue_card(params);
  }
  Result<protocol::PsamImage> register_terminal(const TerminalParams& params) {
    return issuance_->register_terminal(params);
  }
  IngestResult upload(const citycard::wire::UploadBatch& batch) { return ingest_->ingest(batch); }

  // Conservation: the books verify (each account equals its entries, every posting and the
  // trial balance sum to zero); card_float == -(sum of believed card balances); deposits ==
  // -(sum of card deposits); every operator's payable equals its cleared swipes. Names the
  // first difference.
  Status check_conservation() const;
  // The money side's invariants (backend_money.cpp): every money-side ledger account equals
  // what its tables say it should hold. Part of check_conservation().
  Status check_money_conservation() const;
  // Runs what is due by the clock: bank callbacks and timeouts, rebate instalments, expiry
  // notices, then sends queued notifications (outside any transaction).
  Result<RechargePoll> poll();
  BackendCounters counters() const;

  Store& store() { return *store_; }
  Ledger& ledger() { return *ledger_; }
  const Ledger& ledger() const { return *ledger_; }
  Keys& keys() { return *keys_; }
  Issuance& issuance() { return *issuance_; }
  const Issuance& issuance() const { return *issuance_; }
  Ingest& ingest() { return *ingest_; }
  const Ingest& ingest() const { return *ingest_; }
  Clearing& clearing() { return *clearing_; }
  const Clearing& clearing() const { return *clearing_; }
  Service& service() { return *service_; }
  // The money side.
  Users& users() { return *users_; }
  Cards& cards() { return *cards_; }
  Merchants& merchants() { return *merchants_; }
  Recharge& recharge() { return *recharge_; }
  Risk& risk() { return *risk_; }
  Fares& fares() { return *fares_; }
  Settlement& settlement() { return *settlement_; }
  Notifier& notifier() { return *notifier_; }
  ReportData& reports() { return *reports_; }
  BankGateway& bank() { return *bank_; }
  SimBank* sim_bank() { return sim_bank_; }  // null when another gateway was given
  NotificationGateway& notification_gateway() { return *notify_gateway_; }
  // QR payment (qr.h): made and served from open(); its issuer key is kept in the store.
  QrService& qr() { return *qr_service_; }
  // Makes or renews the QR issuer key and its certificate from the city CA (the server calls
  // it when it opens the CA); returns the certificate's PEM.
  Result<std::string> certify_qr(CertificateAuthority& ca) { return qr_service_->certify(ca); }
  // POS refund and void (pos_refund.h).
  PosRefundService& pos_refunds() { return *pos_refund_service_; }
  const Calendar& calendar() const { return calendar_; }
  const BackendOptions& options() const { return options_; }

 private:
  Backend(BackendOptions options, const sim::Clock& clock);
  Status open_money();  // backend_money.cpp

  BackendOptions options_;
  Calendar calendar_;
  // Declared in dependency order, so they are destroyed before what they refer to.
  std::unique_ptr<Store> store_;
  std::unique_ptr<Keys> keys_;
  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<Issuance> issuance_;
  std::unique_ptr<Ingest> ingest_;
  std::unique_ptr<Clearing> clearing_;
  std::unique_ptr<Service> service_;
  // The money side, in dependency order (backend_money.cpp).
  std::unique_ptr<BankGateway> owned_bank_;
  BankGateway* bank_ = nullptr;
  SimBank* sim_bank_ = nullptr;
  std::unique_ptr<NotificationGateway> notify_gateway_;
  std::unique_ptr<Users> users_;
  std::unique_ptr<Notifier> notifier_;
  std::unique_ptr<Risk> risk_;
  std::unique_ptr<Merchants> merchants_;
  std::unique_ptr<Cards> cards_;
  std::unique_ptr<Fares> fares_;
  std::unique_ptr<Recharge> recharge_;
  std::unique_ptr<Settlement> settlement_;
  std::unique_ptr<ReportData> reports_;
  std::unique_ptr<SwipeRules> swipe_rules_;
  std::unique_ptr<MoneyService> money_service_;
  std::unique_ptr<SignOnService> sign_on_service_;        // sign_on.h
  std::unique_ptr<QrService> qr_service_;                 // qr.h
  std::unique_ptr<PosRefundService> pos_refund_service_;  // pos_refund.h
  std::unique_ptr<DeskService> desk_service_;             // desk_service.h
};

}  // namespace citycard::backend
