#include "citycard/devices/psam.h"

#include <algorithm>
#include <utility>

namespace citycard::devices {

using protocol::Command;
using protocol::Response;
namespace sw = protocol::sw;
namespace crypto = protocol::crypto;

namespace {

constexpr std::uint8_t kClaIso = 0x00;
constexpr std::uint8_t kClaProprietary = 0x80;
constexpr std::uint8_t kInsSelect = 0xA4;
constexpr std::uint8_t kInsReadBinary = 0xB0;
constexpr std::uint8_t kInsMac1 = 0x70;
constexpr std::uint8_t kInsVerifyMac2 = 0x72;
constexpr std::uint8_t kInsGeneralMac = 0xFA;
constexpr std::size_t kMac1InputBytes = 0x24;
// ISO 7816-4 "wrong parameters P1-P2: offset outside the EF"; protocol::sw lacks it.
constexpr std::uint16_t kSwOffsetOutsideFile = 0x6B00;

Response status(std::uint16_t s) {
  return Response::status(s);
}
Response ok(Bytes data) {
  return Response{std::move(data), sw::kOk};
}

}  // namespace

Psam::Psam(const protocol::PsamImage& image)
    : terminal_id_(image.terminal_id),
      key_version_(image.key_version),
      purchase_master_(image.purchase_master),
      batch_key_(image.batch_key),
      next_sequence_(image.next_sequence) {}

Bytes Psam::process(ByteView capdu) {
  // A chain survives only into the next 80FA (see the header).
  Bytes chain = std::exchange(mac_chain_, Bytes{});
  Result<Command> command = Command::parse(capdu);
  if (!command) return status(sw::kWrongLength).encode();
  return dispatch(*command, std::move(chain)).encode();
}

void Psam::reset() {
  selected_ = false;
  mac2_session_.reset();
  mac_chain_.clear();
}

Response Psam::dispatch(const Command& c, Bytes chain) {
  if (c.cla == kClaIso) {
    switch (c.ins) {
      case kInsSelect:
        return select(c);
      case kInsReadBinary:
        return read_binary(c);
      default:
        return status(sw::kInsNotSupported);
    }
  }
  if (c.cla == kClaProprietary) {
    switch (c.ins) {
      case kInsMac1:
        return mac1_for_purchase(c);
      case kInsVerifyMac2:
        return verify_mac2(c);
      case kInsGeneralMac:
        return general_mac(c, std::move(chain));
      default:
        return status(sw::kInsNotSupported);
    }
  }
  return status(sw::kClaNotSupported);
}

Response Psam::select(const Command& c) {
  if (c.p1 != 0x00 || c.p2 != 0x00) return status(sw::kWrongP1P2);
  if (c.data.size() != 2) return status(sw::kWrongLength);
  if (get_u16be(c.data, 0) != kApplicationFid) return status(sw::kFileNotFound);
  selected_ = true;
  return ok({});
}

Response Psam::read_binary(const Command& c) const {
  if ((c.p1 & 0x80) == 0) return status(sw::kCommandNotAllowed);  // no current EF is kept
  if ((c.p1 & 0x60) != 0) return status(sw::kWrongP1P2);
  if (!c.data.empty()) return status(sw::kWrongLength);
  if ((c.p1 & 0x1F) != kTerminalIdSfi) return status(sw::kFileNotFound);
  if (c.p2 >= terminal_id_.size()) return status(kSwOffsetOutsideFile);
  std::size_t n = terminal_id_.size() - c.p2;
  if (c.le) n = std::min<std::size_t>(n, *c.le);
  const auto begin = terminal_id_.begin() + c.p2;
  return ok(Bytes(begin, begin + static_cast<std::ptrdiff_t>(n)));
}

// Input: card random(4) offline counter(2) amount(4) type(1) date-time(7) key version(1)
// algorithm id(1) card application serial(8) diversification data(8).
Response Psam::mac1_for_purchase(const Command& c) {
  if (c.p1 != 0x00 || c.p2 != 0x00) return status(sw::kWrongP1P2);
  if (c.data.size() != kMac1InputBytes) return status(sw::kWrongLength);
  if (!selected_) return status(sw::kConditionsNotSatisfied);
  const ByteView d = c.data;
  const auto random = take<4>(d, 0);
  const std::uint16_t counter = get_u16be(d, 4);
  const std::uint32_t amount_fen = get_u32be(d, 6);
  const std::uint8_t type = d[10];
  const auto datetime = take<7>(d, 11);
  const std::uint8_t key_version = d[18];
  const std::optional<crypto::Algorithm> alg = crypto::algorithm_from_id(d[19]);
  const auto serial = take<8>(d, 20);
  if (type != protocol::txn::kPurchase && type != protocol::txn::kCappPurchase) {
    return status(sw::kWrongData);
  }
  if (!alg) return status(sw::kWrongData);
  if (key_version != key_version_) return status(sw::kKeyIndexNotSupported);
  // The last sequence number is never handed out, so the counter cannot wrap to a used one.
  if (next_sequence_ == UINT32_MAX) return status(sw::kConditionsNotSatisfied);

  const std::uint32_t terminal_seq = next_sequence_;
  const crypto::Key16 dpk = crypto::diversify(*alg, purchase_master_, serial);
  const crypto::SessionKey sespk =
      crypto::purchase_session_key(*alg, dpk, random, counter, terminal_seq);
  const protocol::Mac4 mac1 =
      crypto::purchase_mac1(sespk, amount_fen, type, terminal_id_, datetime);

  ++next_sequence_;
  mac2_session_ = Mac2Session{sespk, amount_fen};
  Bytes out;
  out.reserve(8);
  put_u32be(out, terminal_seq);
  put_bytes(out, mac1);
  return ok(std::move(out));
}

Response Psam::verify_mac2(const Command& c) {
  if (c.p1 != 0x00 || c.p2 != 0x00) return status(sw::kWrongP1P2);
  if (c.data.size() != 4) return status(sw::kWrongLength);
  if (!selected_ || !mac2_session_) return status(sw::kConditionsNotSatisfied);
  const protocol::Mac4 expected =
      crypto::purchase_mac2(mac2_session_->sespk, mac2_session_->amount_fen);
  if (!crypto::mac_equal(expected, take<4>(c.data, 0))) return status(sw::kMacInvalid);
  mac2_session_.reset();
  return ok({});
}

Response Psam::general_mac(const Command& c, Bytes chain) {
  if ((c.p1 != kMacLastBlock && c.p1 != kMacMoreBlocks) || c.p2 != 0x00) {
    return status(sw::kWrongP1P2);
  }
  if (c.data.empty()) return status(sw::kWrongLength);
  if (!selected_) return status(sw::kConditionsNotSatisfied);
  if (chain.size() + c.data.size() > kMacInputBytesMax) return status(sw::kWrongLength);
  put_bytes(chain, c.data);
  if (c.p1 == kMacMoreBlocks) {
    mac_chain_ = std::move(chain);
    return ok({});
  }
  const protocol::Mac4 mac = crypto::tdes_mac(batch_key_, chain);
  return ok(Bytes(mac.begin(), mac.end()));
}

}  // namespace citycard::devices
