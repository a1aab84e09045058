#include "citycard/devices/blacklist_lock.h"

#include "citycard/devices/psam.h"
#include "refusals.h"

namespace citycard::devices {

using protocol::Command;
using protocol::Response;

PurchaseResult lock_application(CardLink& card, SamClient& sam, const protocol::Serial8& serial,
                                protocol::crypto::Algorithm algorithm, std::uint8_t key_version,
                                bool permanent) {
  const bool tdes = algorithm == protocol::crypto::Algorithm::kTripleDes;
  const std::uint8_t usage = tdes ? Psam::kUsageMaintenance : Psam::kUsageMaintenanceSm4;
  if (Status s = sam.init_diversification(usage, key_version, serial); !s) {
    return sam_refusal("PSAM 801A", s);
  }
  Result<Response> challenge = card.transceive(Command{0x00, 0x84, 0x00, 0x00, {}, 4});
  if (!challenge || !challenge->ok()) return card_refusal("GET CHALLENGE", challenge);
  if (challenge->data.size() != 4) return wrong_shape("GET CHALLENGE", *challenge, 4);

  const std::uint8_t p2 = permanent ? 0x01 : 0x00;
  Bytes iv(challenge->data.begin(), challenge->data.end());
  iv.resize(tdes ? 8 : 16, 0x00);
  const std::uint8_t header[5] = {0x84, 0x1E, 0x00, p2, 0x04};
  Result<protocol::Mac4> mac = sam.diversified_mac(iv, ByteView(header, 5));
  if (!mac) return sam_refusal("PSAM 80FA", mac.status());

  Result<Response> block =
      card.transceive(Command{0x84, 0x1E, 0x00, p2, Bytes(mac->begin(), mac->end()), std::nullopt});
  if (!block || !block->ok()) return card_refusal("APPLICATION BLOCK", block);
  return PurchaseResult{};
}

}  // namespace citycard::devices
