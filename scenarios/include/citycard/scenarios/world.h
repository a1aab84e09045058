// The simulated city of a virtual-time run: cards, buses with validators and PSAMs, the
// simulated GPRS network and the embedded backend, on one event loop driven by one seed.
//
// The world owns everything and reports through the trace; the Lua API (lua_api.cpp) only
// configures and drives it. Single-threaded.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "citycard/backend/backend.h"
#include "citycard/backend/ca.h"
#include "citycard/devices/blacklist_cache.h"
#include "citycard/devices/bus_validator.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/psam.h"
#include "citycard/devices/taxi_meter.h"
#include "citycard/protocol/status.h"
#include "citycard/reports/trace.h"
#include "citycard/sim/event_loop.h"
#include "citycard/sim/rng.h"
#include "citycard/sim/transport.h"

namespace citycard::scenarios {

struct CityConfig {
  std::int64_t start_epoch2000_s = 0;     // calendar time at virtual time zero
  std::int64_t cards = 1000;
  std::int64_t balance_fen_min = 500;
  std::int64_t balance_fen_max = 10'000;
  std::int64_t routes = 2;
  std::int64_t buses_per_route = 3;
  std::int64_t fare_fen = 200;
  std::string operator_id = "bus-co-1";
  sim::NetworkOptions network;
  std::int64_t upload_interval_us = 60'000'000;
  std::int64_t batch_size_max = 100;
  // Card-type mix: the share of issued cards of each type, by protocol::CardType (adult,
  // student, elder, staff); the shares are weights, not necessarily summing to 1. Each type's
  // discount in basis points off the fare (half a fen of discount rounds in the rider's
  // favour, fare_policy.h); below 10000 so every sale charges at least 1 fen.
  std::array<double, 4> card_mix{1.0, 0.0, 0.0, 0.0};
  std::array<std::int64_t, 4> card_discount_bp{0, 0, 0, 0};
  // Taxis: each a devices::TaxiModule (meter, sale core, durable log on its own MemoryDisk),
  // registered to `taxi_operator`, uploading every upload_interval_us like the buses.
  std::int64_t taxis = 0;
  std::string taxi_operator = "taxi-co-1";
  static constexpr std::int64_t kTaxisMax = 10'000;
  // Every APDU exchange of every tap into the trace as an "apdu" event (terminal, command,
  // response with its status word, simulated duration). Off by default: a city's hour is
  // millions of exchanges.
  bool trace_apdus = false;
  // Group commit in the embedded backend: requests arriving within this much virtual time
  // (or until kCommitGroupMax are waiting) are handled inside one SQLite transaction and
  // answered only after its commit, as a real server's group commit answers after its one
  // fsync; a backend crash before the commit loses the group and answers none of it (the
  // terminals retry). 0: each request commits and is answered on its own.
  std::int64_t commit_interval_us = 1'000'000;
  static constexpr std::size_t kCommitGroupMax = 1'000;
  // Terminal certificates: every bus and taxi is commissioned as a real one is (backend ca.h:
  // an EC key pair and a CURVE key pair, a terminal certificate the RA approves that binds the
  // CURVE key), and the backend checks, per request, that the certificate the terminal
  // connected with is still good, as the ZeroMQ server does (server.h): a revoked or expired
  // one is answered ErrorReply UNAUTHENTICATED. Off by default: each certificate costs key
  // generation and two signatures at build (about 3 ms), too much for a city of 20,000 buses.
  bool certificates = false;

