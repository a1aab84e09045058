#include "citycard/hil/bridge.h"

#include <chrono>

namespace citycard::hil {

namespace bp = citycard::bridge;

std::int64_t BridgeSession::card_us() const {
  std::int64_t us = 0;
  for (const BridgeApdu& a : apdus) us += a.card_us;
  return us;
}

namespace {

bp::BridgeReply error_reply(bp::BridgeCode code, std::string message) {
  bp::BridgeReply r;
  r.mutable_error()->set_code(code);
  r.mutable_error()->set_message(std::move(message));
  return r;
}

Bytes encode(const google::protobuf::Message& m) {
  Bytes out(m.ByteSizeLong());
  m.SerializeToArray(out.data(), static_cast<int>(out.size()));
  return out;
}

bool serial_of(const std::string& b, protocol::Serial8& out) {
  if (b.size() != out.size()) return false;
  std::copy(b.begin(), b.end(), out.begin());
  return true;
}

}  // namespace

Result<std::unique_ptr<BridgeHost>> BridgeHost::start(const std::string& endpoint,
                                                      BridgeHostOptions options) {
  std::unique_ptr<BridgeHost> host(new BridgeHost());
  host->options_ = std::move(options);
  host->options_.welcome.set_version(kBridgeVersion);
  host->params_.set_version(1);
  host->params_.set_flat_fare_fen(200);
  host->blacklist_.set_version(1);
  sim::ZmqServerOptions so;
  so.max_message_bytes = kBridgeFrameBytesMax;
  so.poll_interval_ms = 20;
  host->server_ = std::make_unique<sim::ZmqServer>(host->ctx_, *host, so);
  if (Status s = host->server_->bind(endpoint); !s) return s;
  host->thread_ = std::thread([h = host.get()] { h->server_->serve(); });
  return host;
}

BridgeHost::~BridgeHost() {
  if (server_) server_->stop();
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++events_;
    session_ = 0;  // a held Poll returns at once
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string BridgeHost::endpoint() const {
  return server_->endpoint();
}

std::uint64_t BridgeHost::present(std::shared_ptr<devices::CpuCard> card, Bytes uid,
                                  std::optional<std::pair<std::size_t, bool>> tear) {
  std::lock_guard<std::mutex> lock(mu_);
  card_ = std::move(card);
  card_->reset();
  card_link_ = std::make_unique<devices::DirectLink>(*card_);
  uid_ = std::move(uid);
  BridgeSession s;
  s.id = sessions_.size() + 1;
  s.serial = card_->serial();
  sessions_.push_back(std::move(s));
  session_ = sessions_.back().id;
  tear_ = tear;
  ++events_;
  cv_.notify_all();
  return session_;
}

void BridgeHost::remove() {
  std::lock_guard<std::mutex> lock(mu_);
  session_ = 0;
  card_link_.reset();
  tear_.reset();
  ++events_;
  cv_.notify_all();
}

void BridgeHost::tear_at(std::size_t nth, bool after_card_acted) {
  std::lock_guard<std::mutex> lock(mu_);
  tear_ = std::make_pair(nth, after_card_acted);
}

void BridgeHost::set_psam(std::shared_ptr<devices::Psam> psam) {
  std::lock_guard<std::mutex> lock(mu_);
  psam_ = std::move(psam);
}

void BridgeHost::set_backend(sim::RequestHandler* backend) {
  std::lock_guard<std::mutex> lock(mu_);
  backend_ = backend;
}

void BridgeHost::set_link(bool up) {
  std::lock_guard<std::mutex> lock(mu_);
  link_up_ = up;
  ++events_;
  cv_.notify_all();
}

void BridgeHost::lose_next_backend_reply() {
  std::lock_guard<std::mutex> lock(mu_);
  lose_reply_ = true;
}

void BridgeHost::set_now(std::int64_t epoch2000_s) {
  std::lock_guard<std::mutex> lock(mu_);
  now_s_ = epoch2000_s;
}

void BridgeHost::set_params(bp::Params params) {
  std::lock_guard<std::mutex> lock(mu_);
  params.set_version(params_.version() + 1);
  params_ = std::move(params);
  ++events_;
  cv_.notify_all();
}

void BridgeHost::set_blacklist(const std::vector<protocol::Serial8>& serials) {
  std::lock_guard<std::mutex> lock(mu_);
  bp::Blacklist b;
  b.set_version(blacklist_.version() + 1);
  for (const auto& s : serials) b.add_serials(std::string(s.begin(), s.end()));
  blacklist_ = std::move(b);
  ++events_;
  cv_.notify_all();
}

void BridgeHost::with_lock(const std::function<void()>& fn) {
  std::lock_guard<std::mutex> lock(mu_);
  fn();
}

std::optional<bp::Outcome> BridgeHost::wait_outcome(std::uint64_t session, int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  const bool got = cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    return session >= 1 && session <= sessions_.size() && sessions_[session - 1].outcome;
  });
  if (!got) return std::nullopt;
  return sessions_[session - 1].outcome;
}

