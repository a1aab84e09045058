#include "citycard/backend/server.h"

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

namespace citycard::backend {

namespace pw = protocol::wire;
using citycard::wire::Envelope;

namespace {

constexpr int kUploadField = 10;  // Envelope.upload

// Reads a protobuf varint at `pos`; false past the end or over 10 bytes.
bool varint(ByteView b, std::size_t& pos, std::uint64_t& out) {
  out = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos >= b.size()) return false;
    const std::uint8_t byte = b[pos++];
    out |= std::uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

Bytes error_frame(std::uint64_t request_id, citycard::wire::Code code, std::string message) {
  Envelope e;
  e.set_request_id(request_id);
  e.mutable_error()->set_code(code);
  e.mutable_error()->set_message(std::move(message));
  return pw::encode(e);
}

// Replaces `path` with `text` so that a reader (or a crash) never sees half a file.
Status write_atomically(const std::filesystem::path& path, const std::string& text) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) return Status(Errc::kIo, "cannot write " + tmp.string());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status(Errc::kIo, "cannot rename " + tmp.string() + ": " + ec.message());
  return Status::ok();
}

}  // namespace

FramePeek peek_frame(ByteView frame) {
  FramePeek p;
  if (frame.size() < pw::kHeaderBytes || frame[0] != 'C' || frame[1] != 'C') return p;
  const ByteView payload = frame.subspan(pw::kHeaderBytes);
  std::size_t pos = 0;
  while (pos < payload.size()) {
    std::uint64_t key = 0, value = 0;
    if (!varint(payload, pos, key)) break;
    const auto field = static_cast<int>(key >> 3);
    switch (key & 7) {
      case 0:
        if (!varint(payload, pos, value)) return p;
        if (field == 1) p.request_id = value;
        break;
      case 1:
        pos += 8;
        break;
      case 2:
        if (!varint(payload, pos, value) || value > payload.size() - pos) return p;
        if (field >= kUploadField && p.body_field == 0) p.body_field = field;
        pos += static_cast<std::size_t>(value);
        break;
      case 5:
        pos += 4;
        break;
      default:
        return p;
    }
  }
  return p;
}

Bytes refusal_reply(ByteView request, sim::Refusal refusal, const std::string& reason) {
  const std::uint64_t id = peek_frame(request).request_id;
  if (refusal == sim::Refusal::kBusy) {
    return error_frame(id, citycard::wire::BUSY, "server busy: " + reason + "; retry later");
  }
  return error_frame(id, citycard::wire::UNAUTHENTICATED, "not allowed: " + reason);
}

// ---- the handler: the Service, with uploads committed in groups -------------------------------

class Server::Handler final : public sim::GroupRequestHandler {
 public:
  explicit Handler(Backend& backend) : backend_(backend) {}

  Bytes handle(ByteView frame) override { return backend_.service().handle(frame); }

  std::vector<Bytes> handle_group(std::span<const ByteView> frames) override {
    std::vector<Bytes> replies(frames.size());
    std::vector<std::size_t> uploads;
    for (std::size_t i = 0; i < frames.size(); ++i) {
      if (peek_frame(frames[i]).body_field == kUploadField) {
        uploads.push_back(i);
      } else {
        replies[i] = handle(frames[i]);
      }
    }
    if (uploads.size() < 2) {
      for (std::size_t i : uploads) replies[i] = handle(frames[i]);
      return replies;
    }
    // Each batch's own transaction becomes a savepoint inside this one; the commit below is the
    // only fsync, and no ack leaves before it.
    auto txn = backend_.store().begin();
    if (!txn.is_ok()) {
      for (std::size_t i : uploads) replies[i] = handle(frames[i]);
      return replies;
    }
    for (std::size_t i : uploads) replies[i] = handle(frames[i]);
    if (Status s = txn->commit(); !s.is_ok()) {
      ++group_commit_failures;
      for (std::size_t i : uploads) {
        replies[i] =
            error_frame(peek_frame(frames[i]).request_id, citycard::wire::INTERNAL,
                        "group commit failed, nothing of this batch was stored: " + s.message());
      }
      return replies;
    }
    ++groups;
    grouped_uploads += uploads.size();
    return replies;
  }