  // Limits: a scenario asking for more is refused with a message, not run out of memory.
  static constexpr std::int64_t kCardsMax = 50'000'000;
  static constexpr std::int64_t kBusesMax = 100'000;
  static constexpr std::int64_t kCommitIntervalMax = 60'000'000;
  Status validate() const;
};

// Commuters: each rider is one card with a home route and a work route; a morning trip from
// home to work and an evening trip back, each either direct or with a transfer (a second tap on
// a bus of the other route 10 to 25 minutes later). Departures follow a triangular
// distribution over each window, peaking at `peak`.
struct RiderConfig {
  std::int64_t riders = 0;              // the first `riders` cards ride
  double transfer_share = 0.3;          // trips with a transfer
  std::int64_t morning_from_us = 0, morning_peak_us = 0, morning_to_us = 0;
  std::int64_t evening_from_us = 0, evening_peak_us = 0, evening_to_us = 0;
  bool evening = true;
};

// Faults a scenario switches on. Network knobs act on the simulated network at once.
struct FaultConfig {
  sim::NetworkOptions network;
  double clock_drift_ppm_stddev = 0;    // per-bus drift, drawn once per bus
  // Card tearing: per APDU exchange, the chance that the card leaves the field (the split
  // between before, after and during the command is devices::TearingOptions' default).
  double tear_probability = 0;
  // A tear at an exact APDU: the `tear_tap`-th tap of the run (1-based; 0: none) tears at
  // its exchange `tear_apdu` (0-based), `tear_when` it.
  std::int64_t tear_tap = 0;
  std::int64_t tear_apdu = 0;
  devices::TearingLink::When tear_when = devices::TearingLink::When::kAfterCommand;
};

struct WorldStats {
  std::uint64_t taps = 0;
  std::uint64_t swipes = 0;                  // sales made
  std::uint64_t refusals = 0;
  std::uint64_t refusals_insufficient = 0;
  std::uint64_t refusals_blacklisted = 0;    // a listed card was refused (and locked)
  std::int64_t validator_amount_fen = 0;     // sum of fares the validators took
  std::uint64_t uploaded_records = 0;        // accepted by the backend, per the acks
  std::uint64_t duplicate_records = 0;
  std::uint64_t rejected_records = 0;
  std::uint64_t queued_records = 0;          // still on the buses
  std::uint64_t batches_acked = 0;
  std::uint64_t upload_failures = 0;
  std::int64_t backend_amount_fen = 0;       // cleared by the backend, all operators
  std::uint64_t network_messages = 0;
  std::uint64_t network_lost = 0;
  std::uint64_t network_duplicated = 0;
  std::uint64_t transfers = 0;               // second legs of trips
  std::uint64_t trips = 0;
  std::uint64_t backend_crashes = 0;
  std::uint64_t commit_groups = 0;           // group commits of the embedded backend
  std::uint64_t grouped_requests = 0;        // requests answered through them
  std::uint64_t groups_lost = 0;             // open groups a backend crash threw away
  std::int64_t max_clock_error_us = 0;       // largest |bus clock - true time| now
  std::uint64_t torn = 0;                    // taps refused because the card left mid-way
  std::uint64_t retaps = 0;                  // riders tapping again after a torn tap
  std::uint64_t recovered = 0;               // taps that completed an earlier torn sale
  std::uint64_t replacements = 0;            // cards replaced at the desk
  std::uint64_t syncs = 0;                   // blacklist/parameter pulls answered
  std::uint64_t sync_failures = 0;           // ... that failed (link down, timeout, error)
  // Per card type (protocol::CardType: adult, student, elder, staff): cards issued, sales
  // made and fen charged.
  std::array<std::uint64_t, 4> cards_by_type{};
  std::array<std::uint64_t, 4> swipes_by_type{};
  std::array<std::int64_t, 4> amount_fen_by_type{};
  // Taxis: trips charged, fen charged (not in validator_amount_fen: the backend clears
  // validator_amount_fen + taxi_amount_fen), refusals, power losses survived.
  std::uint64_t taxi_trips = 0;
  std::int64_t taxi_amount_fen = 0;
  std::uint64_t taxi_refusals = 0;
  std::uint64_t power_losses = 0;
  // Certificates (CityConfig::certificates): requests the backend refused because the
  // terminal's certificate is revoked or expired (ErrorReply UNAUTHENTICATED), of which
  // uploads; certificates revoked and terminals commissioned again with new ones.
  std::uint64_t refused_requests = 0;
  std::uint64_t refused_uploads = 0;
  std::uint64_t revocations = 0;
  std::uint64_t recommissions = 0;
};

// One bus as an observer sees it (buses() in Lua).
struct BusView {
  std::string vehicle;
  std::string route;
  std::int64_t fare_fen = 0;              // the flat fare it charges now
  std::uint64_t blacklist_version = 0;    // of its blacklist cache
  std::size_t blacklist_size = 0;
  std::uint64_t params_version = 0;       // of the parameters (fare tables) it applied
  std::size_t queued_records = 0;
  std::string last_failure;               // why its last upload failed ("" once one succeeds)
};

// A terminal's certificate as the backend's PKI sees it (certificate() in Lua).
struct CertificateView {
  std::string terminal;     // vehicle or plate
  std::string subject_id;   // the terminal id, 12 hex digits
  std::string serial_hex;   // differs from run to run (random serials): never traced
  bool revoked = false;     // by the CA's records
  // verify(): the chain, validity and the issuer's current CRL, by OpenSSL
  // (CertificateVerifier); `why` says what failed ("certificate revoked").
  bool verifies = false;
  std::string why;
  std::string pem;
};

// Per-card money check: for every card, opening balance - balance now == the sales recorded
// for it (records queued or uploaded). A torn sale nobody recovered shows up here.
struct CardCheck {
  std::size_t cards = 0;
  std::size_t off = 0;              // cards that fail the equation
  std::string first_problem;
  std::int64_t opening_fen = 0;     // sum over cards
  std::int64_t balance_fen = 0;
  std::int64_t recorded_fen = 0;
};

// What settle{} did: one settlement batch of the bus operator's due periods, approved by a
// second finance user, paid through the bank file and reconciled with the bank's statement.
struct SettleOutcome {
  std::int64_t batch_id = 0;      // 0: nothing was due
  int business_date = 0;          // YYYYMMDD
  std::size_t lines = 0;
  std::int64_t gross_fen = 0;
  std::int64_t fee_fen = 0;
  std::int64_t net_fen = 0;
  std::int64_t file_fen = 0;      // in the bank payment file
  std::int64_t confirmed_fen = 0; // payouts the bank's statement confirmed
  std::size_t differences = 0;    // reconciliation differences
  std::string first_difference;
  int settled_through = 0;        // the operator's last settled day (YYYYMMDD)
};

// What a tap by hand (tap{} in Lua) did.
struct TapOutcome {
  bool ok = false;
  std::string reason;  // refusal name when !ok
  std::int64_t amount_fen = 0;
};

// Defects the world can inject, so a scenario can be shown to fail when the thing it checks is
// broken (each library scenario names the defect that must break it):
//   ack_on_failure   a bus treats an upload that failed (timeout, link down) as acknowledged
//   corrupt_tac      a bus flips a bit of the first record's TAC in every batch it sends
//   backend_amnesia  the backend restarts from an empty store instead of its file
//   no_transfers     riders never change buses
//   stale_blacklist  buses fetch blacklist pages but never apply them
//   stale_fares      buses fetch fare tables but never apply them
//   bank_drops_file  the bank never executes settlement payment files
//   ignore_revocation the backend serves terminals whose certificate is revoked (it never
//                    checks the CRL after the handshake)
//   retap_elsewhere  a rider whose tap tore taps again on another bus (so the terminal holding
//                    the grey sale never sees the card again and cannot complete it)
const std::vector<std::string>& known_defects();

class World {
 public:
  // `db_path`: the backend's SQLite file (":memory:" for none).
  World(std::uint64_t seed, reports::TraceWriter& trace, std::string db_path);
  ~World();

