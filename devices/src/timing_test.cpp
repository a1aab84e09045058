#include "citycard/devices/timing.h"

#include <gtest/gtest.h>

#include "citycard/devices/card_profile.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/load.h"
#include "citycard/devices/m1_purse.h"
#include "citycard/devices/psam.h"
#include "citycard/devices/purchase.h"
#include "citycard/protocol/capp.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

const protocol::DateTime7 kWhen = array_from_hex<7>("20240315081530");

// STANDARDS.md, "Timing": Beijing metro 300 ms per transaction, a recharge within 1 s.
constexpr std::int64_t kPurchaseBudgetUs = 300'000;
constexpr std::int64_t kLoadBudgetUs = 1'000'000;

// ---- Frame arithmetic, by hand -------------------------------------------------------------

TEST(Timing, FramesAreNineBitsPerByteAtOneHundredAndSixKilobits) {
  // One byte: SOF + 8 data + parity + EOF = 11 bits of 128/fc = 1408 cycles = 103.8 us.
  EXPECT_EQ(timing::frame_cycles(1), 11 * 128);
  EXPECT_EQ(timing::cycles_to_us(timing::frame_cycles(1)), 104);
  EXPECT_EQ(timing::frame_cycles(16), (2 + 9 * 16) * 128);
  // FWT = 256 * 16 * 2^FWI / fc: FWI 4 -> 4.833 ms, FWI 7 -> 38.664 ms (rounded up).
  EXPECT_EQ(timing::fwt_us(4), 4834);
  EXPECT_EQ(timing::fwt_us(7), 38'665);
}

TEST(Timing, AnIsoDepExchangeIsItsFramesItsDelaysAndTheCardsWork) {
  const Iso14443Picc picc;  // FSC 128, no CID
  const ReaderTiming reader{.fsd_bytes = 256, .turnaround_us = 0, .mifare_value_wait_us = 0};
  // GET BALANCE: 5-byte C-APDU + PCB + CRC = 8 bytes; 6-byte R-APDU + 3 = 9 bytes; the card
  // answers after the minimum frame delay (1172/fc) when it needs no longer.
  const std::int64_t cycles =
      timing::frame_cycles(8) + timing::kFdtMinCycles + timing::frame_cycles(9);
  EXPECT_EQ(timing::iso_dep_exchange_us(picc, reader, 5, 6, 0), timing::cycles_to_us(cycles));
  const std::int64_t busy = timing::iso_dep_exchange_us(picc, reader, 5, 6, 10'000);
  EXPECT_NEAR(busy, timing::cycles_to_us(cycles - timing::kFdtMinCycles) + 10'000, 1);
}

TEST(Timing, LongCommandsChainAndLongProcessingAsksForWaitingTimeExtensions) {
  const ReaderTiming reader;
  Iso14443Picc small;
  small.fsc_bytes = 32;
  Iso14443Picc big;
  big.fsc_bytes = 256;
  // 133 bytes (UPDATE CAPP DATA CACHE of a metro record) need 5 blocks of at most 29 bytes
  // into a card with FSC 32, each but the last acknowledged; each extra block also carries
  // its own PCB, CRC, SOF and EOF (as many bits as a 3-byte frame).
  const std::int64_t chained = timing::iso_dep_exchange_us(small, reader, 133, 2, 0);
  const std::int64_t unchained = timing::iso_dep_exchange_us(big, reader, 133, 2, 0);
  const std::int64_t per_ack =
      timing::cycles_to_us(timing::frame_cycles(3) + timing::kFdtMinCycles) + reader.turnaround_us;
  EXPECT_NEAR(chained - unchained, 4 * (per_ack + timing::cycles_to_us(timing::frame_cycles(3))),
              8);

  Iso14443Picc short_fwt;
  short_fwt.fwi = 4;  // 4.8 ms
  const std::int64_t within = timing::iso_dep_exchange_us(short_fwt, reader, 20, 10, 4'000);
  const std::int64_t beyond = timing::iso_dep_exchange_us(short_fwt, reader, 20, 10, 20'000);
  const std::int64_t wtx_round =
      timing::cycles_to_us(2 * timing::frame_cycles(4) + timing::kFdtMinCycles) +
      reader.turnaround_us;
  // 20 ms at 4.83 ms per FWT: 4 extensions.
  EXPECT_NEAR(beyond - within, 16'000 + 4 * wtx_round, 8);
}

TEST(Timing, ActivationCountsEveryCascadeLevelAndRats) {
  const ReaderTiming reader;
  Iso14443Picc single;
  Iso14443Picc dbl;
  dbl.uid_bytes = 7;
  const std::int64_t a4 = timing::activation_us(single, reader, false);
  const std::int64_t a7 = timing::activation_us(dbl, reader, false);
  const std::int64_t level = timing::cycles_to_us(
      timing::frame_cycles(2) + timing::kFdtShortCycles + timing::frame_cycles(5) +
      timing::frame_cycles(9) + timing::kFdtMinCycles + timing::frame_cycles(3));
  EXPECT_NEAR(a7 - a4, level + 2 * reader.turnaround_us, 2);
  EXPECT_GT(timing::activation_us(single, reader, true), a4) << "RATS/ATS";
  EXPECT_GE(a4, single.startup_us);
}

TEST(Timing, AT0CaseFourCommandPaysForGetResponse) {
  const ContactTiming contact;  // 372 / (4 * 3.5712 MHz): 26.04 us per etu
  const std::int64_t char_ns = 12LL * 372 * 1'000'000'000 / (4LL * 3'571'200);
  EXPECT_EQ(timing::t0_exchange_us(contact, 4, 0, 0),
            (12 * char_ns + 999) / 1000 + contact.turnaround_us)
      << "8072: header, procedure byte, 4 data, SW";
  EXPECT_EQ(timing::t0_exchange_us(contact, 36, 8, 0),
            (60 * char_ns + 999) / 1000 + contact.turnaround_us)
      << "8070: and 61 08, GET RESPONSE, 8 data, SW";
}

// ---- Budgets ---------------------------------------------------------------------------------

struct Bus {
  explicit Bus(const PsamProfile& profile)
      : psam(testing::psam_image(), profile), link(psam), sam(link), engine(sam) {}
  Psam psam;
  DirectLink link;
  SamClient sam;
  PurchaseEngine engine;
};

PurchaseRequest bus_fare() {
  PurchaseRequest r{200, kWhen};
  protocol::TravelRecord t;
  t.amount_fen = 200;
  t.datetime = kWhen;
  r.capp_updates.push_back(CappUpdate{protocol::sfi::kTravel, 0x00, t.encode()});
  return r;
}

std::int64_t bus_purchase_us(const CardProfile& card_profile, const PsamProfile& psam_profile,
                             bool composite) {
  Bus bus(psam_profile);
  EXPECT_TRUE(bus.engine.open().is_ok());  // power-on sign-in is not part of a tap
  CpuCard card(testing::card_image(1, 1000), sim::Rng(1), card_profile);
  DirectLink link(card);
  const PurchaseResult r =
      bus.engine.purchase(link, composite ? bus_fare() : PurchaseRequest{200, kWhen});
  EXPECT_TRUE(r.ok()) << r.detail;
  return r.duration_us;
}

TEST(TimingBudget, ABusPurchaseWithTheDefaultProfileFitsIn300Ms) {
  for (bool composite : {false, true}) {
    const std::int64_t us =
        bus_purchase_us(CardProfile::jtt978(), PsamProfile::standard(), composite);
    EXPECT_LE(us, kPurchaseBudgetUs) << "composite " << composite;
    EXPECT_GT(us, 30'000) << "a purchase is not free: frames, crypto, EEPROM";
  }
}

TEST(TimingBudget, ASlowCardAndPsamBreakThe300MsBudget) {
  const CardProfile& slow = CardProfile::slow(protocol::Family::kJtt978);
  EXPECT_GT(bus_purchase_us(slow, PsamProfile::slow(), true), kPurchaseBudgetUs);
  EXPECT_GT(bus_purchase_us(slow, PsamProfile::standard(), false), kPurchaseBudgetUs)
      << "the slow card alone";
}

std::int64_t load_us(const CardProfile& profile, std::int64_t host_latency_us) {
  IssuerKeyTable table({testing::issuer_keys()});
  KeyedLoadHost host(table, KeyedLoadHost::Options{host_latency_us});
  LoadEngine engine(testing::kTerminal, host);
  CpuCard card(testing::card_image(2, 1000), sim::Rng(1), profile);
  DirectLink link(card);
  const LoadResult r = engine.load(link, LoadRequest{5000, kWhen, std::nullopt});
  EXPECT_TRUE(r.ok()) << r.detail;
  return r.duration_us;
}

TEST(TimingBudget, ALoadWithTheDefaultProfileFitsIn1SAndASlowCardOnASlowLinkDoesNot) {
  const std::int64_t us = load_us(CardProfile::jtt978(), KeyedLoadHost::Options{}.host_latency_us);
  EXPECT_LE(us, kLoadBudgetUs);
  // The host round trip dominates a load: on a poor GPRS link (800 ms) the default card still
  // makes it, the slow one does not.
  EXPECT_LE(load_us(CardProfile::jtt978(), 800'000), kLoadBudgetUs);
  EXPECT_GT(load_us(CardProfile::slow(protocol::Family::kJtt978), 800'000), kLoadBudgetUs);
}

TEST(TimingBudget, AnM1DebitWithItsRecoverableWriteOrderFitsIn300Ms) {
  M1PurseOptions o;
  o.terminal = testing::kTerminal;
  o.m1_master = testing::issuer_keys().m1;
  M1PurseEngine engine(o);
  M1Card card(testing::m1_image(7, 1000));
  DirectM1Link link(card);
  const M1Result r = engine.transact(link, M1Request{200, kWhen});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_LE(r.duration_us, kPurchaseBudgetUs);
  EXPECT_EQ(r.duration_us, link.elapsed_us());
}

}  // namespace
}  // namespace citycard::devices
