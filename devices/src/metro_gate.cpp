#include "citycard/devices/metro_gate.h"

#include <string>
#include <utility>

#include "citycard/devices/bus_terminal.h"

namespace citycard::devices {

MetroGate::MetroGate(MetroGateConfig config, Psam& psam, const sim::Clock& clock,
                     sim::Channel& channel, LogStorage& storage)
    : config_(std::move(config)), core_(config_.core, psam, clock, channel, storage) {
  // append, not "L" + std::string: GCC 12's -Wrestrict misfires on the latter at -O2.
  template_.set_route(std::string("L").append(std::to_string(config_.line)));
  template_.set_vehicle(std::string("S").append(std::to_string(config_.station)));
}

Fare MetroGate::max_fare(protocol::CardType type) const {
  FarePolicy flat = config_.fare;
  flat.base = FarePolicy::Base::kFlat;
  flat.flat_fen = config_.max_fare_fen;
  flat.time_of_day.clear();
  return quote(flat, FareContext{type, 0, 0, std::nullopt});
}

Fare MetroGate::distance_fare(std::uint16_t from, std::uint16_t to, protocol::CardType type) const {
  const auto a = config_.position_m.find(from);
  const auto b = config_.position_m.find(to);
  if (a == config_.position_m.end() || b == config_.position_m.end()) return max_fare(type);
  const std::uint32_t metres =
      a->second > b->second ? a->second - b->second : b->second - a->second;
  return quote(config_.fare, FareContext{type, core_.now_epoch2000_s(), metres, std::nullopt});
}

SaleResult MetroGate::sell(BudgetLink& link, const CardFacts& facts, const Fare& fare,
                           const protocol::MetroRecord& metro, std::uint8_t travel_sub_type) {
  const protocol::DateTime7 now = core_.now_datetime();
  PurchaseRequest request{fare.charged_fen, now, {}};
  request.capp_updates.push_back(
      CappUpdate{protocol::sfi::kMetro, config_.metro_record_id, metro.encode()});
  protocol::TravelRecord travel;
  travel.terminal = travel_terminal(core_.engine().terminal_id());
  travel.sub_type = travel_sub_type;
  travel.station[0] = config_.line;
  travel.station[1] = static_cast<std::uint8_t>(config_.station >> 8);
  travel.station[2] = static_cast<std::uint8_t>(config_.station);
  travel.amount_fen = fare.charged_fen;
  travel.balance_after_fen = facts.balance_fen - std::min(facts.balance_fen, fare.charged_fen);
  travel.datetime = now;
  request.capp_updates.push_back(CappUpdate{protocol::sfi::kTravel, 0x00, travel.encode()});
  return core_.sell(link, request, fare, template_);
}

namespace {

std::array<std::uint8_t, 4> device4(const protocol::TerminalId& t) {
  return {t[2], t[3], t[4], t[5]};
}

}  // namespace

SaleResult MetroGate::enter(CardLink& card) {
  BudgetLink link(card, config_.core.budget);
  SaleResult result;
  Result<CardFacts> facts = core_.read_facts(link, config_.metro_record_id, &result);
  if (!facts) return core_.refuse(std::move(result));
  if (core_.double_tap(facts->id.serial)) {
    return core_.refuse_local(LocalRefusal::kDoubleTap, "same card again within the window");
  }
  Fare fare;  // 0 fen: an entry pays nothing
  std::string note;
  if (facts->metro && facts->metro->state == protocol::MetroRecord::kEntered) {
    fare = max_fare(facts->card_type);  // the open trip, closed at the maximum fare
    note = "open trip closed at the maximum fare";
  }
  if (facts->balance_fen < config_.entry_min_balance_fen + fare.charged_fen) {
    return core_.refuse_local(LocalRefusal::kBalanceTooLow,
                              "balance " + std::to_string(facts->balance_fen) + " fen");
  }
  protocol::MetroRecord metro;
  metro.state = protocol::MetroRecord::kEntered;
  metro.line = config_.line;
  metro.entry_station = config_.station;
  metro.entry_device = device4(core_.engine().terminal_id());
  metro.entry_datetime = core_.now_datetime();
  SaleResult r = sell(link, *facts, fare, metro, 0x01);
  if (r.ok() && !note.empty()) r.detail = note;
  return r;
}

SaleResult MetroGate::exit(CardLink& card) {
  BudgetLink link(card, config_.core.budget);
  SaleResult result;
  Result<CardFacts> facts = core_.read_facts(link, config_.metro_record_id, &result);
  if (!facts) return core_.refuse(std::move(result));
  if (core_.double_tap(facts->id.serial)) {
    return core_.refuse_local(LocalRefusal::kDoubleTap, "same card again within the window");
  }
  Fare fare;
  std::string note;
  protocol::MetroRecord metro = facts->metro.value_or(protocol::MetroRecord{});
  if (metro.state != protocol::MetroRecord::kEntered) {
    fare = max_fare(facts->card_type);
    note = "no entry on the card: maximum fare";
  } else {
    const std::int64_t inside_s =
        core_.now_epoch2000_s() - protocol::epoch2000_from_datetime(metro.entry_datetime);
    if (inside_s > config_.overstay_s) {
      fare = max_fare(facts->card_type);
      note = "overstay: maximum fare";
    } else {
      fare = distance_fare(metro.entry_station, config_.station, facts->card_type);
    }
  }
  metro.state = protocol::MetroRecord::kExited;
  metro.exit_station = config_.station;
  metro.exit_datetime = core_.now_datetime();
  metro.fare_fen = fare.charged_fen;
  SaleResult r = sell(link, *facts, fare, metro, 0x02);
  if (r.ok() && !note.empty()) r.detail = note;
  return r;
}

}  // namespace citycard::devices
