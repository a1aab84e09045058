// The load (圈存, recharge) transaction: money from an online account or the counter into the
// card's purse, authorised by the issuer's host, which alone holds the load master key.
//
//   card  00A4 SELECT, 00B0 READ BINARY 0x15     (as a purchase, purchase.h identify_card)
//   card  805A GET TRANSACTION PROVE             -- only when this card has a grey load here
//   card  0020 VERIFY                            -- only when the request carries a PIN
//   card  8050 00 02 INITIALIZE FOR LOAD         -> balance, online counter, random, MAC1
//   host  authorise: checks MAC1 under the card's DLK, answers MAC2
//   card  8052 CREDIT FOR LOAD (date, time, MAC2) -> TAC
//
// Tearing: when CREDIT gets no answer the card may or may not have been credited, and the host
// has already authorised the money. The engine keeps a grey load. On the card's next tap here
// it asks for the proof of the load (GET TRANSACTION PROVE with LoadOptions::prove_type, whose
// value is not confirmed by a public source, and the online counter after the load). If the
// card has the proof and its MAC is the MAC2 this terminal sent, the load is completed from
// the grey record and the TAC, and reported as `recovered`; otherwise the online counter from
// INITIALIZE tells whether the credit did not happen (cleared: the host must reverse it) or
// the card has loaded elsewhere since (unresolved).
//
// Not thread-safe. Does not own the host or the card link.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "citycard/devices/card_keys.h"
#include "citycard/devices/card_link.h"
#include "citycard/devices/purchase.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/status.h"

namespace citycard::devices {

// What the host needs to authorise a load (the card's INITIALIZE FOR LOAD answer and the
// request).
struct LoadAuthorisation {
  protocol::Serial8 card_serial{};
  std::uint8_t key_version = 0;
  std::uint8_t algorithm_id = 0;
  std::uint32_t balance_before_fen = 0;
  std::uint16_t online_counter = 0;
  protocol::Random4 card_random{};
  std::uint32_t amount_fen = 0;
  protocol::TerminalId terminal{};
  protocol::DateTime7 datetime{};
  protocol::Mac4 mac1{};
};

struct LoadApproval {
  protocol::Mac4 mac2{};
  std::int64_t host_us = 0;  // simulated time the host took, network included
  // The date-time MAC2 was computed over, when the host chose its own (the clearing centre
  // does: wire LoadAuthReply.datetime); CREDIT FOR LOAD then carries it. Empty: the request's.
  std::optional<protocol::DateTime7> datetime;
};

// The issuer's load host as a terminal sees it. Errors: Errc::kBadMac for a MAC1 that does not
// verify, kNotFound for an unknown key version, kRejected for a refusal by rule.
class LoadHost {
 public:
  virtual ~LoadHost();
  virtual Result<LoadApproval> authorise(const LoadAuthorisation& request) = 0;
};

// An in-process host that computes with the issuer's keys: the fake beside the interface, for
// tests and virtual-time runs. Does not own the key table.
class KeyedLoadHost final : public LoadHost {
 public:
  struct Options {
    std::int64_t host_latency_us = 200'000;  // a recharge round trip over GPRS and the host
  };
  explicit KeyedLoadHost(const IssuerKeyTable& keys) : KeyedLoadHost(keys, Options{}) {}
  KeyedLoadHost(const IssuerKeyTable& keys, Options options) : keys_(keys), options_(options) {}

  Result<LoadApproval> authorise(const LoadAuthorisation& request) override;
  std::uint64_t approvals() const { return approvals_; }

 private:
  const IssuerKeyTable& keys_;
  Options options_;
  std::uint64_t approvals_ = 0;
};

struct LoadRequest {
  std::uint32_t amount_fen = 0;
  protocol::DateTime7 datetime{};
  std::optional<std::string> pin;  // digits; VERIFY before INITIALIZE FOR LOAD when given
};

// A completed load: what the load's clearing record needs.
struct Load {
  protocol::Serial8 card_serial{};
  std::uint16_t online_counter = 0;  // the counter the load used
  std::uint32_t balance_before_fen = 0;
  std::uint32_t amount_fen = 0;
  protocol::TerminalId terminal{};
  protocol::DateTime7 datetime{};
  protocol::Mac4 mac2{};
  protocol::Mac4 tac{};
  std::uint8_t key_version = 0;
  std::uint8_t algorithm_id = 0;
  bool operator==(const Load&) const = default;
};

struct LoadResult {
  std::optional<Refusal> refusal;  // empty: the load is done
  std::uint16_t sw = 0;
  std::string detail;
  bool recovered = false;        // completes an earlier torn load; no new credit
  Load load;                     // valid when ok()
  std::int64_t duration_us = 0;  // card time and host time of this tap

  bool ok() const { return !refusal.has_value(); }
};

struct LoadOptions {
  bool accept_jtt978 = true;
  bool accept_cjt166 = true;
  std::uint8_t key_index = 0x01;
  // GET TRANSACTION PROVE's P2 for a load: NOT confirmed (protocol/purse.h). Must match the
  // cards' CardProfile::load_prove_type.
  std::uint8_t prove_type = protocol::txn::kLoadProveTypeDefault;
  std::size_t cjt166_city_code_offset = 2;
};

struct GreyLoadCounters {
  std::uint64_t recorded = 0;
  std::uint64_t completed = 0;
  std::uint64_t cleared = 0;  // not credited: the host must reverse the authorisation
  std::uint64_t unresolved = 0;
};

class LoadEngine {
 public:
  static constexpr std::size_t kGreyLoadsMax = 16;

  LoadEngine(const protocol::TerminalId& terminal, LoadHost& host, LoadOptions options = {})
      : terminal_(terminal), host_(host), options_(options) {}

  LoadResult load(CardLink& card, const LoadRequest& request);

  std::size_t grey_loads() const { return grey_.size(); }
  const GreyLoadCounters& grey_counters() const { return grey_counters_; }

 private:
  LoadResult run(CardLink& card, const LoadRequest& request, std::int64_t* host_us);
  std::optional<LoadResult> recover(CardLink& card, std::size_t grey_index);
  void keep_grey(const Load& grey);
  void resolve_grey(const protocol::Serial8& serial, std::uint16_t online_counter_now);

  protocol::TerminalId terminal_;
  LoadHost& host_;
  LoadOptions options_;
  std::vector<Load> grey_;  // at most kGreyLoadsMax, oldest first
  GreyLoadCounters grey_counters_;
};

}  // namespace citycard::devices