bool BridgeHost::wait_idle(int timeout_ms, std::uint64_t done_session) {
  std::unique_lock<std::mutex> lock(mu_);
  const std::uint64_t after = poll_seq_;
  return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    return last_poll_.seq > after && last_poll_.queued == 0 &&
           last_poll_.done_session >= done_session;
  });
}

bool BridgeHost::wait_queued(std::uint32_t records, int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  const std::uint64_t after = poll_seq_;
  return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                      [&] { return last_poll_.seq > after && last_poll_.queued == records; });
}

std::optional<bp::Hello> BridgeHost::hello() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hello_;
}

BridgeSession BridgeHost::session(std::uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (id == 0 || id > sessions_.size()) return {};
  return sessions_[id - 1];
}

std::vector<citycard::wire::UploadBatch> BridgeHost::uploads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return uploads_;
}

BridgeHostCounters BridgeHost::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

BridgeSession* BridgeHost::current() {
  if (session_ == 0 || session_ > sessions_.size()) return nullptr;
  return &sessions_[session_ - 1];
}

Bytes BridgeHost::handle(ByteView frame) {
  std::unique_lock<std::mutex> lock(mu_);
  ++counters_.requests;
  bp::BridgeRequest request;
  bp::BridgeReply reply;
  if (frame.size() > kBridgeFrameBytesMax ||
      !request.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) {
    reply = error_reply(bp::BRIDGE_MALFORMED,
                        "not a BridgeRequest (" + std::to_string(frame.size()) + " bytes)");
  } else {
    reply = dispatch(request, lock);
    reply.set_request_id(request.request_id());
  }
  if (reply.has_error()) {
    ++counters_.errors;
    if (reply.error().code() == bp::BRIDGE_MALFORMED) ++counters_.malformed;
  }
  ++events_;
  cv_.notify_all();
  return encode(reply);
}

bp::BridgeReply BridgeHost::dispatch(const bp::BridgeRequest& request,
                                     std::unique_lock<std::mutex>& lock) {
  if (request.body_case() == bp::BridgeRequest::BODY_NOT_SET) {
    return error_reply(bp::BRIDGE_MALFORMED, "a BridgeRequest with no body");
  }
  if (request.has_hello()) {
    const bp::Hello& h = request.hello();
    if (h.version() != kBridgeVersion) {
      return error_reply(bp::BRIDGE_VERSION, "bridge version " + std::to_string(h.version()) +
                                                 " not spoken; this harness speaks " +
                                                 std::to_string(kBridgeVersion));
    }
    if (h.terminal().empty() || h.terminal().size() > 256 || h.kind().size() > 32 ||
        h.vendor().size() > 256) {
      return error_reply(bp::BRIDGE_MALFORMED, "Hello: terminal (1..256 bytes) is required");
    }
    hello_ = h;
    bp::BridgeReply r;
    *r.mutable_welcome() = options_.welcome;
    return r;
  }
  if (!hello_) return error_reply(bp::BRIDGE_NO_HELLO, "send Hello first");
  switch (request.body_case()) {
    case bp::BridgeRequest::kPoll:
      return poll(request.poll(), lock);
    case bp::BridgeRequest::kCardApdu:
      return card_apdu(request.card_apdu());
    case bp::BridgeRequest::kPsamApdu: {
      if (!psam_) return error_reply(bp::BRIDGE_NO_PSAM, "no PSAM in the slot");
      const std::string& c = request.psam_apdu().capdu();
      if (c.size() < 4 || c.size() > 261) {
        return error_reply(bp::BRIDGE_MALFORMED,
                           "PSAM C-APDU of " + std::to_string(c.size()) + " bytes (4..261)");
      }
      const Bytes r =
          psam_->process(ByteView(reinterpret_cast<const std::uint8_t*>(c.data()), c.size()));
      bp::BridgeReply reply;
      reply.mutable_apdu()->set_rapdu(std::string(r.begin(), r.end()));
      return reply;
    }
    case bp::BridgeRequest::kBackend: {
      ++counters_.backend_frames;
      if (!link_up_) {
        ++counters_.link_refusals;
        return error_reply(bp::BRIDGE_LINK_DOWN, "the backend link is down");
      }
      if (!backend_) return error_reply(bp::BRIDGE_LINK_DOWN, "no backend attached");
      const std::string& f = request.backend().frame();
      const ByteView fv(reinterpret_cast<const std::uint8_t*>(f.data()), f.size());
      auto env = protocol::wire::decode(fv);
      if (!env) {
        return error_reply(bp::BRIDGE_MALFORMED,
                           "backend frame is not a wire Envelope: " + env.status().to_string());
      }
      if (env->has_upload()) uploads_.push_back(env->upload());
      const Bytes r = backend_->handle(fv);
      if (lose_reply_) {
        lose_reply_ = false;
        ++counters_.link_refusals;
        return error_reply(bp::BRIDGE_LINK_DOWN, "the backend's reply was lost on the way back");
      }
      bp::BridgeReply reply;
      reply.mutable_backend()->set_frame(std::string(r.begin(), r.end()));
      return reply;
    }
    case bp::BridgeRequest::kOutcome: {
      const bp::Outcome& o = request.outcome();
      if (o.card_session() == 0 || o.card_session() > sessions_.size()) {
        return error_reply(bp::BRIDGE_MALFORMED,
                           "Outcome for unknown card session " + std::to_string(o.card_session()));
      }
      if (o.charged_fen() < 0 || o.reason().size() > 256) {
        return error_reply(bp::BRIDGE_MALFORMED, "Outcome: charged_fen >= 0, reason <= 256 bytes");
      }
      sessions_[o.card_session() - 1].outcome = o;
      bp::BridgeReply reply;
      reply.mutable_ack();
      return reply;
    }
    default:
      return error_reply(bp::BRIDGE_MALFORMED, "unknown request body");
  }
}

