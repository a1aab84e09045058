// The terminal side of a PSAM: the APDU sequences a terminal sends to its SAM slot, turned into
// typed calls. It keeps no state of its own, so a SAM swapped in the slot needs only open()
// again. Does not own the link, which must outlive the client. Single-threaded.
//
// Errors: a SAM status word other than 9000 comes back as a Status whose message names the
// command and the word; 9302 (MAC invalid) as Errc::kBadMac, any other word as
// Errc::kRejected. A link failure comes back as the link's Status.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "citycard/devices/card_link.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/status.h"

namespace citycard::devices {

// What the PSAM needs from a card to compute MAC1 (the 8070 input).
struct Mac1Input {
  protocol::Random4 card_random{};
  std::uint16_t offline_counter = 0;
  std::uint32_t amount_fen = 0;
  std::uint8_t type = protocol::txn::kPurchase;
  protocol::DateTime7 datetime{};
  std::uint8_t key_version = 0;
  std::uint8_t algorithm_id = 0;
  protocol::Serial8 card_serial{};
  std::array<std::uint8_t, 8> diversification_data{};
};

struct Mac1Output {
  std::uint32_t terminal_seq = 0;
  protocol::Mac4 mac1{};
};

class SamClient {
 public:
  // The longest block sent in one 80FA: a multiple of the 8-byte MAC block under the 255-byte
  // Lc limit, so a SAM that chains the CBC block by block never holds a partial block.
  static constexpr std::size_t kMacBlockBytesMax = 248;

  explicit SamClient(CardLink& sam) : sam_(sam) {}

  // Power-on sign-in: READ BINARY of the terminal id, then SELECT of the purchase DF (8011).
  Result<protocol::TerminalId> open();
  // SELECT of the application DF serving a card family (protocol::psam_df_for).
  Status select_application(protocol::Family family);
  Result<Mac1Output> mac1_for_purchase(const Mac1Input& input);
  Status verify_mac2(const protocol::Mac4& mac2);
  // The batch-key MAC over `data` (80FA), chained in blocks when it does not fit one APDU.
  Result<protocol::Mac4> general_mac(ByteView data);
  // 801A: diversify the key of `usage` and `key_version` by the card serial (group data
  // carried, unused by our one-level hierarchy), for the 80FA that follows.
  Status init_diversification(std::uint8_t usage, std::uint8_t key_version,
                              const protocol::Serial8& serial,
                              const std::array<std::uint8_t, 8>& group_data = {});
  // 80FA 05 00 after 801A: the MAC under the diversified key of `iv` (8 or 16 bytes) followed
  // by `message`, in one block.
  Result<protocol::Mac4> diversified_mac(ByteView iv, ByteView message);
  // Simulated time spent talking to the SAM so far (the link's).
  std::int64_t elapsed_us() const { return sam_.elapsed_us(); }

 private:
  Result<protocol::Response> exchange(const protocol::Command& command, std::size_t data_bytes);

  CardLink& sam_;
};

}  // namespace citycard::devices
