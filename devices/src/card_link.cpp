#include "citycard/devices/card_link.h"

#include "citycard/protocol/check.h"

namespace citycard::devices {

using protocol::Command;
using protocol::Response;

CardLink::~CardLink() = default;

std::int64_t DirectLink::duration_us(const CardTiming& t, std::size_t capdu_bytes,
                                     std::size_t data_in_bytes, std::size_t rapdu_bytes) {
  if (!t.known) return 0;
  std::int64_t us = 0;
  switch (t.link.interface) {
    case LinkTiming::Interface::kIsoDep:
      if (!activated_) us += timing::activation_us(t.link.picc, reader_, /*iso_dep=*/true);
      us += timing::iso_dep_exchange_us(t.link.picc, reader_, capdu_bytes, rapdu_bytes,
                                        t.processing_us);
      break;
    case LinkTiming::Interface::kContact:
      // The SAM was activated (ATR, PPS) when the terminal powered up, not per transaction.
      // T=0 moves the command's data and the response's data; Le travels in the header.
      us += timing::t0_exchange_us(t.link.contact, data_in_bytes,
                                   rapdu_bytes > 2 ? rapdu_bytes - 2 : 0, t.processing_us);
      break;
    case LinkTiming::Interface::kMifare:
    case LinkTiming::Interface::kNone:
      break;
  }
  activated_ = true;
  return us;
}

Result<Response> DirectLink::transceive(const Command& command) {
  const Bytes capdu = command.encode();
  const Bytes rapdu = process_(card_, capdu);
  const CardTiming t = timing_(card_);
  // A card that went silent still cost the time of the command and the reader's wait.
  last_exchange_us_ = duration_us(t, capdu.size(), command.data.size(), rapdu.size());
  elapsed_us_ += last_exchange_us_;
  if (rapdu.empty()) {
    return Result<Response>(Errc::kTorn, "card went silent at " + command.to_string());
  }
  Result<Response> response = Response::parse(rapdu);
  if (!response) return response;
  ++exchanges_;
  if (trace_) trace_(command, *response, last_exchange_us_);
  return response;
}

Result<Response> TearingLink::transceive(const Command& command) {
  const std::uint64_t index = exchanges_++;
  if (!torn_ && tear_ && tear_->exchange == index) {
    torn_ = true;
    if (tear_->when == When::kAfterCommand) {
      // The card acts on the command; only its answer is lost on the way back.
      (void)inner_.transceive(command);
    } else if (tear_->when == When::kDuringCommand) {
      // Power fails inside the command; a card that cannot model that finishes it.
      (void)inner_.arm_power_cut(tear_->page_writes);
      (void)inner_.transceive(command);
    }
  }
  if (torn_) {
    return Result<Response>(Errc::kTorn, "card left the field at " + command.to_string());
  }
  return inner_.transceive(command);
}

RandomTearingLink::RandomTearingLink(CardLink& inner, TearingOptions options, sim::Rng rng)
    : inner_(inner), options_(options), rng_(rng) {
  CITYCARD_CHECK(options.tear_probability >= 0 && options.tear_probability <= 1,
                 "tear_probability is a probability");
  CITYCARD_CHECK(
      options.tear_after_command_probability >= 0 && options.tear_during_command_probability >= 0 &&
          options.tear_after_command_probability + options.tear_during_command_probability <= 1,
      "tear kinds are probabilities that sum to at most 1");
}

Result<Response> RandomTearingLink::transceive(const Command& command) {
  if (!torn_ && rng_.bernoulli(options_.tear_probability)) {
    torn_ = true;
    const double u = rng_.uniform01();
    if (u < options_.tear_after_command_probability) {
      kind_ = TearingLink::When::kAfterCommand;
      (void)inner_.transceive(command);
    } else if (u <
               options_.tear_after_command_probability + options_.tear_during_command_probability) {
      kind_ = TearingLink::When::kDuringCommand;
      (void)inner_.arm_power_cut(static_cast<std::uint32_t>(rng_.uniform(8)));
      (void)inner_.transceive(command);
    } else {
      kind_ = TearingLink::When::kBeforeCommand;
    }
  }
  if (torn_) {
    return Result<Response>(Errc::kTorn, "card left the field at " + command.to_string());
  }
  return inner_.transceive(command);
}

}  // namespace citycard::devices