bp::BridgeReply BridgeHost::poll(const bp::Poll& p, std::unique_lock<std::mutex>& lock) {
  ++counters_.polls;
  last_poll_ = PollSeen{++poll_seq_, p.queued_records(), p.done_session()};
  ++events_;
  cv_.notify_all();
  // Hold the reply while nothing the terminal would act on has changed: no card, or the card
  // it has finished with is still there.
  const auto wait = std::chrono::milliseconds(std::min(p.wait_ms(), options_.poll_wait_ms_max));
  const std::uint64_t seen = events_;
  auto actionable = [&] {
    return events_ != seen || (session_ != 0 && session_ != p.done_session()) ||
           params_.version() > p.params_version() || blacklist_.version() > p.blacklist_version();
  };
  if (!actionable()) cv_.wait_for(lock, wait, actionable);
  bp::BridgeReply reply;
  bp::PollReply* r = reply.mutable_poll();
  r->set_card_session(session_);
  if (session_ != 0) r->set_uid(std::string(uid_.begin(), uid_.end()));
  r->set_now_epoch2000_s(now_s_);
  if (params_.version() > p.params_version()) *r->mutable_params() = params_;
  if (blacklist_.version() > p.blacklist_version()) *r->mutable_blacklist() = blacklist_;
  return reply;
}

bp::BridgeReply BridgeHost::card_apdu(const bp::Apdu& a) {
  const std::string& c = a.capdu();
  if (c.size() < 4 || c.size() > 261) {
    return error_reply(bp::BRIDGE_MALFORMED,
                       "card C-APDU of " + std::to_string(c.size()) + " bytes (4..261)");
  }
  auto command =
      protocol::Command::parse(ByteView(reinterpret_cast<const std::uint8_t*>(c.data()), c.size()));
  if (!command) {
    return error_reply(bp::BRIDGE_MALFORMED, "card C-APDU: " + command.status().to_string());
  }
  BridgeSession* s = current();
  if (!s || a.card_session() != session_ || !card_link_) {
    if (a.card_session() != 0 && a.card_session() < sessions_.size() + 1 && s == nullptr) {
      return error_reply(
          bp::BRIDGE_CARD_REMOVED,
          "the card of session " + std::to_string(a.card_session()) + " has left the field");
    }
    if (s && a.card_session() != session_) {
      return error_reply(bp::BRIDGE_CARD_REMOVED,
                         "card session " + std::to_string(a.card_session()) +
                             " is over; the field holds session " + std::to_string(session_));
    }
    return error_reply(bp::BRIDGE_NO_CARD, "no card in the field");
  }
  BridgeApdu rec;
  rec.capdu.assign(c.begin(), c.end());
  const bool tear_now = tear_ && tear_->first == s->apdus.size();
  if (tear_now && !tear_->second) {
    rec.torn = true;
  } else {
    const std::int64_t before = card_link_->elapsed_us();
    auto response = card_link_->transceive(*command);
    rec.card_us = card_link_->elapsed_us() - before;
    if (response) rec.rapdu = response->encode();
    rec.torn = tear_now || !response;
  }
  s->apdus.push_back(rec);
  if (rec.torn) {
    // The card leaves the field: this session is over, the card loses power.
    session_ = 0;
    card_link_.reset();
    card_->reset();
    tear_.reset();
    return error_reply(bp::BRIDGE_CARD_REMOVED, "the card left the field during this APDU");
  }
  bp::BridgeReply reply;
  reply.mutable_apdu()->set_rapdu(std::string(rec.rapdu.begin(), rec.rapdu.end()));
  return reply;
}

