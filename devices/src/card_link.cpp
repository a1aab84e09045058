#include "citycard/devices/card_link.h"

namespace citycard::devices {

using protocol::Command;
using protocol::Response;

CardLink::~CardLink() = default;

Result<Response> DirectLink::transceive(const Command& command) {
  const Bytes rapdu = process_(card_, command.encode());
  Result<Response> response = Response::parse(rapdu);
  if (!response) return response;
  ++exchanges_;
  if (trace_) trace_(command, *response);
  return response;
}

Result<Response> TearingLink::transceive(const Command& command) {
  const std::uint64_t index = exchanges_++;
  if (!torn_ && tear_ && tear_->exchange == index) {
    torn_ = true;
    if (tear_->when == When::kAfterCommand) {
      // The card acts on the command; only its answer is lost on the way back.
      (void)inner_.transceive(command);
    }
  }
  if (torn_) {
    return Result<Response>(Errc::kTorn, "card left the field at " + command.to_string());
  }
  return inner_.transceive(command);
}

}  // namespace citycard::devices
