// The packed record files against the straightforward encoding: plain byte rings, newest
// first, as a real card's EEPROM holds them. Random histories (seeded), with the log wrapping
// many times, and with records the packing cannot represent (invalid dates, fields the card
// would not write, arbitrary bytes) mixed in.
#include "citycard/devices/packed_files.h"

#include <gtest/gtest.h>

#include <array>
#include <deque>
#include <map>
#include <thread>
#include <vector>

#include "citycard/devices/card_keys.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/load.h"
#include "citycard/devices/psam.h"
#include "citycard/devices/purchase.h"
#include "citycard/devices/sam_client.h"
#include "citycard/protocol/capp.h"
#include "citycard/sim/rng.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

using Log = std::array<std::uint8_t, PackedCardFiles::kLogBytes>;
using Travel = std::array<std::uint8_t, PackedCardFiles::kTravelBytes>;
using Metro = std::array<std::uint8_t, PackedCardFiles::kMetroBytes>;

protocol::DateTime7 random_datetime(sim::Rng& rng) {
  // 2020..2029 (within the test cards' validity), any second.
  return protocol::datetime_from_epoch2000(rng.uniform_range(631'152'000, 940'000'000));
}

// A date-time as a terminal might send it: valid mostly, sometimes zeros or not BCD.
protocol::DateTime7 any_datetime(sim::Rng& rng) {
  protocol::DateTime7 dt = random_datetime(rng);
  if (rng.bernoulli(0.05)) dt.fill(0);
  if (rng.bernoulli(0.05)) dt[rng.uniform(7)] = static_cast<std::uint8_t>(rng.uniform(256));
  if (rng.bernoulli(0.03)) dt = {0x20, 0x24, 0x02, 0x30, 0x10, 0x00, 0x00};  // 30 February
  return dt;
}

