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
constexpr std::uint8_t kInsDiversify = 0x1A;
constexpr std::uint8_t kInsGeneralMac = 0xFA;
constexpr std::size_t kMac1InputBytes = 0x24;
constexpr std::size_t kDiversifyInputBytes = 0x10;

}  // namespace

Psam::Psam(const protocol::PsamImage& image, const PsamProfile& profile)
    : profile_(&profile),
      terminal_id_(image.terminal_id),
      key_version_(image.key_version),
      purchase_master_(image.purchase_master),
      purchase_master_3des_(image.purchase_master),
      maintenance_master_(image.maintenance_master),
      batch_key_(image.batch_key),
      next_sequence_(image.next_sequence) {}

Bytes Psam::process(ByteView capdu) {
  // A chain, and a key from 801A, survive only into the next 80FA (see the header).
  Bytes chain = std::exchange(mac_chain_, Bytes{});
  std::optional<DiversifiedKey> key = std::exchange(diversified_, std::nullopt);
  Result<Command> command = Command::parse(capdu);
  if (!command) return refuse(sw::kWrongLength).encode();
  return dispatch(*command, std::move(chain), key).encode();
}

void Psam::reset() {
  selected_ = false;
  mac2_session_.reset();
  diversified_.reset();
  mac_chain_.clear();
}

Response Psam::refuse(std::uint16_t s) {
  last_processing_us_ = profile_->refused_us;
  return Response::status(s);
}

Response Psam::done(Bytes data, std::int64_t processing_us) {
  last_processing_us_ = processing_us;
  return Response{std::move(data), sw::kOk};
}

Response Psam::dispatch(const Command& c, Bytes chain, std::optional<DiversifiedKey> key) {
  if (c.cla == kClaIso) {
    switch (c.ins) {
      case kInsSelect:
        return select(c);
      case kInsReadBinary:
        return read_binary(c);
      default:
        return refuse(sw::kInsNotSupported);
    }
  }
  if (c.cla == kClaProprietary) {
    switch (c.ins) {
      case kInsMac1:
        return mac1_for_purchase(c);
      case kInsVerifyMac2:
        return verify_mac2(c);
      case kInsDiversify:
        return init_diversification(c);
      case kInsGeneralMac:
        return general_mac(c, std::move(chain), key);
      default:
        return refuse(sw::kInsNotSupported);
    }
  }
  return refuse(sw::kClaNotSupported);
}

Response Psam::select(const Command& c) {
  if (c.p1 != 0x00 || c.p2 != 0x00) return refuse(sw::kWrongP1P2);
  if (c.data.size() != 2) return refuse(sw::kWrongLength);
  const std::uint16_t fid = get_u16be(c.data, 0);
  if (fid != kApplicationFid && fid != kCjt166ApplicationFid) return refuse(sw::kFileNotFound);
  selected_ = true;
  return done({}, profile_->select_us);
}

Response Psam::read_binary(const Command& c) {
  if ((c.p1 & 0x80) == 0) return refuse(sw::kCommandNotAllowed);  // no current EF is kept
  if ((c.p1 & 0x60) != 0) return refuse(sw::kWrongP1P2);
  if (!c.data.empty()) return refuse(sw::kWrongLength);
  if ((c.p1 & 0x1F) != kTerminalIdSfi) return refuse(sw::kFileNotFound);
  if (c.p2 >= terminal_id_.size()) return refuse(sw::kWrongOffset);
  std::size_t n = terminal_id_.size() - c.p2;
  if (c.le) n = std::min<std::size_t>(n, *c.le);
  const auto begin = terminal_id_.begin() + c.p2;
  return done(Bytes(begin, begin + static_cast<std::ptrdiff_t>(n)), profile_->read_us);
}

