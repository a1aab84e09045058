#include "citycard/devices/host_session.h"

#include <utility>

namespace citycard::devices {

namespace pw = protocol::wire;
namespace wire = citycard::wire;
using wire::Envelope;

// ---- ParamsCache ----

Status ParamsCache::apply(const wire::ParamsReply& page, std::uint64_t asked_since) {
  if (asked_since != version_) {
    return Status(Errc::kConflict, "parameter page for version " + std::to_string(asked_since) +
                                       ", we hold " + std::to_string(version_));
  }
  if (page.version() < asked_since) {
    return Status(Errc::kMalformed, "parameter page goes back from version " +
                                        std::to_string(asked_since) + " to " +
                                        std::to_string(page.version()));
  }
  // Build the next state aside: a page is applied whole or not at all.
  auto fares = fares_;
  auto card_types = card_types_;
  auto merchant = merchant_;
  for (const std::string& key : page.removed()) {
    const auto slash = key.find('/');
    if (slash == std::string::npos) return Status(Errc::kMalformed, "removed key '" + key + "'");
    const std::string kind = key.substr(0, slash);
    const std::string rest = key.substr(slash + 1);
    if (kind == "fare") {
      fares.erase(rest);
    } else if (kind == "card_type") {
      try {
        card_types.erase(static_cast<std::uint32_t>(std::stoul(rest)));
      } catch (const std::exception&) {
        return Status(Errc::kMalformed, "removed key '" + key + "'");
      }
    } else if (kind == "merchant_discount") {
      merchant.erase(rest);
    } else {
      return Status(Errc::kMalformed, "removed key of unknown kind '" + key + "'");
    }
  }
  for (const auto& t : page.fares()) {
    if (t.table_id().empty() || t.table_id().size() > 64) {
      return Status(Errc::kMalformed, "fare table id must be 1..64 bytes");
    }
    fares[t.table_id()] = t;
  }
  for (const auto& d : page.card_type_discounts()) {
    if (d.card_type() > 3 || d.discount_bp() > kBasisPointsWhole) {
      return Status(Errc::kMalformed, "card type discount out of range");
    }
    card_types[d.card_type()] = d.discount_bp();
  }
  for (const auto& d : page.merchant_discounts()) {
    if (d.discount_bp() > kBasisPointsWhole) {
      return Status(Errc::kMalformed, "merchant discount out of range");
    }
    merchant[d.merchant_id() + "/" + d.category()] = d.discount_bp();
  }
  fares_ = std::move(fares);
  card_types_ = std::move(card_types);
  merchant_ = std::move(merchant);
  version_ = page.version();
  return Status::ok();
}

std::uint32_t ParamsCache::merchant_discount_bp(const std::string& merchant_id,
                                                const std::string& category) const {
  if (auto it = merchant_.find(merchant_id + "/" + category); it != merchant_.end()) {
    return it->second;
  }
  if (auto it = merchant_.find(merchant_id + "/"); it != merchant_.end()) return it->second;
  return 0;
}

Result<FarePolicy> ParamsCache::fare_policy(const std::string& table_id) const {
  auto it = fares_.find(table_id);
  if (it == fares_.end()) {
    return Status(Errc::kNotFound, "no fare table '" + table_id + "' downloaded");
  }
  google::protobuf::RepeatedPtrField<wire::CardTypeDiscount> discounts;
  for (const auto& [type, bp] : card_types_) {
    auto* d = discounts.Add();
    d->set_card_type(type);
    d->set_discount_bp(bp);
  }
  return fare_policy_from_wire(it->second, discounts);
}

// ---- HostSession ----

Status status_of_error(const wire::ErrorReply& error) {
  const std::string text =
      "backend answered " + wire::Code_Name(error.code()) + ": " + error.message();
  switch (error.code()) {
    case wire::UNKNOWN_TERMINAL:
      return Status(Errc::kNotFound, text);
    case wire::TERMINAL_MISMATCH:
    case wire::FORBIDDEN:
    case wire::UNAUTHENTICATED:
    case wire::REFUND_NOT_AUTHORISED:
      return Status(Errc::kPermissionDenied, text);
    case wire::BUSY:
      return Status(Errc::kUnavailable, text);
    case wire::MALFORMED:
      return Status(Errc::kMalformed, text);
    case wire::INSUFFICIENT_FUNDS:
      return Status(Errc::kInsufficientFunds, text);
    case wire::BAD_MAC:
      return Status(Errc::kBadMac, text);
    case wire::CONFLICT:
      return Status(Errc::kConflict, text);
    case wire::NOT_FOUND:
    case wire::UNKNOWN_CARD:
      return Status(Errc::kNotFound, text);
    default:
      return Status(Errc::kRejected, text);
  }
}

HostSession::HostSession(HostSessionOptions options, sim::Channel& channel, TerminalClock& clock,
                         BlacklistCache& blacklist)
    : options_(std::move(options)), channel_(channel), clock_(clock), blacklist_(blacklist) {}

HostSession::~HostSession() = default;

Status HostSession::fail(Status why) {
  ++counters_.failures;
  last_failure_ = why;
  return why;
}

Result<Envelope> pumped_call(sim::Channel& channel, const Envelope& request,
                             const std::function<void()>& pump, std::size_t pump_rounds_max) {
  const std::uint64_t id = request.request_id();
  auto answer = std::make_shared<std::optional<Result<Bytes>>>();
  channel.request(pw::encode(request),
                  [answer](Result<Bytes> reply) { *answer = std::move(reply); });
  for (std::size_t i = 0; !answer->has_value(); ++i) {
    if (i >= pump_rounds_max) {
      return Status(Errc::kTimeout, "no answer after " + std::to_string(i) + " pump rounds");
    }
    pump();
  }
  Result<Bytes>& reply = **answer;
  if (!reply) return reply.status();
  Result<Envelope> e = pw::decode(*reply);
  if (!e) return e.status();
  if (e->request_id() != id && !e->has_error()) {
    return Status(Errc::kMalformed, "answer to request " + std::to_string(e->request_id()) +
                                        ", expected " + std::to_string(id));
  }
  return e;
}

void HostSession::request(Envelope envelope, OnEnvelope on_reply) {
  const std::uint64_t id = next_request_id_++;
  envelope.set_request_id(id);
  ++counters_.requests;
  std::weak_ptr<int> alive = alive_;
  channel_.request(
      pw::encode(envelope), [alive, id, on_reply = std::move(on_reply)](Result<Bytes> reply) {
        if (alive.expired()) return;
        if (!reply) return on_reply(reply.status());
        Result<Envelope> e = pw::decode(*reply);
        if (!e) return on_reply(e.status());
        if (e->request_id() != id && !e->has_error()) {
          return on_reply(Status(Errc::kMalformed, "reply for request " +
                                                       std::to_string(e->request_id()) +
                                                       ", expected " + std::to_string(id)));
        }
        if (e->has_error()) return on_reply(status_of_error(e->error()));
        on_reply(std::move(e).value());
      });
}

void HostSession::sign_on(Done done, std::uint64_t next_batch_no) {
  Envelope e;
  auto* m = e.mutable_sign_on();
  m->set_terminal_id(pw::field(options_.terminal_id));
  m->set_device_id(options_.device_id);
  m->set_operator_id(options_.operator_id);
  const std::int64_t sent_us = clock_.now_us();
  m->set_terminal_time_us(sent_us);
  m->set_blacklist_version(blacklist_.version());
  m->set_params_version(params_.version());
  m->set_next_batch_no(next_batch_no);
  request(std::move(e), [this, sent_us, done = std::move(done)](Result<Envelope> reply) {
    if (!reply) {
      // A link failure keeps the last sign-on's state; a refusal (not registered, or not
      // to this device and operator) drops it.
      const Errc c = reply.status().code();
      if (c == Errc::kNotFound || c == Errc::kPermissionDenied) signed_on_ = false;
      return done(fail(reply.status()));
    }
    if (!reply->has_sign_on_reply()) {
      return done(fail(Status(Errc::kMalformed, "reply to a sign-on is not a sign-on reply")));
    }
    const auto& r = reply->sign_on_reply();
    const std::int64_t round_trip_us = clock_.now_us() - sent_us;
    counters_.last_correction_us =
        clock_.sign_on(r.server_time_us() + (round_trip_us > 0 ? round_trip_us / 2 : 0));
    counters_.server_blacklist_version = r.blacklist_version();
    counters_.server_params_version = r.params_version();
    route_ = r.route();
    vehicle_ = r.vehicle();
    signed_on_ = true;
    ++counters_.sign_ons;
    done(Status::ok());
  });
}

void HostSession::pull_blacklist(Done done) {
  blacklist_page(blacklist_.version(), false, 0, std::move(done));
}

void HostSession::blacklist_page(std::uint64_t since, bool full, std::size_t pages, Done done) {
  if (pages >= options_.pages_max) {
    return done(fail(Status(
        Errc::kTooLarge, "blacklist pull past " + std::to_string(options_.pages_max) + " pages")));
  }
  Envelope e;
  auto* m = e.mutable_blacklist_request();
  m->set_terminal_id(pw::field(options_.terminal_id));
  m->set_since_version(since);
  m->set_full(full);
  request(std::move(e), [this, since, pages, done = std::move(done)](Result<Envelope> reply) {
    if (!reply) return done(fail(reply.status()));
    if (!reply->has_blacklist_reply()) {
      return done(fail(Status(Errc::kMalformed, "reply to a blacklist request is not a page")));
    }
    const auto& page = reply->blacklist_reply();
    if (Status s = blacklist_.apply(page, since); !s) return done(fail(s));
    ++counters_.blacklist_pages;
    if (!page.more()) return done(Status::ok());
    blacklist_page(page.version(), page.full(), pages + 1, std::move(done));
  });
}

void HostSession::pull_params(Done done) {
  params_page(params_.version(), 0, std::move(done));
}

void HostSession::params_page(std::uint64_t since, std::size_t pages, Done done) {
  if (pages >= options_.pages_max) {
    return done(fail(Status(
        Errc::kTooLarge, "parameter pull past " + std::to_string(options_.pages_max) + " pages")));
  }
  Envelope e;
  auto* m = e.mutable_params_request();
  m->set_terminal_id(pw::field(options_.terminal_id));
  m->set_since_version(since);
  request(std::move(e), [this, since, pages, done = std::move(done)](Result<Envelope> reply) {
    if (!reply) return done(fail(reply.status()));
    if (!reply->has_params_reply()) {
      return done(fail(Status(Errc::kMalformed, "reply to a parameter request is not a page")));
    }
    const auto& page = reply->params_reply();
    if (Status s = params_.apply(page, since); !s) return done(fail(s));
    ++counters_.params_pages;
    if (!page.more()) return done(Status::ok());
    params_page(page.version(), pages + 1, std::move(done));
  });
}

void HostSession::sync(Done done) {
  sign_on([this, done = std::move(done)](Status s) mutable {
    if (!s) return done(s);
    pull_blacklist([this, done = std::move(done)](Status s2) mutable {
      if (!s2) return done(s2);
      pull_params(std::move(done));
    });
  });
}

}  // namespace citycard::devices
