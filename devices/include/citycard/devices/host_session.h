// A terminal's conversation with the clearing centre, beside its upload queue: sign-on with
// clock correction, blacklist pulls with versioned deltas, parameter (fare table) downloads
// with versions. Wire messages only (protocol/wire.proto): devices never see the backend.
//
// - sign_on(): SignOnRequest{terminal id, device id, operator id, our clock, our versions}.
//   The backend checks the terminal is registered to this device and operator (refusals:
//   UNKNOWN_TERMINAL, TERMINAL_MISMATCH — the terminal must not sell for a wrong payable; the
//   host session reports them as kPermissionDenied / kNotFound and the caller decides). On a
//   reply, the terminal clock is set to the server's time plus half the round trip measured
//   on our own clock (the symmetric-delay assumption of NTP's simplest form).
// - pull_blacklist(): BlacklistRequest from the cache's version, page after page while the
//   reply says `more` (a full transfer continues with full = true), each page applied to the
//   BlacklistCache (blacklist_cache.h: bounded, refuses pages for another base version).
// - pull_params(): ParamsRequest from our version, page after page, applied to a ParamsCache:
//   fare tables by table id, card-type discounts, merchant discounts, withdrawn keys removed.
//   fare_policy(table) turns a downloaded table into the FarePolicy a bus terminal or gate
//   uses (fare_policy_from_wire).
// - sync(): sign-on, then the blacklist, then the parameters; the first failure stops it.
//
// Every pull is bounded (`pages_max`) so a server that always says `more` cannot hold the
// terminal. A failure (link down, timeout, error reply, unreadable reply, a page the cache
// refuses) leaves the caches as they were after the last good page; the next pull resumes
// from there. Callbacks run once, on the thread that drives the channel.
//
// Single-threaded. Does not own the channel, the clock or the blacklist cache, which must
// outlive it; a reply arriving after its destruction is ignored.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "citycard/devices/blacklist_cache.h"
#include "citycard/devices/fare_policy.h"
#include "citycard/devices/terminal_guards.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/status.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/transport.h"

namespace citycard::devices {

// Parameters downloaded with ParamsReply pages.
class ParamsCache {
 public:
  // Applies one page; `asked_since` is the since_version the request carried. kConflict for a
  // page on another base than ours; kMalformed for a reply that names an unknown removed key.
  Status apply(const citycard::wire::ParamsReply& page, std::uint64_t asked_since);

  std::uint64_t version() const { return version_; }
  const std::map<std::string, citycard::wire::FareTable>& fare_tables() const { return fares_; }
  // By card type (0 adult .. 3 staff): basis points off.
  const std::map<std::uint32_t, std::uint32_t>& card_type_discounts() const { return card_types_; }
  // Basis points off for a merchant's product category ("" = its default); 0 when none.
  std::uint32_t merchant_discount_bp(const std::string& merchant_id,
                                     const std::string& category) const;
  // kNotFound when the table was never downloaded or was withdrawn; kMalformed when it does
  // not make a policy (fare_policy_from_wire).
  Result<FarePolicy> fare_policy(const std::string& table_id) const;

 private:
  std::uint64_t version_ = 0;
  std::map<std::string, citycard::wire::FareTable> fares_;
  std::map<std::uint32_t, std::uint32_t> card_types_;
  std::map<std::string, std::uint32_t> merchant_;  // "<merchant>/<category>"
};

struct HostSessionOptions {
  protocol::TerminalId terminal_id{};
  std::string device_id;
  std::string operator_id;
  std::size_t pages_max = 1'000;  // per pull
};

struct HostCounters {
  std::uint64_t sign_ons = 0;                  // accepted
  std::uint64_t requests = 0;                  // sent, every kind
  std::uint64_t failures = 0;                  // link, timeout, refusal, bad reply
  std::uint64_t blacklist_pages = 0;           // applied
  std::uint64_t params_pages = 0;              // applied
  std::int64_t last_correction_us = 0;         // the clock correction of the last sign-on
  std::uint64_t server_blacklist_version = 0;  // as of the last sign-on
  std::uint64_t server_params_version = 0;
};

class HostSession {
 public:
  using Done = std::function<void(Status)>;

  HostSession(HostSessionOptions options, sim::Channel& channel, TerminalClock& clock,
              BlacklistCache& blacklist);
  ~HostSession();
  HostSession(const HostSession&) = delete;
  HostSession& operator=(const HostSession&) = delete;

  // `next_batch_no`: the upload queue's, for the backend's log (not checked there).
  void sign_on(Done done, std::uint64_t next_batch_no = 0);
  void pull_blacklist(Done done);
  void pull_params(Done done);
  void sync(Done done);

  // True after a sign-on was accepted and until a later one is refused.
  bool signed_on() const { return signed_on_; }
  const ParamsCache& params() const { return params_; }
  const BlacklistCache& blacklist() const { return blacklist_; }
  const HostCounters& counters() const { return counters_; }
  const Status& last_failure() const { return last_failure_; }
  // From the last accepted sign-on: what the backend has registered for us.
  const std::string& registered_route() const { return route_; }
  const std::string& registered_vehicle() const { return vehicle_; }

 private:
  using OnEnvelope = std::function<void(Result<citycard::wire::Envelope>)>;
  void request(citycard::wire::Envelope envelope, OnEnvelope on_reply);
  void blacklist_page(std::uint64_t since, bool full, std::size_t pages, Done done);
  void params_page(std::uint64_t since, std::size_t pages, Done done);
  Status fail(Status why);

  HostSessionOptions options_;
  sim::Channel& channel_;
  TerminalClock& clock_;
  BlacklistCache& blacklist_;
  ParamsCache params_;
  HostCounters counters_;
  Status last_failure_;
  bool signed_on_ = false;
  std::string route_;
  std::string vehicle_;
  std::uint64_t next_request_id_ = 1;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

// The wire code of an ErrorReply as a Status: UNKNOWN_TERMINAL, UNKNOWN_CARD and NOT_FOUND
// kNotFound; TERMINAL_MISMATCH, FORBIDDEN and UNAUTHENTICATED kPermissionDenied; BUSY
// kUnavailable; MALFORMED kMalformed; INSUFFICIENT_FUNDS kInsufficientFunds; BAD_MAC kBadMac;
// CONFLICT kConflict; others kRejected. The message names the code.
Status status_of_error(const citycard::wire::ErrorReply& error);

// A request answered in place, for clients that drive their own transport by pumping it (the
// desk, the POS, the online load client): sends `request` (its request_id already set) on
// `channel`, calls `pump` until the answer came (kTimeout after `pump_rounds_max` rounds; a
// late answer after that writes into its own slot) and decodes it. An answer that is not an
// ErrorReply must echo the request id (kMalformed otherwise); an ErrorReply is returned as it
// came, for the caller to map.
Result<citycard::wire::Envelope> pumped_call(sim::Channel& channel,
                                             const citycard::wire::Envelope& request,
                                             const std::function<void()>& pump,
                                             std::size_t pump_rounds_max);

}  // namespace citycard::devices
