// QR payments accepted by the backend per second (qr.h), against the baseline of the two ECDSA
// P-256 verifications each payment needs, in the same run:
//
//   build/bench/backend_bench --benchmark_filter=Qr --benchmark_counters_tabular=true
//
// BM_QrUpload: a backend on a SQLite file (synchronous FULL: each upload is one fsynced
// transaction), its QR issuer certified by the city CA, 500 named cards with funded online
// accounts and a grant each; one iteration uploads one QrUpload of `per_upload` payments
// through the Service as a wire frame. The payloads are made (signed by the phones) before the
// timed loop. BM_QrVerifyOnly: the same payloads' two signature checks, nothing else.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "citycard/backend/backend.h"
#include "citycard/backend/ca.h"
#include "citycard/backend/money.h"
#include "citycard/protocol/qr.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/clock.h"

namespace {

using namespace citycard;
namespace pw = protocol::wire;
namespace qr = protocol::qr;

class StillClock final : public sim::Clock {
 public:
  std::int64_t now_us() const override { return 0; }
};

constexpr int kCards = 500;

struct QrCity {
  StillClock clock;
  std::string dir;
  std::unique_ptr<backend::Backend> be;
  std::unique_ptr<backend::CertificateAuthority> ca;
  protocol::TerminalId validator{};
  qr::PublicPoint issuer{};
  std::vector<qr::Payload> payloads;

  explicit QrCity(std::size_t payments) {
    std::string templ = (std::filesystem::temp_directory_path() / "citycard_qr_bench.XXXXXX");
    if (::mkdtemp(templ.data()) == nullptr) std::abort();
    dir = templ;
    backend::BackendOptions o;
    be = std::move(backend::Backend::open(dir + "/qr.db", o, clock).value());
    (void)be->users().bootstrap_admin("root", "password-1");
    const backend::Session admin = be->users().login("root", "password-1").value();
    std::string root_key;
    ca = std::move(
        backend::CertificateAuthority::open(be->store(), be->calendar(), {}, &root_key).value());
    (void)be->certify_qr(*ca).value();
    issuer = be->qr().issuer_point().value();
    backend::TerminalParams wallet;
    wallet.operator_id = "wallet";
    wallet.device_id = "wallet-1";
    const protocol::TerminalId wallet_id = be->register_terminal(wallet).value().terminal_id;
    backend::TerminalParams bus;
    bus.operator_id = "bus-co-1";
    bus.device_id = "val-1";
    validator = be->register_terminal(bus).value().terminal_id;

    std::vector<qr::EcKey> phones;
    std::vector<qr::Grant> grants;
    std::vector<Bytes> grant_sigs;
    for (int i = 0; i < kCards; ++i) {
      backend::IssueRequest r;
      r.holder = backend::HolderInfo{"Rider " + std::to_string(i),
                                     "31010119900101" + std::to_string(1000 + i), "", "", false};
      const protocol::CardImage img = be->cards().issue(admin, r).value();
      // Fund the account through the ledger, as a bank top-up would.
      const std::int64_t holder = be->cards().info(img.serial).value().holder->id;
      auto tx = be->store().begin();
      (void)be->cards().credit_account(holder, 400'000);
      (void)be->ledger().post({"bench",
                               "fund " + std::to_string(i),
                               {{std::string(backend::account::kIssuerCash), 400'000},
                                {std::string(backend::account::kOnlineAccounts), -400'000}}});
      (void)tx.value().commit();
      phones.push_back(qr::EcKey::generate().value());
      pw::Envelope ask;
      auto* m = ask.mutable_qr_key_request();
      m->set_terminal_id(pw::field(wallet_id));
      m->set_card_serial(pw::field(img.serial));
      const qr::PublicPoint p = phones.back().public_point();
      m->set_phone_key(std::string(p.begin(), p.end()));
      m->set_validity_s(86'400);
      m->set_max_amount_fen(500);
      const pw::Envelope reply = be->service().handle_envelope(ask);
      const std::string& g = reply.qr_key_reply().grant();
      const std::string& s = reply.qr_key_reply().grant_signature();
      grants.push_back(*qr::Grant::decode(Bytes(g.begin(), g.end())));
      grant_sigs.emplace_back(s.begin(), s.end());
    }
    for (std::size_t i = 0; i < payments; ++i) {
      const std::size_t c = i % kCards;
      qr::Payload p;
      p.grant = grants[c];
      p.grant_signature = grant_sigs[c];
      p.seq = static_cast<std::uint32_t>(i / kCards + 1);
      p.created_s = be->calendar().now_epoch2000_s();
      p.signature = phones[c].sign(p.signed_part()).value();
      payloads.push_back(std::move(p));
    }
  }
  ~QrCity() {
    ca.reset();
    be.reset();
    std::filesystem::remove_all(dir);
  }
};

constexpr int kUploads = 40;

void BM_QrUpload(benchmark::State& state) {
  const auto per_upload = static_cast<std::size_t>(state.range(0));
  QrCity city(per_upload * kUploads);
  std::vector<Bytes> frames;
  for (int u = 0; u < kUploads; ++u) {
    pw::Envelope e;
    e.set_request_id(static_cast<std::uint64_t>(u + 1));
    auto* m = e.mutable_qr_upload();
    m->set_terminal_id(pw::field(city.validator));
    m->set_batch_no(static_cast<std::uint64_t>(u + 1));
    for (std::size_t i = 0; i < per_upload; ++i) {
      auto* p = m->add_payments();
      const Bytes code = city.payloads[static_cast<std::size_t>(u) * per_upload + i].encode();
      p->set_payload(std::string(code.begin(), code.end()));
      p->set_amount_fen(200);
      p->set_scanned_s(city.be->calendar().now_epoch2000_s());
    }
    m->set_total_amount_fen(200 * static_cast<std::int64_t>(per_upload));
    frames.push_back(pw::encode(e));
  }
  std::size_t next = 0;
  std::int64_t accepted = 0;
  for (auto _ : state) {
    const Bytes reply = city.be->service().handle(frames[next++]);
    auto e = pw::decode(reply);
    if (!e.is_ok() || !e->has_qr_upload_ack()) {
      state.SkipWithError("upload refused");
      break;
    }
    accepted += e->qr_upload_ack().accepted();
  }
  if (accepted != static_cast<std::int64_t>(next * per_upload)) {
    state.SkipWithError("not every payment was accepted");
  }
  if (!city.be->check_conservation().is_ok()) state.SkipWithError("books do not balance");
  state.counters["payments_per_s"] =
      benchmark::Counter(static_cast<double>(accepted), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_QrUpload)->ArgName("per_upload")->Arg(100)->Iterations(kUploads)->UseRealTime();

void BM_QrVerifyOnly(benchmark::State& state) {
  const std::size_t n = 2'000;
  QrCity city(n);
  std::size_t next = 0;
  std::int64_t ok = 0;
  for (auto _ : state) {
    const qr::Payload& p = city.payloads[next++ % n];
    ok += qr::verify(city.issuer, p.grant.encode(), p.grant_signature) &&
          qr::verify(p.grant.phone_key, p.signed_part(), p.signature);
  }
  if (ok != static_cast<std::int64_t>(state.iterations())) state.SkipWithError("bad signature");
  state.counters["payments_per_s"] =
      benchmark::Counter(static_cast<double>(ok), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_QrVerifyOnly)->UseRealTime();

}  // namespace
