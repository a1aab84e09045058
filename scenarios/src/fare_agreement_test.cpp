// The terminal's fare (devices fare_policy.h) and the clearing centre's (backend fares.h) agree
// on the same downloaded table: the card-type discount on the full fare first, then the transfer
// discount, and half a fen of discount rounded in the rider's favour.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "citycard/backend/fares.h"
#include "citycard/devices/fare_policy.h"

namespace citycard {
namespace {

using protocol::CardType;

constexpr std::int64_t kNine = 9 * 3600;  // 09:00 on 2000-01-01
constexpr std::int64_t kHalfPastEight = 8 * 3600 + 1800;

struct Quotes {
  std::int64_t backend;
  std::int64_t terminal;
};

Quotes both(const wire::FareTable& table, const wire::ParamsReply& reply, CardType type,
            bool transfer) {
  std::vector<wire::CardTypeDiscount> discounts(reply.card_type_discounts().begin(),
                                                reply.card_type_discounts().end());
  backend::Ride ride;
  ride.card_type = type;
  ride.minute_of_day = 9 * 60;
  if (transfer) ride.seconds_since_last_boarding = kNine - kHalfPastEight;
  Result<backend::FareQuote> b = backend::quote_fare(table, discounts, ride);
  EXPECT_TRUE(b.is_ok()) << b.status().message();

  Result<devices::FarePolicy> p =
      devices::fare_policy_from_wire(table, reply.card_type_discounts());
  EXPECT_TRUE(p.is_ok()) << p.status().message();
  if (!b.is_ok() || !p.is_ok()) return {-1, -2};
  devices::FareContext c;
  c.card_type = type;
  c.now_epoch2000_s = kNine;
  if (transfer) c.last_boarding_epoch2000_s = kHalfPastEight;
  const devices::Fare t = devices::quote(*p, c);
  EXPECT_EQ(b->transfer, t.transfer);
  EXPECT_EQ(b->full_fen, std::int64_t{t.full_fen});
  return {b->fare_fen, t.charged_fen};
}

struct Tables {
  wire::ParamsReply reply;
  wire::FareTable* table = reply.add_fares();
  Tables(std::int64_t flat_fen, std::uint32_t student_bp, std::int64_t transfer_fen) {
    table->set_table_id("B1");
    table->set_kind(0);
    table->set_flat_fen(flat_fen);
    table->set_transfer_window_s(3600);
    table->set_transfer_discount_fen(transfer_fen);
    wire::CardTypeDiscount* d = reply.add_card_type_discounts();
    d->set_card_type(static_cast<std::uint32_t>(CardType::kStudent));
    d->set_discount_bp(student_bp);
  }
};

TEST(FareAgreement, AStudentTransferringPaysTheSameFromTerminalAndBackend) {
  // 250 fen, students half, transfer 100 off: half of 250 = 125, then 100 off = 25.
  // (Transfer first would give 75: the order matters, and both sides use the same one.)
  Tables s(250, 5000, 100);
  const Quotes q = both(*s.table, s.reply, CardType::kStudent, true);
  EXPECT_EQ(q.backend, 25);
  EXPECT_EQ(q.terminal, 25);
}

TEST(FareAgreement, HalfAFenOfDiscountRoundsInTheRidersFavourOnBothSides) {
  // 251 fen half: 125.5 fen off rounds up to 126 -> 125; then 30 off for the transfer -> 95.
  Tables s(251, 5000, 30);
  const Quotes q = both(*s.table, s.reply, CardType::kStudent, true);
  EXPECT_EQ(q.backend, 95);
  EXPECT_EQ(q.terminal, 95);
}

TEST(FareAgreement, EveryFareDiscountAndTransferAgrees) {
  int checked = 0;
  for (std::int64_t fen : {0, 1, 3, 99, 199, 200, 251, 333, 1001}) {
    for (std::uint32_t bp : {0u, 1u, 1666u, 3333u, 5000u, 7500u, 9999u, 10'000u}) {
      for (std::int64_t transfer_fen : {0, 1, 50, 100, 2000}) {
        Tables s(fen, bp, transfer_fen);
        for (CardType type : {CardType::kAdult, CardType::kStudent}) {
          for (bool transfer : {false, true}) {
            const Quotes q = both(*s.table, s.reply, type, transfer);
            ASSERT_EQ(q.backend, q.terminal)
                << fen << " fen, " << bp << " bp, transfer " << transfer_fen << " fen";
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, 9 * 8 * 5 * 2 * 2);
}

}  // namespace
}  // namespace citycard
