#include "citycard/devices/m1_link.h"

#include <algorithm>

namespace citycard::devices {

M1Link::~M1Link() = default;

namespace {

namespace m1 = protocol::m1;

// What the PN532 makes of the card's answer (as hil's software PN532 does): 00 and the data
// when the answer is the expected one, 14 for a refused AUTH, 01 for a NAK or no answer.
Bytes reader_answer(ByteView command, const Bytes& card) {
  const std::uint8_t op = command.empty() ? 0 : command[0];
  if (op == m1::cmd::kAuthA || op == m1::cmd::kAuthB) {
    return Bytes{card.empty()          ? m1::status::kMifareError
                 : card[0] == m1::kAck ? m1::status::kOk
                                       : m1::status::kTimeout};
  }
  if (op == m1::cmd::kRead) {
    if (card.size() != m1::kBlockBytes) return Bytes{m1::status::kTimeout};
    Bytes out(1 + card.size());
    out[0] = m1::status::kOk;
    std::copy(card.begin(), card.end(), out.begin() + 1);
    return out;
  }
  return Bytes{card.size() == 1 && card[0] == m1::kAck ? m1::status::kOk : m1::status::kTimeout};
}

}  // namespace

Result<Bytes> DirectM1Link::transceive(ByteView command) {
  const Bytes card_answer = card_.process(command);
  const LinkTiming t = card_.link_timing();
  std::int64_t us = 0;
  if (!activated_) us += timing::activation_us(t.picc, reader_, /*iso_dep=*/false);
  activated_ = true;
  if (!command.empty()) {
    us += timing::mifare_exchange_us(reader_, command[0], card_answer.size(),
                                     card_.last_processing_us(), reader_.mifare_value_wait_us);
  }
  elapsed_us_ += us;
  if (!card_.powered()) return Result<Bytes>(Errc::kTorn, "M1 card lost power");
  Bytes answer = reader_answer(command, card_answer);
  ++exchanges_;
  if (trace_) trace_(command, answer, us);
  return answer;
}

Result<Bytes> TearingM1Link::transceive(ByteView command) {
  const std::uint64_t index = exchanges_++;
  if (!torn_ && tear_ && tear_->exchange == index) {
    torn_ = true;
    if (tear_->when == When::kAfterCommand) {
      (void)inner_.transceive(command);
    } else if (tear_->when == When::kDuringCommand) {
      (void)inner_.arm_power_cut(0);
      (void)inner_.transceive(command);
    }
  }
  if (torn_) return Result<Bytes>(Errc::kTorn, "M1 card left the field");
  return inner_.transceive(command);
}

}  // namespace citycard::devices
