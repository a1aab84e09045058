#include "citycard/devices/home_reader.h"

namespace citycard::devices {

namespace {

OnlineLoadOptions client_options(const HomeReaderOptions& o) {
  OnlineLoadOptions c;
  c.terminal_id = o.terminal_id;
  c.pump = [] {};  // the channel answers inside request()
  c.pump_rounds_max = 1;
  return c;
}

RechargePointOptions bank_options() {
  RechargePointOptions r;
  r.channel = citycard::wire::CHANNEL_BANK;
  r.wait_paid_rounds_max = 10'000;  // re-asks the order while the bank has not answered
  return r;
}

}  // namespace

HomeReader::HomeReader(HomeReaderOptions options, zmq::context_t& ctx)
    : options_(std::move(options)),
      channel_(ctx, options_.endpoint, options_.zmq, options_.timeout_ms),
      client_(client_options(options_), channel_),
      point_(bank_options(), client_, options_.terminal_id) {}

OnlineLoad HomeReader::recharge(CardLink& card, const protocol::Serial8& serial,
                                const std::string& order_id, std::uint32_t amount_fen,
                                const protocol::DateTime7& datetime) {
  return point_.recharge(card, serial, order_id, amount_fen, datetime);
}

std::vector<OnlineLoad> HomeReader::complete_pending(CardLink& card,
                                                     const protocol::Serial8& serial,
                                                     const protocol::DateTime7& datetime) {
  return point_.complete_pending(card, serial, datetime);
}

}  // namespace citycard::devices