  // Written on the serving thread, read by counters() from any.
  std::atomic<std::uint64_t> groups{0};
  std::atomic<std::uint64_t> grouped_uploads{0};
  std::atomic<std::uint64_t> group_commit_failures{0};

 private:
  Backend& backend_;
};

// ---- the authenticator: CURVE keys bound into certificates -----------------------------------

class Server::Authenticator final : public sim::CurveAuthenticator {
 public:
  Authenticator(std::shared_ptr<CurveDirectory> directory, const CertificateAuthority& ca,
                std::function<void(const std::string&)> log)
      : directory_(std::move(directory)), ca_(ca), log_(std::move(log)) {}

  sim::ZapVerdict authenticate(const sim::CurveKey& key, const std::string& address) override {
    auto admitted = directory_->admit(key, ca_.now_unix_s());
    if (admitted.is_ok()) return {true, *admitted, ""};
    if (log_) {
      log_("citycard backend: refused connection from " + address + " (CURVE key " +
           sim::z85_encode(key) + "): " + admitted.status().message());
    }
    return {false, "", admitted.status().message()};
  }

  bool still_allowed(const std::string& user_id, std::string& reason) override {
    const Status s = directory_->still_valid(user_id, ca_.now_unix_s());
    if (s.is_ok()) return true;
    reason = s.message();
    if (log_) log_("citycard backend: refused a request from " + user_id + ": " + reason);
    return false;
  }

 private:
  std::shared_ptr<CurveDirectory> directory_;
  // Only now_unix_s(), which reads the Calendar (a thread-safe clock) and constant options.
  const CertificateAuthority& ca_;
  std::function<void(const std::string&)> log_;
};

// ---- Server ----------------------------------------------------------------------------------

Server::Server(Backend& backend, ServerOptions options)
    : backend_(backend), options_(std::move(options)) {}

Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::open(Backend& backend, zmq::context_t& ctx,
                                             ServerOptions options, std::string* root_key_pem_out) {
  if (options.max_pending_requests == 0 || options.group_commit_max_requests == 0 ||
      options.max_message_bytes <= 0 ||
      options.max_pending_bytes < static_cast<std::size_t>(options.max_message_bytes)) {
    return Status(Errc::kInvalidArgument,
                  "server limits: pending requests and group size at least 1, pending bytes at "
                  "least one message");
  }
  std::unique_ptr<Server> server(new Server(backend, std::move(options)));
  ServerOptions& o = server->options_;
  auto ca =
      CertificateAuthority::open(backend.store(), backend.calendar(), o.pki, root_key_pem_out);
  if (!ca.is_ok()) return ca.status();
  server->ca_ = std::move(ca).value();
  // The QR issuer's key and certificate (qr.h): made the first time, renewed when due.
  if (auto qr = backend.certify_qr(*server->ca_); !qr.is_ok()) return qr.status();
  server->handler_ = std::make_unique<Handler>(backend);

  sim::ZmqServerOptions zo;
  zo.send_hwm = o.send_hwm;
  zo.recv_hwm = o.recv_hwm;
  zo.max_message_bytes = o.max_message_bytes;
  zo.poll_interval_ms = o.poll_interval_ms;
  zo.max_pending_requests = o.max_pending_requests;
  zo.max_pending_bytes = o.max_pending_bytes;
  zo.group_requests_max = o.group_commit_max_requests;
  zo.refusal_reply = refusal_reply;
  Server* raw = server.get();
  zo.on_tick = [raw] { raw->tick(); };
  // The identity exists in plain mode too, so the keys terminals pin do not change when the
  // server is switched to CURVE.
  if (sim::curve_available()) {
    auto identity = server->ca_->server_identity(o.server_name);
    if (!identity.is_ok()) return identity.status();
    server->identity_ = std::move(identity).value();
  }
  if (o.curve) {
    if (!sim::curve_available()) {
      return Status(Errc::kUnavailable, "libzmq has no CURVE support; serve plain tcp instead");
    }
    server->authenticator_ =
        std::make_unique<Authenticator>(server->ca_->directory(), *server->ca_, o.log);
    zo.curve = sim::CurveServerOptions{server->identity_.curve_keys, server->authenticator_.get(),
                                       "citycard"};
  }
  server->zmq_ = std::make_unique<sim::ZmqServer>(ctx, *server->handler_, std::move(zo));
  if (Status s = server->zmq_->bind(o.listen); !s.is_ok()) return s;
  server->endpoint_ = server->zmq_->endpoint();
  return server;
}