  Status build(const CityConfig& config);
  // Before build(); unknown names are refused.
  Status set_defects(const std::vector<std::string>& defects);
  bool defect(const std::string& name) const;
  bool built() const { return built_; }

  // Poisson arrivals of taps between two virtual times, each a random card on a random bus.
  // With a curve, the window is cut into equal segments whose rates are swipes_per_hour
  // scaled by weight / max(weight): swipes_per_hour is the rate at the peak.
  Status add_phase(std::int64_t from_us, std::int64_t to_us, double swipes_per_hour,
                   const std::vector<double>& curve = {});
  Status add_riders(const RiderConfig& riders);
  Status set_faults(const FaultConfig& faults);
  // A GPRS outage or partition for the buses whose vehicle id starts with `group` ("R1" = the
  // buses of route R1, "" = every bus).
  Status add_outage(const std::string& group, std::int64_t from_us, std::int64_t to_us);
  // The backend process dies at `at_us` (everything in memory is gone; requests go
  // unanswered) and restarts from its SQLite file `down_us` later.
  Status crash_backend(std::int64_t at_us, std::int64_t down_us);
  bool backend_up() const { return backend_up_; }
  // Commits the embedded backend's open group now and sends its answers (see
  // CityConfig::commit_interval_us); operator actions call it first.
  void commit_pending();
  // Runs `action` at a virtual time (operator actions, checks).
  Status at(std::int64_t at_us, std::function<void()> action);
  Status run_until(std::int64_t t_us);
  // Runs until every bus has uploaded everything and no batch is in flight, or `max_us` of
  // virtual time has passed (kTimeout).
  Status drain(std::int64_t max_us);