std::uint32_t any_amount(sim::Rng& rng) {
  if (rng.bernoulli(0.05)) return static_cast<std::uint32_t>(rng.next_u64());
  return static_cast<std::uint32_t>(rng.uniform(10'000));
}

template <std::size_t N>
void scribble(sim::Rng& rng, std::array<std::uint8_t, N>& bytes) {
  bytes[rng.uniform(N)] = static_cast<std::uint8_t>(rng.uniform(256));
}

struct Model {
  std::deque<Log> log;
  std::deque<Travel> travel;
  std::map<std::uint8_t, Metro> metro;
};

void expect_same(const PackedCardFiles& files, const PackedCardFiles::Context& c, const Model& m,
                 const std::string& where) {
  ASSERT_EQ(files.log_count(c), m.log.size()) << where;
  ASSERT_EQ(files.travel_count(c), m.travel.size()) << where;
  Log l{};
  for (std::size_t i = 0; i < m.log.size(); ++i) {
    ASSERT_TRUE(files.read_log(c, i, l.data())) << where;
    ASSERT_EQ(l, m.log[i]) << where << " log record " << i + 1;
  }
  EXPECT_FALSE(files.read_log(c, m.log.size(), l.data())) << where;
  Travel t{};
  for (std::size_t i = 0; i < m.travel.size(); ++i) {
    ASSERT_TRUE(files.read_travel(c, i, t.data())) << where;
    ASSERT_EQ(t, m.travel[i]) << where << " travel record " << i + 1;
  }
  EXPECT_FALSE(files.read_travel(c, m.travel.size(), t.data())) << where;
  for (std::uint8_t id = 1; id <= 4; ++id) {
    Metro got{};
    files.read_metro(id, got.data());
    const auto it = m.metro.find(id);
    ASSERT_EQ(got, it == m.metro.end() ? Metro{} : it->second) << where << " metro " << int{id};
  }
}

struct Sizes {
  std::uint8_t log;
  std::uint8_t travel;
};

class PackedFilesHistory : public ::testing::TestWithParam<Sizes> {};

TEST_P(PackedFilesHistory, ReadsEqualPlainRingsOverRandomHistories) {
  const Sizes sizes = GetParam();
  for (std::uint64_t seed = 1; seed <= 12; ++seed) {
    sim::Rng rng(seed * 7919 + sizes.log);
    PackedCardFiles files;
    Model m;
    PackedCardFiles::Context c;
    c.log_records = sizes.log;
    c.travel_records = sizes.travel;
    c.offline_counter = static_cast<std::uint16_t>(rng.uniform(60'000));
    c.online_counter = static_cast<std::uint16_t>(rng.uniform(60'000));
    c.overdraft_limit_fen = rng.bernoulli(0.5) ? 0 : static_cast<std::uint32_t>(rng.uniform(5000));
    std::vector<protocol::TerminalId> terminals(20);
    for (auto& t : terminals) {
      for (auto& b : t) b = static_cast<std::uint8_t>(rng.uniform(256));
    }
    const int txns = 120;  // the log wraps many times
    for (int n = 0; n < txns; ++n) {
      const bool online = rng.bernoulli(0.2);
      const bool composite = !online && rng.bernoulli(0.6);
      const std::uint16_t counter = online ? c.online_counter : c.offline_counter;
      protocol::LogRecord r;
      r.counter = counter;
      r.overdraft_fen = c.overdraft_limit_fen;
      r.amount_fen = any_amount(rng);
      r.type = online      ? protocol::txn::kLoadEp
               : composite ? protocol::txn::kCappPurchase
                           : protocol::txn::kPurchase;
      r.terminal = rng.bernoulli(0.1) ? terminals[0] : terminals[rng.uniform(terminals.size())];
      r.datetime = any_datetime(rng);
      Log log{};
      const Bytes enc = r.encode();
      std::copy(enc.begin(), enc.end(), log.begin());
      if (rng.bernoulli(0.05)) scribble(rng, log);  // anything at all

      PackedCardFiles::Txn txn;
      txn.log = log.data();
      txn.online = online;
      Travel travel{};
      Metro metro{};
      if (composite && rng.bernoulli(0.8)) {
        protocol::TravelRecord t;
        std::copy(r.terminal.begin(), r.terminal.end(), t.terminal.begin() + 2);
        t.sub_type = static_cast<std::uint8_t>(rng.uniform(3));
        t.station[0] = static_cast<std::uint8_t>(rng.uniform(4));
        t.station[2] = static_cast<std::uint8_t>(rng.uniform(30));
        t.amount_fen = rng.bernoulli(0.8) ? r.amount_fen : any_amount(rng);
        t.balance_after_fen = rng.bernoulli(0.9) ? static_cast<std::uint32_t>(rng.uniform(100'000))
                                                 : static_cast<std::uint32_t>(rng.next_u64());
        t.datetime = rng.bernoulli(0.8) ? r.datetime : any_datetime(rng);
        t.city = {0x31, 0x00};
        const Bytes te = t.encode();
        std::copy(te.begin(), te.end(), travel.begin());
        if (rng.bernoulli(0.05)) scribble(rng, travel);
        txn.travel = travel.data();
      }
      if (composite && rng.bernoulli(0.3)) {
        protocol::MetroRecord mr;
        mr.state = static_cast<std::uint8_t>(1 + rng.uniform(2));
        mr.line = static_cast<std::uint8_t>(rng.uniform(3));
        mr.entry_station = static_cast<std::uint16_t>(rng.uniform(20));
        mr.entry_device = {0, 1, 2, static_cast<std::uint8_t>(rng.uniform(4))};
        mr.entry_datetime = any_datetime(rng);
        if (mr.state == protocol::MetroRecord::kExited) {
          mr.exit_station = static_cast<std::uint16_t>(rng.uniform(20));
          mr.exit_datetime = any_datetime(rng);
          mr.fare_fen = any_amount(rng);
        }
        const Bytes me = mr.encode();
        std::copy(me.begin(), me.end(), metro.begin());
        if (rng.bernoulli(0.05)) scribble(rng, metro);
        txn.metro_id = static_cast<std::uint8_t>(1 + rng.uniform(3));
        txn.metro = metro.data();
      }
      (online ? c.online_counter : c.offline_counter)++;
      files.push(c, txn);

      m.log.push_front(log);
      if (m.log.size() > sizes.log) m.log.pop_back();
      if (txn.travel != nullptr) {
        m.travel.push_front(travel);
        if (m.travel.size() > sizes.travel) m.travel.pop_back();
      }
      if (txn.metro_id != 0) m.metro[txn.metro_id] = metro;
      expect_same(files, c, m,
                  "seed " + std::to_string(seed) + " after transaction " + std::to_string(n));
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, PackedFilesHistory,
                         ::testing::Values(Sizes{10, 10}, Sizes{3, 7}, Sizes{1, 1}, Sizes{12, 2}));

TEST(PackedFiles, ARecordTheCardWouldWriteIsSmallerPackedThanRaw) {
  PackedCardFiles files;
  PackedCardFiles::Context c;
  c.offline_counter = 1;
  protocol::LogRecord r{
      0, 0, 200, protocol::txn::kPurchase, testing::kTerminal, array_from_hex<7>("20240315081530")};
  const Bytes log = r.encode();
  files.push(c, PackedCardFiles::Txn{log.data(), false, nullptr, 0, nullptr});
  EXPECT_LT(files.heap_bytes(), 16u);
  // The same record with a date that is not a calendar date is kept verbatim, and read back.
  PackedCardFiles raw;
  r.datetime = array_from_hex<7>("20241315081530");
  const Bytes bad = r.encode();
  raw.push(c, PackedCardFiles::Txn{bad.data(), false, nullptr, 0, nullptr});
  EXPECT_GT(raw.heap_bytes(), 23u);
  std::array<std::uint8_t, 23> out{};
  ASSERT_TRUE(raw.read_log(c, 0, out.data()));
  EXPECT_EQ(Bytes(out.begin(), out.end()), bad);
}

TEST(PackedFiles, DateTimesPackOnlyWhenTheyConvertBackExactly) {
  std::uint32_t p = 0;
  const auto dt = array_from_hex<7>("20240229235959");
  ASSERT_TRUE(pack_datetime(dt.data(), &p));
  std::array<std::uint8_t, 7> back{};
  unpack_datetime(p, back.data());
  EXPECT_EQ(back, dt);
  EXPECT_FALSE(pack_datetime(array_from_hex<7>("20230229120000").data(), &p)) << "no 29 Feb";
  EXPECT_FALSE(pack_datetime(array_from_hex<7>("2024031508153A").data(), &p)) << "not BCD";
  EXPECT_FALSE(pack_datetime(array_from_hex<7>("19991231235959").data(), &p)) << "before 2000";
  ASSERT_TRUE(pack_datetime(array_from_hex<7>("00000000000000").data(), &p));
  EXPECT_EQ(p, kZeroDateTime);
}

TEST(InternTable, GivesOneIdPerStringFromAnyThread) {
  InternTable table;
  const Bytes a = from_hex("000102030405"), b = from_hex("000102030406");
  const std::uint32_t ia = table.intern(a);
  EXPECT_EQ(table.intern(b), ia + 1);
  EXPECT_EQ(table.intern(a), ia);
  EXPECT_EQ(Bytes(table.get(ia).begin(), table.get(ia).end()), a);
  std::vector<std::uint32_t> ids(4);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < ids.size(); ++t) {
    threads.emplace_back([&, t] {
      for (std::uint32_t i = 0; i < 5000; ++i) {
        const Bytes key{static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i), 7};
        const std::uint32_t id = table.intern(key);
        const ByteView back = table.get(id);
        if (Bytes(back.begin(), back.end()) != key) ids[t] = 1;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ids, std::vector<std::uint32_t>(4, 0)) << "every id reads back its own bytes";
  EXPECT_EQ(table.size(), 2u + 5000u);
}

// The card itself: every READ RECORD answer after random purchases (simple and composite,
// with travel and metro records) and loads equals the straightforward encoding of what the
// terminals sent; past the last record 6A83.
TEST(PackedCpuCard, ReadRecordAnswersEqualTheWrittenRecordsOverRandomHistories) {
  const IssuerKeyTable table({testing::issuer_keys()});
  Psam psam(testing::psam_image());
  DirectLink sam_link(psam);
  SamClient sam(sam_link);
  PurchaseEngine purchases(sam);
  ASSERT_TRUE(purchases.open().ok());
  KeyedLoadHost host(table);
  LoadEngine loads(testing::kTerminal, host);
  const Bytes select = [] {
    Bytes s = from_hex("00A40400");
    const Bytes& aid = protocol::aid_for(protocol::Family::kJtt978);
    s.push_back(static_cast<std::uint8_t>(aid.size()));
    s.insert(s.end(), aid.begin(), aid.end());
    return s;
  }();
  for (std::uint64_t seed = 1; seed <= 4; ++seed) {
    sim::Rng rng(seed);
    protocol::CardImage image = testing::card_image(900 + seed, 50'000);
    image.overdraft_limit_fen = seed % 2 == 0 ? 1000 : 0;
    CpuCard card(image, table, sim::Rng(seed), CardProfile::jtt978());
    Model m;
    for (int n = 0; n < 30; ++n) {
      const protocol::DateTime7 when = random_datetime(rng);
      if (rng.bernoulli(0.15)) {
        DirectLink link(card);
        const std::uint32_t amount = static_cast<std::uint32_t>(100 + rng.uniform(2000));
        const LoadResult r = loads.load(link, LoadRequest{amount, when, std::nullopt});
        ASSERT_TRUE(r.ok()) << r.detail;
        m.log.push_front({});
        const Bytes e =
            protocol::LogRecord{r.load.online_counter,  image.overdraft_limit_fen, amount,
                                protocol::txn::kLoadEp, testing::kTerminal,        when}
                .encode();
        std::copy(e.begin(), e.end(), m.log.front().begin());
      } else {
        PurchaseRequest req{static_cast<std::uint32_t>(rng.uniform(500)), when, {}};
        Travel travel{};
        Metro metro{};
        const bool composite = rng.bernoulli(0.7);
        if (composite) {
          protocol::MetroRecord mr;
          mr.state = protocol::MetroRecord::kEntered;
          mr.entry_station = static_cast<std::uint16_t>(rng.uniform(40));
          mr.entry_datetime = when;
          const Bytes me = mr.encode();
          std::copy(me.begin(), me.end(), metro.begin());
          if (rng.bernoulli(0.5)) req.capp_updates.push_back({protocol::sfi::kMetro, 0x01, me});
          protocol::TravelRecord t;
          std::copy(testing::kTerminal.begin(), testing::kTerminal.end(), t.terminal.begin() + 2);
          t.station[2] = static_cast<std::uint8_t>(rng.uniform(30));
          t.amount_fen = req.amount_fen;
          t.balance_after_fen = card.balance_fen() - std::min(card.balance_fen(), req.amount_fen);
          t.datetime = when;
          const Bytes te = t.encode();
          std::copy(te.begin(), te.end(), travel.begin());
          req.capp_updates.push_back({protocol::sfi::kTravel, 0x00, te});
        }
        const std::uint16_t counter = card.offline_counter();
        DirectLink link(card);
        const PurchaseResult r = purchases.purchase(link, req);
        ASSERT_TRUE(r.ok()) << r.detail;
        m.log.push_front({});
        const Bytes e =
            protocol::LogRecord{counter,
                                image.overdraft_limit_fen,
                                req.amount_fen,
                                composite ? protocol::txn::kCappPurchase : protocol::txn::kPurchase,
                                testing::kTerminal,
                                when}
                .encode();
        std::copy(e.begin(), e.end(), m.log.front().begin());
        if (composite) {
          m.travel.push_front(travel);
          if (req.capp_updates.size() == 2) m.metro[1] = metro;
        }
      }
      if (m.log.size() > 10) m.log.pop_back();
      if (m.travel.size() > 10) m.travel.pop_back();
      card.reset();
      const Bytes selected = card.process(select);
      ASSERT_GE(selected.size(), 2u);
      ASSERT_EQ(to_hex(ByteView(selected.data() + selected.size() - 2, 2)), "9000");
      auto read = [&](std::uint8_t record, std::uint8_t sfi) {
        return card.process(
            Bytes{0x00, 0xB2, record, static_cast<std::uint8_t>(sfi << 3 | 4), 0x00});
      };
      for (std::size_t i = 0; i < m.log.size(); ++i) {
        Bytes want(m.log[i].begin(), m.log[i].end());
        want.push_back(0x90);
        want.push_back(0x00);
        ASSERT_EQ(to_hex(read(static_cast<std::uint8_t>(i + 1), protocol::sfi::kLog)), to_hex(want))
            << "seed " << seed << " txn " << n << " log record " << i + 1;
      }
      EXPECT_EQ(to_hex(read(static_cast<std::uint8_t>(m.log.size() + 1), protocol::sfi::kLog)),
                "6a83");
      for (std::size_t i = 0; i < m.travel.size(); ++i) {
        Bytes want(m.travel[i].begin(), m.travel[i].end());
        want.push_back(0x90);
        want.push_back(0x00);
        ASSERT_EQ(to_hex(read(static_cast<std::uint8_t>(i + 1), protocol::sfi::kTravel)),
                  to_hex(want))
            << "seed " << seed << " txn " << n << " travel record " << i + 1;
      }
      EXPECT_EQ(
          to_hex(read(static_cast<std::uint8_t>(m.travel.size() + 1), protocol::sfi::kTravel)),
          "6a83");
      Bytes metro_want(m.metro.count(1) ? Bytes(m.metro[1].begin(), m.metro[1].end())
                                        : Bytes(128, 0));
      metro_want.push_back(0x90);
      metro_want.push_back(0x00);
      ASSERT_EQ(to_hex(read(1, protocol::sfi::kMetro)), to_hex(metro_want));
    }
  }
}

// Issue 3's figure as a guard: a card whose 0x18 and 0x1E files are full and whose 0x1A record
// is written, by composite purchases whose records our terminals would write, holds at most
// 256 bytes (fixed part + its heap, with 16 bytes left for malloc's own overhead).
TEST(PackedCpuCard, ACardWithFullRecordFilesStaysWithin256Bytes) {
  const IssuerKeyTable table({testing::issuer_keys()});
  Psam psam(testing::psam_image());
  DirectLink sam_link(psam);
  SamClient sam(sam_link);
  PurchaseEngine engine(sam);
  ASSERT_TRUE(engine.open().ok());
  CpuCard card(testing::card_image(77, 100'000), table, sim::Rng(7), CardProfile::jtt978());
  std::int64_t t = 757'382'400;
  for (int i = 0; i < 12; ++i) {
    t += 3'600 + 977 * i;
    const protocol::DateTime7 when = protocol::datetime_from_epoch2000(t);
    PurchaseRequest req{static_cast<std::uint32_t>(200 + 100 * (i % 3)), when, {}};
    protocol::MetroRecord m;
    m.state = protocol::MetroRecord::kEntered;
    m.entry_station = static_cast<std::uint16_t>(i);
    m.entry_datetime = when;
    req.capp_updates.push_back({protocol::sfi::kMetro, 0x01, m.encode()});
    protocol::TravelRecord travel;
    std::copy(testing::kTerminal.begin(), testing::kTerminal.end(), travel.terminal.begin() + 2);
    travel.sub_type = 0x01;
    travel.station = {0x00, 0x01, 0x02, 0x00, static_cast<std::uint8_t>(i)};
    travel.amount_fen = req.amount_fen;
    travel.balance_after_fen = card.balance_fen() - req.amount_fen;
    travel.datetime = when;
    travel.city = {0x31, 0x00};
    req.capp_updates.push_back({protocol::sfi::kTravel, 0x00, travel.encode()});
    DirectLink link(card);
    ASSERT_TRUE(engine.purchase(link, req).ok());
    card.reset();
  }
  ASSERT_EQ(card.log().size(), 10u);
  ASSERT_EQ(card.travel_records().size(), 10u);
  EXPECT_LE(sizeof(CpuCard) + card.heap_bytes(), 256u - 16u)
      << "fixed " << sizeof(CpuCard) << " B, heap " << card.heap_bytes() << " B";
  EXPECT_GT(card.heap_bytes(), 100u) << "the records are there";
}

}  // namespace
}  // namespace citycard::devices
