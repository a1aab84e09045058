#include "citycard/devices/nfc_phone.h"

#include <algorithm>

#include "citycard/protocol/apdu.h"

namespace citycard::devices {

namespace {

RechargePointOptions phone_options() {
  RechargePointOptions o;
  o.channel = citycard::wire::CHANNEL_PHONE;
  return o;
}

std::string sw_of(const Result<protocol::Response>& r) {
  if (!r) return r.status().to_string();
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04X", r->sw);
  return std::string("SW ") + buf;
}

}  // namespace

NfcPhone::NfcPhone(NfcPhoneOptions options, OnlineLoadClient& client)
    : options_(options), point_(phone_options(), client, options.terminal_id) {}

OnlineLoad NfcPhone::ota_load(CardLink& se, const std::string& order_id, std::uint32_t amount_fen,
                              const protocol::DateTime7& datetime) {
  return point_.recharge(se, options_.card_serial, order_id, amount_fen, datetime);
}

std::vector<OnlineLoad> NfcPhone::complete_pending(CardLink& se,
                                                   const protocol::DateTime7& datetime) {
  return point_.complete_pending(se, options_.card_serial, datetime);
}

Status NfcPhone::select(CardLink& se) const {
  PurchaseResult refusal;
  auto id = identify_card(se, true, true, 2, &refusal);
  if (!id) return Status(Errc::kRejected, refusal.detail);
  if (id->serial != options_.card_serial) {
    return Status(Errc::kRejected, "the secure element holds another card");
  }
  return Status::ok();
}

Result<std::uint32_t> NfcPhone::balance(CardLink& se) const {
  if (Status s = select(se); !s) return s;
  auto r = se.transceive(protocol::Command{0x80, 0x5C, 0x00, 0x02, {}, std::uint16_t{4}});
  if (!r || !r->ok() || r->data.size() != 4) {
    return Status(Errc::kRejected, "GET BALANCE: " + sw_of(r));
  }
  return get_u32be(r->data, 0);
}

Result<std::vector<protocol::LogRecord>> NfcPhone::last_records(CardLink& se, std::size_t n) const {
  if (Status s = select(se); !s) return s;
  std::vector<protocol::LogRecord> out;
  const std::size_t want = std::min(n, options_.records_max);
  for (std::size_t i = 1; i <= want && i <= 0xFE; ++i) {
    auto r =
        se.transceive(protocol::Command{0x00,
                                        0xB2,
                                        static_cast<std::uint8_t>(i),
                                        static_cast<std::uint8_t>(protocol::sfi::kLog << 3 | 0x04),
                                        {},
                                        static_cast<std::uint16_t>(protocol::LogRecord::kSize)});
    if (!r) return Status(Errc::kTorn, "READ RECORD 0x18: " + r.status().to_string());
    if (r->sw == 0x6A83) break;  // no more records
    if (!r->ok()) return Status(Errc::kRejected, "READ RECORD 0x18: " + sw_of(r));
    auto rec = protocol::LogRecord::decode(r->data);
    if (!rec)
      return Status(Errc::kMalformed,
                    "0x18 record of " + std::to_string(r->data.size()) + " bytes");
    out.push_back(*rec);
  }
  return out;
}

}  // namespace citycard::devices