  WorldStats stats() const;
  Status conservation() const;

  // ---- operator actions (the backend must be up: kUnavailable otherwise) ----
  // Lists (or unlists) card `card_index` (0-based) on the backend's blacklist; returns the new
  // blacklist version. Buses learn it when they next pull (after each upload poll), as a
  // versioned delta over their own link: an outage delays it.
  Result<std::uint64_t> blacklist_card(std::size_t card_index, bool listed);
  // Publishes a flat fare table for a route; returns the new parameter version. Buses apply it
  // when they next pull parameters.
  Result<std::uint64_t> publish_flat_fare(const std::string& route, std::int64_t fare_fen);
  // Runs settlement for the bus operator (made a transit merchant with `fee_bp` on its first
  // settlement, settling daily from the city's first day): prepare (finance user 1), approve
  // (finance user 2), bank file, the bank pays it, reconcile today's statement.
  Result<SettleOutcome> settle(std::int64_t fee_bp);
  // A rider's card is damaged and replaced at the desk: the backend moves the balance it
  // believes in to a new card (the old one goes on the blacklist) and the rider carries the
  // new card from now on. Sales of the old card still on their way clear against it later.
  // Returns the new card's serial, hex.
  Result<std::string> replace_card(std::size_t card_index);
  // Revokes the certificate of terminal `terminal` (a vehicle "R1-B2" or a plate "T3") for
  // `reason` (backend::CertificateAuthority::revoke: the issuer's CRL is re-signed). From its
  // next request on the backend refuses the terminal (ErrorReply UNAUTHENTICATED: uploads fail
  // and the records stay queued on the terminal; nothing is lost). Needs certificates.
  Status revoke(const std::string& terminal, backend::RevocationReason reason);
  // A technician fits the terminal with new keys: a new certificate (new EC and CURVE keys,
  // approved by the RA) and a new connection; what it kept queued uploads again.
  Status recommission(const std::string& terminal);
  Result<CertificateView> certificate(const std::string& terminal) const;
  // The backend's blacklist version as of the last operator action (0: none).
  std::uint64_t blacklist_version() const { return blacklist_version_; }
  std::uint64_t params_version() const { return params_version_; }
  std::vector<BusView> buses() const;
  // A tap by hand: card `card_index` on the bus `vehicle` now.
  Result<TapOutcome> tap_card(std::size_t card_index, const std::string& vehicle);
  std::size_t card_count() const { return cards_.size(); }
  // Taxi trips: a Poisson stream of `trips_per_hour` over [from_us, to_us), each a random card
  // in a random taxi, 1.5 to 20 km at city speed, charged by the taxi's meter at the end.
  Status add_taxi_trips(std::int64_t from_us, std::int64_t to_us, double trips_per_hour);
  // A taxi loses power at `at_us`: its module (volatile state: the queue in RAM, the batch in
  // flight) is gone and the unsynced bytes of its disk with it; it powers up again at once and
  // replays its durable log. `taxi` is a plate ("T1".."Tn").
  Status power_loss(const std::string& taxi, std::int64_t at_us);
  // What a taxi holds now: records queued (in its log) and the log's recovery count.
  std::size_t taxi_queue_length(std::size_t taxi_index) const;
  // The type a card was issued with (protocol::CardType); kAdult for an unknown index.
  protocol::CardType card_type(std::size_t card_index) const {
    return card_index < card_types_.size()
               ? static_cast<protocol::CardType>(card_types_[card_index])
               : protocol::CardType::kAdult;
  }
  CardCheck check_cards() const;
  std::string card_serial_hex(std::size_t card_index) const;
  backend::Backend& backend() { return *backend_; }  // while up
  sim::EventLoop& loop() { return loop_; }
  const CityConfig& config() const { return config_; }