void Server::serve() {
  zmq_->serve();
}

void Server::stop() {
  zmq_->stop();
}

void Server::tick() {
  if (Status s = ca_->refresh_crls_if_due(); !s.is_ok() && options_.log) {
    options_.log("citycard backend: re-signing a CRL failed: " + s.to_string());
  }
  if (options_.on_tick) options_.on_tick();
}

ServerCounters Server::counters() const {
  ServerCounters c;
  c.transport = zmq_->counters();
  c.groups = handler_->groups.load();
  c.grouped_uploads = handler_->grouped_uploads.load();
  c.group_commit_failures = handler_->group_commit_failures.load();
  return c;
}

Status Server::export_pki(const std::string& dir) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status(Errc::kIo, "cannot create " + dir + ": " + ec.message());
  const std::filesystem::path d(dir);
  std::vector<std::pair<std::string, std::string>> files = {
      {"root.pem", ca_->root_pem()},
      {"city-ca.pem", ca_->city_ca_pem()},
      {"national-ca.pem", ca_->national_ca_pem()},
      {"city.crl.pem", *ca_->crl_pem("city:" + ca_->options().city_code)},
      {"national.crl.pem", *ca_->crl_pem("national")}};
  if (!identity_.certificate.pem.empty()) {
    files.emplace_back("server.pem", identity_.certificate.pem);
    files.emplace_back("server.curve", sim::z85_encode(identity_.curve_keys.public_key) + "\n");
  }
  // The QR issuer's certificate, for validators to check QR codes offline (qr.h).
  if (!backend_.qr().issuer_certificate_pem().empty()) {
    files.emplace_back("qr-issuer.pem", backend_.qr().issuer_certificate_pem());
  }
  for (const auto& [name, text] : files) {
    if (Status s = write_atomically(d / name, text); !s.is_ok()) return s;
  }
  return Status::ok();
}

// ---- helpers for terminals -------------------------------------------------------------------

Result<sim::CurveClientOptions> curve_client_options(const CertificateVerifier& trust,
                                                     std::string_view server_cert_pem,
                                                     std::int64_t now_unix_s,
                                                     const sim::CurveKeyPair& terminal_keys) {
  auto server = trust.verify(server_cert_pem, CertRole::kServer, now_unix_s);
  if (!server.is_ok()) return server.status();
  if (!server->curve_key) {
    return Status(Errc::kRejected, "the server certificate binds no CURVE key");
  }
  return sim::CurveClientOptions{*server->curve_key, terminal_keys};
}

Result<TerminalCredentials> commission_terminal(Backend& backend, CertificateAuthority& ca,
                                                const TerminalParams& params) {
  auto curve = sim::generate_curve_key_pair();
  if (!curve.is_ok()) return curve.status();
  auto key = generate_key_pair();
  if (!key.is_ok()) return key.status();
  auto txn = backend.store().begin();
  if (!txn.is_ok()) return txn.status();
  auto psam = backend.register_terminal(params);
  if (!psam.is_ok()) return psam.status();
  CertRequest request;
  request.role = CertRole::kTerminal;
  request.subject_id = to_hex(psam->terminal_id);
  request.public_key_pem = key->public_pem;
  request.curve_key = curve->public_key;
  auto cert = ca.enrol(request);
  if (!cert.is_ok()) return cert.status();
  if (Status s = txn->commit(); !s.is_ok()) return s;
  return TerminalCredentials{*psam, *curve, *key, std::move(cert).value()};
}

}  // namespace citycard::backend
