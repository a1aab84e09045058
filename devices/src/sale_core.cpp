#include "citycard/devices/sale_core.h"

#include <cassert>
#include <utility>

#include "citycard/protocol/apdu.h"

namespace citycard::devices {

using protocol::Command;
using protocol::Response;

const char* local_refusal_name(LocalRefusal r) {
  switch (r) {
    case LocalRefusal::kNoDriver:
      return "no_driver";
    case LocalRefusal::kDoubleTap:
      return "double_tap";
    case LocalRefusal::kTimeBudget:
      return "time_budget";
    case LocalRefusal::kBalanceTooLow:
      return "balance_too_low";
    case LocalRefusal::kWrongPin:
      return "wrong_pin";
    case LocalRefusal::kNotAuthorised:
      return "not_authorised";
  }
  return "?";
}

SaleCore::SaleCore(SaleCoreOptions options, Psam& psam, const sim::Clock& base_clock,
                   sim::Channel& channel, LogStorage& storage)
    : options_(std::move(options)),
      clock_(base_clock, options_.clock_drift_ppm),
      psam_link_(psam),
      sam_(psam_link_),
      engine_(sam_, options_.purchase),
      queue_(options_.queue, storage, sam_, channel),
      guard_(options_.double_tap_window_us) {
  (void)engine_.open();  // a failure is retried by the first sale, which reports it
}

std::int64_t SaleCore::now_epoch2000_s() const {
  return options_.calendar_origin_epoch2000_s + clock_.now_us() / 1'000'000;
}

protocol::DateTime7 SaleCore::now_datetime() const {
  return protocol::datetime_from_epoch2000(now_epoch2000_s());
}

SaleResult SaleCore::refuse(SaleResult r) {
  if (r.refusal) ++counters_.refusals[static_cast<std::size_t>(*r.refusal)];
  if (r.local) ++counters_.local_refusals[static_cast<std::size_t>(*r.local)];
  return r;
}

SaleResult SaleCore::refuse_local(LocalRefusal why, std::string detail) {
  SaleResult r;
  r.local = why;
  r.detail = std::move(detail);
  return refuse(std::move(r));
}

namespace {

// A card status word or a link failure, as the engine reports them.
void card_failure(const char* step, const Result<Response>& r, SaleResult* out) {
  if (!r) {
    out->refusal = Refusal::kTorn;
    out->detail = std::string(step) + ": " + r.status().message();
  } else {
    out->refusal = Refusal::kCardError;
    out->sw = r->sw;
    out->detail = std::string(step) + " answered an error";
  }
}

}  // namespace

Result<CardFacts> SaleCore::read_facts(CardLink& card, std::optional<std::uint8_t> metro_record_id,
                                       SaleResult* refusal) {
  ++counters_.taps;
  const PurchaseOptions& po = options_.purchase;
  PurchaseResult id_refusal;
  Result<CardIdentity> id = identify_card(card, po.accept_jtt978, po.accept_cjt166,
                                          po.cjt166_city_code_offset, &id_refusal);
  auto fail = [&](const std::string& why) { return Result<CardFacts>(Errc::kRejected, why); };
  if (!id) {
    refusal->refusal = id_refusal.refusal;
    refusal->sw = id_refusal.sw;
    refusal->detail = id_refusal.detail;
    return fail(refusal->detail);
  }
  CardFacts facts;
  facts.id = *id;

  // File 0x16: card type (1) | staff flag (1) ... (cpu_card.h, our reading of the holder file).
  Result<Response> holder = card.transceive(
      Command{0x00, 0xB0, 0x80 | protocol::sfi::kHolder, 0x00, {}, std::uint16_t{2}});
  if (!holder || !holder->ok() || holder->data.size() < 2) {
    card_failure("READ BINARY 0x16", holder, refusal);
    return fail(refusal->detail);
  }
  facts.card_type = static_cast<protocol::CardType>(holder->data[0] & 0x03);
  facts.staff = holder->data[1] == 0x01;

  Result<Response> balance = card.transceive(Command{0x80, 0x5C, 0x00, 0x02, {}, std::uint16_t{4}});
  if (!balance || !balance->ok() || balance->data.size() != 4) {
    card_failure("GET BALANCE", balance, refusal);
    return fail(refusal->detail);
  }
  facts.balance_fen = get_u32be(balance->data, 0);

  // The newest travel record; a card that has none answers 6A83, which is not a refusal.
  Result<Response> travel =
      card.transceive(Command{0x00,
                              0xB2,
                              0x01,
                              static_cast<std::uint8_t>(protocol::sfi::kTravel << 3 | 0x04),
                              {},
                              std::uint16_t{protocol::TravelRecord::kSize}});
  if (!travel) {
    card_failure("READ RECORD 0x1E", travel, refusal);
    return fail(refusal->detail);
  }
  if (travel->ok()) facts.last_travel = protocol::TravelRecord::decode(travel->data);

  if (metro_record_id) {
    Result<Response> metro =
        card.transceive(Command{0x00,
                                0xB2,
                                *metro_record_id,
                                static_cast<std::uint8_t>(protocol::sfi::kMetro << 3 | 0x04),
                                {},
                                std::uint16_t{protocol::MetroRecord::kSize}});
    if (!metro || !metro->ok()) {
      card_failure("READ RECORD 0x1A", metro, refusal);
      return fail(refusal->detail);
    }
    facts.metro = protocol::MetroRecord::decode(metro->data);
  }
  return facts;
}

bool SaleCore::double_tap(const protocol::Serial8& serial) {
  return guard_.refuses(serial, clock_.now_us());
}

SaleResult SaleCore::sell(BudgetLink& card, const PurchaseRequest& request, const Fare& fare,
                          const citycard::wire::SwipeRecord& tmpl) {
  SaleResult result;
  result.fare = fare;
  if (queue_.full()) {
    result.refusal = Refusal::kQueueFull;
    result.detail = "upload queue full; no sale until an upload frees room";
    return refuse(std::move(result));
  }
  PurchaseResult p = engine_.purchase(card, request);
  result.duration_us = p.duration_us;
  if (!p.ok()) {
    if (card.exceeded()) {
      result.local = LocalRefusal::kTimeBudget;
      result.detail = "aborted: " + p.detail;
    } else {
      result.refusal = p.refusal;
      result.sw = p.sw;
      result.detail = std::move(p.detail);
    }
    return refuse(std::move(result));
  }
  result.recovered = p.recovered;
  citycard::wire::SwipeRecord rec = swipe_record(p.purchase, tmpl);
  rec.set_device(options_.device_id);
  rec.set_operator_id(options_.operator_id);
  rec.set_fare_full_fen(fare.full_fen);
  if (fare.transfer) rec.set_transfer_count(1);
  if (Status s = queue_.push(rec); !s) {
    // The card has paid: the sale stands, but its record could not be made durable. Counted
    // as a queue refusal so an operator sees it; the engine's TAC is in the detail.
    result.refusal = Refusal::kQueueFull;
    result.detail = "sale made but record not stored: " + s.message();
    return refuse(std::move(result));
  }
  guard_.sold(p.purchase.card_serial, clock_.now_us());
  result.record = std::move(rec);
  ++counters_.sales;
  if (result.recovered) ++counters_.recovered;
  return result;
}

}  // namespace citycard::devices