 private:
  struct Bus;
  class TracingChannel;
  class Endpoint;
  class GroupCommit;
  // Registers the terminal's endpoint and, with certificates, commissions its certificate.
  Result<Endpoint*> connect_terminal(const std::string& name, const protocol::PsamImage& psam);
  Status enrol(Endpoint& endpoint);
  Endpoint* endpoint_of(const std::string& terminal) const;
  struct Taxi;
  static Result<protocol::CardType> read_card_type(devices::CardLink& link);
  void schedule_taxi_poll(std::size_t taxi_index, std::int64_t at_us);
  void schedule_taxi_arrival(std::int64_t at_us, std::int64_t to_us, double mean_gap_us);
  void taxi_trip(std::size_t card_index, std::size_t taxi_index);
  void power_on_taxi(Taxi& t);
  TapOutcome tap(std::size_t card_index, std::size_t bus_index, const char* leg = nullptr,
                 int retaps_left = 3);
  // What a card link at `terminal` reports its exchanges to (nothing unless trace_apdus).
  devices::ApduTrace apdu_trace(const std::string& terminal);
  void schedule_poll(std::size_t bus_index, std::int64_t at_us);
  // Pulls the blacklist (then the parameters) over the bus's link, page by page.
  void sync_blacklist(std::size_t bus_index);
  void sync_params(std::size_t bus_index);
  Status ensure_operator();
  void schedule_arrival(std::int64_t from_us, std::int64_t to_us, double mean_gap_us);
  void schedule_trip(std::size_t card, std::size_t from_route, std::size_t to_route,
                     std::int64_t depart_us, bool transfer);
  std::size_t random_bus_of(std::size_t route);
  Status open_backend();

  std::uint64_t seed_;
  reports::TraceWriter& trace_;
  std::string db_path_;
  sim::EventLoop loop_;
  sim::Rng rng_;
  sim::Rng demand_rng_;
  CityConfig config_;
  std::unique_ptr<backend::Backend> backend_;
  bool backend_up_ = false;
  bool built_ = false;
  std::unique_ptr<backend::CertificateAuthority> ca_;  // with certificates, while up
  std::unique_ptr<GroupCommit> group_commit_;  // before the endpoints that use it
  std::vector<std::unique_ptr<Endpoint>> endpoints_;    // one per terminal
  std::unique_ptr<sim::SimNetwork> network_;
  FaultConfig faults_;
  Status restart_error_;
  std::vector<std::string> defects_;  // a backend that failed to restart ends the run
  std::vector<devices::CpuCard> cards_;
  std::vector<std::int64_t> opening_fen_;   // per card, as issued
  std::vector<std::unique_ptr<Taxi>> taxis_;
  bool discounts_on_ = false;               // a card type has a discount
  std::vector<std::uint8_t> card_types_;    // per card: protocol::CardType as issued
  std::vector<std::int64_t> recorded_fen_;  // per card, sales recorded by terminals
  sim::Rng tear_rng_;
  std::vector<std::unique_ptr<Bus>> buses_;
  WorldStats stats_;
  std::uint64_t blacklist_version_ = 0;
  std::uint64_t params_version_ = 0;
  std::uint64_t sync_request_id_ = std::uint64_t{1} << 40;  // apart from upload request ids
  std::optional<backend::Session> operator_;  // the scripted operator's session
  std::optional<backend::Session> finance_[2];  // preparer and approver (four eyes)
  int start_yyyymmdd_ = 0;
};

// "2026-11-23 07:00" or "2026-11-23 07:00:30" -> seconds since 2000-01-01; false if malformed.
bool parse_calendar(const std::string& text, std::int64_t& epoch2000_s);
// "07:30" or "07:30:15" -> seconds since midnight; false if malformed.
bool parse_time_of_day(const std::string& text, std::int64_t& seconds);

}  // namespace citycard::scenarios
