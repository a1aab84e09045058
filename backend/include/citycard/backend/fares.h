// Fares, discounts and the parameters terminals download (票价, 折扣, 参数下发).
//
// Parameters are versioned: every change (a fare table published or withdrawn, a card type's
// discount, a merchant's discount for a product category) takes the next version, and a
// terminal pulls "what changed since version N" (page()): the current value of every
// parameter changed after N, in version order, bounded to FareOptions::reply_items_max items
// (ask again with `version` while `more`), and the keys withdrawn since N. N = 0 gets
// everything current.
//
// Fares (quote()), in this order, all integer fen:
//   base      flat_fen, or for a distance table the band that holds the distance between the
//             boarding and alighting stations (bands by up_to_m; past the last band
//             +beyond_step_fen for every started beyond_step_m);
//   time      the first time band holding the boarding minute replaces the base (fare_fen > 0)
//             or takes discount_bp off it; then max_fare_fen caps it. This is the full fare;
//   card type the card type's discount_bp off the full fare (10,000: rides free);
//   transfer  a boarding within transfer_window_s of the previous one takes
//             transfer_discount_fen off, never below zero.
// A discount is rate_of(fare, bp) (money.h): half a fen of discount rounds up, in the rider's
// favour.
//
// Merchant discounts (per merchant, per product category; the category "" is the merchant's
// default): price() is what a POS charges.
//
// Threads: one caller at a time (the Backend's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "citycard/backend/calendar.h"
#include "citycard/backend/store.h"
#include "citycard/backend/users.h"
#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/status.h"
#include "citycard/protocol/wire.h"

namespace citycard::backend {

struct FareOptions {
  std::size_t reply_items_max = 200;
  std::size_t bands_max = 32;
  std::size_t stations_max = 256;
  std::size_t time_bands_max = 16;
  std::size_t tables_max = 2'000;
  std::int64_t fare_max_fen = 100'000;
};

enum class FareKind : std::uint32_t { kFlat = 0, kDistance = 1 };

struct Ride {
  protocol::CardType card_type = protocol::CardType::kAdult;
  std::string board_station;                                // distance tables
  std::string alight_station;                               // distance tables
  int minute_of_day = 0;                                    // boarding time, 0..1439
  std::optional<std::int64_t> seconds_since_last_boarding;  // for the transfer discount
};

struct FareQuote {
  std::int64_t distance_m = 0;
  std::int64_t full_fen = 0;  // base and time of day, capped
  std::int64_t fare_fen = 0;  // what the card pays
  bool transfer = false;
};

// Pure: the fare of one ride under one table and the card-type discounts in force.
Result<FareQuote> quote_fare(const citycard::wire::FareTable& table,
                             const std::vector<citycard::wire::CardTypeDiscount>& card_types,
                             const Ride& ride);
// kInvalidArgument naming the first problem of a table (bounds, order, duplicates).
Status validate_fare_table(const citycard::wire::FareTable& table, const FareOptions& options);

class Fares {
 public:
  Fares(Store& store, const Calendar& calendar, Users& users, FareOptions options = {})
      : store_(store), calendar_(calendar), users_(users), options_(options) {}

  // Admin. Each returns the new parameter version.
  Result<std::uint64_t> publish_fare_table(const Session& by,
                                           const citycard::wire::FareTable& table);
  Result<std::uint64_t> withdraw_fare_table(const Session& by, const std::string& table_id);
  Result<std::uint64_t> set_card_type_discount(const Session& by, protocol::CardType type,
                                               std::uint32_t discount_bp);
  // Admin, or the merchant's owner for its own merchant.
  Result<std::uint64_t> set_merchant_discount(const Session& by, const std::string& merchant_id,
                                              const std::string& category,
                                              std::uint32_t discount_bp);

  Result<citycard::wire::FareTable> fare_table(const std::string& table_id) const;
  Result<std::vector<citycard::wire::CardTypeDiscount>> card_type_discounts() const;
  Result<FareQuote> quote(const std::string& table_id, const Ride& ride) const;
  // What a POS charges for `amount_fen` of `category` at the merchant.
  Result<std::int64_t> price(const std::string& merchant_id, const std::string& category,
                             std::int64_t amount_fen) const;

  Result<std::uint64_t> version() const;
  Result<citycard::wire::ParamsReply> page(std::uint64_t since_version) const;

 private:
  Result<std::uint64_t> put(const std::string& kind, const std::string& key,
                            const std::string& body, bool removed);
  Result<std::optional<std::string>> get(const std::string& kind, const std::string& key) const;

  Store& store_;
  const Calendar& calendar_;
  Users& users_;
  FareOptions options_;
};

}  // namespace citycard::backend