// ---- terminal side ----

BridgeClient::BridgeClient(zmq::context_t& ctx, const std::string& endpoint, int timeout_ms)
    : client_(ctx, endpoint), timeout_ms_(timeout_ms) {}

Result<bp::BridgeReply> BridgeClient::call(bp::BridgeRequest request) {
  request.set_request_id(++next_id_);
  auto raw = client_.call(encode(request), timeout_ms_);
  if (!raw) return Result<bp::BridgeReply>(Errc::kUnavailable, raw.status().to_string());
  bp::BridgeReply reply;
  if (!reply.ParseFromArray(raw->data(), static_cast<int>(raw->size()))) {
    return Result<bp::BridgeReply>(Errc::kMalformed, "the harness's reply is not a BridgeReply");
  }
  if (reply.has_error()) {
    const Errc code = reply.error().code() == bp::BRIDGE_CARD_REMOVED ? Errc::kTorn
                      : reply.error().code() == bp::BRIDGE_LINK_DOWN  ? Errc::kUnavailable
                                                                      : Errc::kRejected;
    return Result<bp::BridgeReply>(
        code, bp::BridgeCode_Name(reply.error().code()) + ": " + reply.error().message());
  }
  return reply;
}

Result<bp::Welcome> BridgeClient::hello(const bp::Hello& hello) {
  bp::BridgeRequest r;
  *r.mutable_hello() = hello;
  auto reply = call(std::move(r));
  if (!reply) return reply.status();
  if (!reply->has_welcome()) return Result<bp::Welcome>(Errc::kMalformed, "no Welcome");
  return reply->welcome();
}

namespace {
Result<protocol::Response> apdu_reply(Result<bp::BridgeReply> reply) {
  if (!reply) return reply.status();
  if (!reply->has_apdu()) return Result<protocol::Response>(Errc::kMalformed, "no ApduReply");
  const std::string& r = reply->apdu().rapdu();
  return protocol::Response::parse(
      ByteView(reinterpret_cast<const std::uint8_t*>(r.data()), r.size()));
}
}  // namespace

Result<protocol::Response> BridgeCardLink::transceive(const protocol::Command& command) {
  bp::BridgeRequest r;
  r.mutable_card_apdu()->set_card_session(session_);
  const Bytes c = command.encode();
  r.mutable_card_apdu()->set_capdu(std::string(c.begin(), c.end()));
  auto reply = client_.call(std::move(r));
  if (!reply && reply.status().code() == Errc::kUnavailable) {
    // No answer from the harness at all: for the terminal that is a card that went away.
    return Result<protocol::Response>(Errc::kTorn, reply.status().message());
  }
  return apdu_reply(std::move(reply));
}

Result<protocol::Response> BridgePsamLink::transceive(const protocol::Command& command) {
  bp::BridgeRequest r;
  const Bytes c = command.encode();
  r.mutable_psam_apdu()->set_capdu(std::string(c.begin(), c.end()));
  return apdu_reply(client_.call(std::move(r)));
}

void BridgeChannel::request(Bytes frame, ReplyFn on_reply) {
  bp::BridgeRequest r;
  r.mutable_backend()->set_frame(std::string(frame.begin(), frame.end()));
  auto reply = client_.call(std::move(r));
  if (!reply) {
    on_reply(Result<Bytes>(reply.status()));
    return;
  }
  if (!reply->has_backend()) {
    on_reply(Result<Bytes>(Errc::kMalformed, "no BackendFrame"));
    return;
  }
  const std::string& f = reply->backend().frame();
  on_reply(Bytes(f.begin(), f.end()));
}

}  // namespace citycard::hil
