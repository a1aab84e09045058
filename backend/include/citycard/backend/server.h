// The clearing centre on the network: the Backend's Service behind a ZeroMQ ROUTER
// (sim::ZmqServer, queued), with CURVE encryption and terminals admitted by certificate.
//
// Contract:
// - open() opens the PKI in the backend's database (creating it on the first start, when the
//   root's private key is handed to `root_key_pem_out` to be taken offline), loads or makes the
//   server's identity (a CURVE key pair bound into a server certificate), and binds.
// - With ServerOptions::curve (the default) the socket is a CURVE server: traffic is encrypted,
//   and a client is admitted only if its CURVE public key is bound into a valid, unrevoked
//   certificate issued by this PKI (CurveDirectory::admit). A client without one, with a
//   forged or foreign certificate, or a revoked one never completes its handshake; the reason
//   is logged ("citycard backend: refused ... : <why>") and the client sees a ZAP refusal
//   (sim::ZmqClient reports kRejected). A certificate revoked while its holder is connected
//   stops it at its next request: ErrorReply UNAUTHENTICATED. With curve false the server
//   speaks plain tcp, for tests and simulations.
// - Flow control: at most max_pending_requests (and max_pending_bytes) wait for the backend;
//   a request beyond that is answered at once with ErrorReply BUSY (never dropped). Frames over
//   max_message_bytes drop the sending connection (ZMQ_MAXMSGSIZE); frames the codec refuses
//   are answered (MALFORMED, or REJECTED over protocol::wire::kMaxFrameBytes). Replies to a
//   peer that has gone are counted (ROUTER_MANDATORY), as are replies a full peer queue could
//   not take.
// - Group commit: queued upload requests, up to group_commit_max_requests, are ingested in one
//   SQLite transaction and acknowledged after its one commit (one fsync for the group). If that
//   commit fails, every upload of the group is answered INTERNAL and nothing of them is stored:
//   the terminals keep their batches and send them again. (Ingest's in-memory counters have by
//   then counted them; the database is what counts.)
//
// Threads: open() and serve() on the thread that owns the Backend; the handler, the group
// commit and on_tick run there. stop() from any thread or a signal handler. `log` is called
// from the ZAP and I/O threads too and must be thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <zmq.hpp>

#include "citycard/backend/backend.h"
#include "citycard/backend/ca.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/zmq_transport.h"

namespace citycard::backend {

struct ServerOptions {
  std::string listen = "tcp://127.0.0.1:5555";
  bool curve = true;
  std::string server_name = "backend.citycard.local";  // the DNS name in its certificate
  std::size_t max_pending_requests = 1'000;
  std::size_t max_pending_bytes = 256u << 20;
  std::size_t group_commit_max_requests = 64;
  int send_hwm = 10'000;
  int recv_hwm = 10'000;
  // A little over the codec's limit, so a frame just over it gets an answer (REJECTED) and only
  // a grossly oversized one costs its sender the connection.
  std::int64_t max_message_bytes =
      static_cast<std::int64_t>(protocol::wire::kMaxFrameBytes) + (64 << 10);
  int poll_interval_ms = 100;
  PkiOptions pki;
  std::function<void(const std::string& line)> log;  // null: silent
  std::function<void()> on_tick;  // the backend's own housekeeping, on the serving thread
};

struct ServerCounters {
  sim::ZmqServerCounters transport;
  std::uint64_t groups = 0;           // group commits of more than one upload
  std::uint64_t grouped_uploads = 0;  // uploads acknowledged through them
  std::uint64_t group_commit_failures = 0;
};

// What a frame says about itself without being parsed whole: its request id and which body
// (the Envelope field number: 10 upload, 12 balance query...). Zeros when it cannot tell.
struct FramePeek {
  std::uint64_t request_id = 0;
  int body_field = 0;
};
FramePeek peek_frame(ByteView frame);

// The wire answer to a request the server refused: ErrorReply BUSY or UNAUTHENTICATED, with
// the request's id and the reason.
Bytes refusal_reply(ByteView request, sim::Refusal refusal, const std::string& reason);

class Server {
 public:
  static Result<std::unique_ptr<Server>> open(Backend& backend, zmq::context_t& ctx,
                                              ServerOptions options, std::string* root_key_pem_out);
  ~Server();

  const std::string& endpoint() const { return endpoint_; }
  void serve();
  void stop();

  ServerCounters counters() const;
  CertificateAuthority& ca() { return *ca_; }
  // The server's CURVE keys and certificate (made in plain mode too, when libzmq has CURVE, so
  // they stay the same when the server is switched to CURVE).
  const ServerIdentity& identity() const { return identity_; }
  const ServerOptions& options() const { return options_; }

  // Writes what terminals and tools need into `dir` (created if missing), each file replaced
  // atomically: root.pem, city-ca.pem, national-ca.pem, city.crl.pem, national.crl.pem,
  // server.pem and server.curve (the Z85 public key), qr-issuer.pem (the QR issuer, qr.h).
  Status export_pki(const std::string& dir) const;

 private:
  class Handler;
  class Authenticator;
  Server(Backend& backend, ServerOptions options);
  void tick();

  Backend& backend_;
  ServerOptions options_;
  std::unique_ptr<CertificateAuthority> ca_;
  ServerIdentity identity_;
  std::unique_ptr<Handler> handler_;
  std::unique_ptr<Authenticator> authenticator_;
  std::unique_ptr<sim::ZmqServer> zmq_;
  std::string endpoint_;
};

// A terminal's side of CURVE: the server's public key, taken from the server's certificate
// once `trust` (the root, the city CA and the current CRL, as the terminal downloaded them) has
// verified it as a server certificate now; and the terminal's own keys. A revoked, expired or
// foreign server certificate is refused (kRejected): the terminal does not connect.
Result<sim::CurveClientOptions> curve_client_options(const CertificateVerifier& trust,
                                                     std::string_view server_cert_pem,
                                                     std::int64_t now_unix_s,
                                                     const sim::CurveKeyPair& terminal_keys);

// A terminal as a commissioning desk makes it: registered (its PSAM), with a CURVE key pair
// and a certificate, approved by the RA, that binds the CURVE public key.
struct TerminalCredentials {
  protocol::PsamImage psam;
  sim::CurveKeyPair curve_keys;
  KeyPairPem key;
  CertificateInfo certificate;
};
Result<TerminalCredentials> commission_terminal(Backend& backend, CertificateAuthority& ca,
                                                const TerminalParams& params);

}  // namespace citycard::backend
