#include "citycard/devices/bus_terminal.h"

#include <utility>

namespace citycard::devices {

std::array<std::uint8_t, 8> travel_terminal(const protocol::TerminalId& terminal) {
  std::array<std::uint8_t, 8> t{};
  std::copy(terminal.begin(), terminal.end(), t.begin() + 2);
  return t;
}

BusTerminal::BusTerminal(BusTerminalConfig config, Psam& psam, const sim::Clock& clock,
                         sim::Channel& channel, LogStorage& storage)
    : config_(std::move(config)), core_(config_.core, psam, clock, channel, storage) {}

void BusTerminal::assign(std::string route, std::string vehicle,
                         std::array<std::uint8_t, 7> station) {
  template_.set_route(std::move(route));
  template_.set_vehicle(std::move(vehicle));
  station_ = station;
}

Result<CardFacts> BusTerminal::read_driver(CardLink& card) {
  BudgetLink link(card, config_.core.budget);
  SaleResult refusal;
  Result<CardFacts> facts = core_.read_facts(link, std::nullopt, &refusal);
  if (!facts) {
    const Errc code = refusal.refusal == Refusal::kTorn ? Errc::kTorn : Errc::kRejected;
    return Result<CardFacts>(code, "driver card: " + refusal.detail);
  }
  return facts;
}

Status BusTerminal::sign_in(CardLink& driver_card) {
  Result<CardFacts> facts = read_driver(driver_card);
  if (!facts) return facts.status();
  if (!facts->staff) return Status(Errc::kRejected, "not a staff card");
  if (!config_.driver_roster.empty() && !config_.driver_roster.contains(facts->id.serial)) {
    return Status(Errc::kRejected, "driver card not on the roster");
  }
  if (driver_serial_ && *driver_serial_ != facts->id.serial) {
    return Status(Errc::kRejected, "another driver is signed in");
  }
  driver_serial_ = facts->id.serial;
  driver_ = to_hex(facts->id.serial);
  template_.set_driver(*driver_);
  return Status::ok();
}

Status BusTerminal::sign_out(CardLink& driver_card) {
  if (!driver_serial_) return Status(Errc::kRejected, "no driver signed in");
  Result<CardFacts> facts = read_driver(driver_card);
  if (!facts) return facts.status();
  if (facts->id.serial != *driver_serial_) {
    return Status(Errc::kRejected, "only the signed-in driver's card signs out");
  }
  driver_serial_.reset();
  driver_.reset();
  template_.clear_driver();
  return Status::ok();
}

SaleResult BusTerminal::tap(CardLink& card) {
  if (!driver_) return core_.refuse_local(LocalRefusal::kNoDriver, "no driver signed in");
  BudgetLink link(card, config_.core.budget);
  SaleResult result;
  Result<CardFacts> facts = core_.read_facts(link, std::nullopt, &result);
  if (!facts) {
    if (link.exceeded()) {
      result.refusal.reset();
      result.local = LocalRefusal::kTimeBudget;
    }
    return core_.refuse(std::move(result));
  }
  if (core_.double_tap(facts->id.serial)) {
    return core_.refuse_local(LocalRefusal::kDoubleTap, "same card again within the window");
  }

  const std::int64_t now_s = core_.now_epoch2000_s();
  const protocol::TerminalId& terminal = core_.engine().terminal_id();
  FareContext context{facts->card_type, now_s, stops_to_terminus_, std::nullopt};
  if (facts->last_travel && facts->last_travel->terminal != travel_terminal(terminal)) {
    context.last_boarding_epoch2000_s =
        protocol::epoch2000_from_datetime(facts->last_travel->datetime);
  }
  const Fare fare = quote(config_.fare, context);

  PurchaseRequest request{fare.charged_fen, protocol::datetime_from_epoch2000(now_s), {}};
  if (config_.composite) {
    protocol::TravelRecord travel;
    travel.terminal = travel_terminal(terminal);
    travel.sub_type = 0x01;  // boarding
    travel.station = station_;
    travel.amount_fen = fare.charged_fen;
    // The balance the card will hold after this debit (overdraft aside: the record is the
    // operator's, the log file 0x18 is the card's own account).
    travel.balance_after_fen = facts->balance_fen - std::min(facts->balance_fen, fare.charged_fen);
    travel.datetime = request.datetime;
    travel.city = config_.city;
    travel.institution = config_.institution;
    request.capp_updates.push_back(CappUpdate{protocol::sfi::kTravel, 0x00, travel.encode()});
  }
  return core_.sell(link, request, fare, template_);
}

}  // namespace citycard::devices