// Input: card random(4) offline counter(2) amount(4) type(1) date-time(7) key version(1)
// algorithm id(1) card application serial(8) diversification data(8).
Response Psam::mac1_for_purchase(const Command& c) {
  if (c.p1 != 0x00 || c.p2 != 0x00) return refuse(sw::kWrongP1P2);
  if (c.data.size() != kMac1InputBytes) return refuse(sw::kWrongLength);
  if (!selected_) return refuse(sw::kConditionsNotSatisfied);
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
    return refuse(sw::kWrongData);
  }
  if (!alg) return refuse(sw::kWrongData);
  if (key_version != key_version_) return refuse(sw::kKeyIndexNotSupported);
  // The last sequence number is never handed out, so the counter cannot wrap to a used one.
  if (next_sequence_ == UINT32_MAX) return refuse(sw::kConditionsNotSatisfied);

  const std::uint32_t terminal_seq = next_sequence_;
  const crypto::Key16 dpk = *alg == crypto::Algorithm::kTripleDes
                                ? crypto::diversify(purchase_master_3des_, serial)
                                : crypto::diversify(*alg, purchase_master_, serial);
  const crypto::MacKey sespk(
      crypto::purchase_session_key(*alg, dpk, random, counter, terminal_seq));
  const protocol::Mac4 mac1 =
      crypto::purchase_mac1(sespk, amount_fen, type, terminal_id_, datetime);

  ++next_sequence_;
  mac2_session_ = Mac2Session{crypto::purchase_mac2(sespk, amount_fen)};
  Bytes out;
  out.reserve(8);
  put_u32be(out, terminal_seq);
  put_bytes(out, mac1);
  return done(std::move(out), profile_->mac1_us + profile_->eeprom_write_us);
}

Response Psam::verify_mac2(const Command& c) {
  if (c.p1 != 0x00 || c.p2 != 0x00) return refuse(sw::kWrongP1P2);
  if (c.data.size() != 4) return refuse(sw::kWrongLength);
  if (!selected_ || !mac2_session_) return refuse(sw::kConditionsNotSatisfied);
  if (!crypto::mac_equal(mac2_session_->expected_mac2, take<4>(c.data, 0))) {
    return refuse(sw::kMacInvalid);
  }
  mac2_session_.reset();
  return done({}, profile_->verify_mac2_us);
}

Response Psam::init_diversification(const Command& c) {
  if (c.p1 != kUsageMaintenance && c.p1 != kUsageMaintenanceSm4) {
    return refuse(sw::kReferencedDataNotFound);
  }
  if (c.data.size() != kDiversifyInputBytes) return refuse(sw::kWrongLength);
  if (!selected_) return refuse(sw::kConditionsNotSatisfied);
  if (c.p2 != key_version_) return refuse(sw::kReferencedDataNotFound);
  const crypto::Algorithm alg =
      c.p1 == kUsageMaintenance ? crypto::Algorithm::kTripleDes : crypto::Algorithm::kSm4;
  diversified_ =
      DiversifiedKey{alg, crypto::diversify(alg, maintenance_master_, take<8>(c.data, 0))};
  return done({}, profile_->diversify_us);
}

Response Psam::general_mac(const Command& c, Bytes chain, std::optional<DiversifiedKey> key) {
  if ((c.p1 != kMacLastBlock && c.p1 != kMacMoreBlocks) || c.p2 != 0x00) {
    return refuse(sw::kWrongP1P2);
  }
  if (c.data.empty()) return refuse(sw::kWrongLength);
  if (!selected_) return refuse(sw::kConditionsNotSatisfied);
  if (chain.size() + c.data.size() > kMacInputBytesMax) return refuse(sw::kWrongLength);
  put_bytes(chain, c.data);
  if (c.p1 == kMacMoreBlocks) {
    mac_chain_ = std::move(chain);
    diversified_ = key;
    return done({}, profile_->general_mac_us);
  }
  const std::int64_t t = profile_->general_mac_us + static_cast<std::int64_t>(chain.size() / 8) *
                                                        profile_->general_mac_block_us;
  if (!key) {
    const protocol::Mac4 mac = crypto::tdes_mac(batch_key_, chain);
    return done(Bytes(mac.begin(), mac.end()), t);
  }
  const std::size_t iv_bytes = key->algorithm == crypto::Algorithm::kTripleDes ? 8 : 16;
  if (chain.size() <= iv_bytes) return refuse(sw::kWrongLength);
  const ByteView message(chain.data() + iv_bytes, chain.size() - iv_bytes);
  protocol::Mac4 mac;
  if (key->algorithm == crypto::Algorithm::kTripleDes) {
    mac = crypto::tdes_mac(key->key, take<8>(chain, 0), message);
  } else {
    mac = crypto::sm4_mac(key->key, take<16>(chain, 0), message);
  }
  return done(Bytes(mac.begin(), mac.end()), t);
}

}  // namespace citycard::devices
