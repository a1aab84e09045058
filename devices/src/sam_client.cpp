#include "citycard/devices/sam_client.h"

#include <algorithm>
#include <string>

#include "citycard/devices/psam.h"
#include "sw_text.h"

namespace citycard::devices {

using protocol::Command;
using protocol::Response;

// Sends `command` and insists on 9000 and exactly `data_bytes` of data. The command's text is
// built only for an error message: on the success path it would cost more than the MAC.
Result<Response> SamClient::exchange(const Command& command, std::size_t data_bytes) {
  Result<Response> r = sam_.transceive(command);
  if (!r) return r;
  auto what = [&] { return "PSAM " + command.to_string().substr(0, 4); };
  if (r->sw == protocol::sw::kMacInvalid) {
    return Result<Response>(Errc::kBadMac, what() + ": " + protocol::sw_name(r->sw));
  }
  if (!r->ok()) {
    return Result<Response>(Errc::kRejected, what() + " answered " + sw_text(r->sw));
  }
  if (r->data.size() != data_bytes) {
    return Result<Response>(Errc::kMalformed, what() + " answered " +
                                                  std::to_string(r->data.size()) +
                                                  " bytes, expected " + std::to_string(data_bytes));
  }
  return r;
}

Result<protocol::TerminalId> SamClient::open() {
  const protocol::TerminalId id{};
  Result<Response> r = exchange(
      Command{
          0x00, 0xB0, static_cast<std::uint8_t>(0x80 | Psam::kTerminalIdSfi), 0x00, {}, id.size()},
      id.size());
  if (!r) return r.status();
  Bytes fid;
  put_u16be(fid, Psam::kApplicationFid);
  Result<Response> s = exchange(Command{0x00, 0xA4, 0x00, 0x00, fid, std::nullopt}, 0);
  if (!s) return s.status();
  return take<6>(r->data, 0);
}

Status SamClient::select_application(protocol::Family family) {
  Bytes fid;
  put_u16be(fid, protocol::psam_df_for(family));
  return exchange(Command{0x00, 0xA4, 0x00, 0x00, fid, std::nullopt}, 0).status();
}

Status SamClient::init_diversification(std::uint8_t usage, std::uint8_t key_version,
                                       const protocol::Serial8& serial,
                                       const std::array<std::uint8_t, 8>& group_data) {
  Bytes d;
  put_bytes(d, serial);
  put_bytes(d, group_data);
  return exchange(Command{0x80, 0x1A, usage, key_version, std::move(d), std::nullopt}, 0).status();
}

Result<protocol::Mac4> SamClient::diversified_mac(ByteView iv, ByteView message) {
  if (iv.size() + message.size() > 255) {
    return Result<protocol::Mac4>(Errc::kTooLarge, "a diversified MAC takes one APDU");
  }
  Bytes d(iv.begin(), iv.end());
  put_bytes(d, message);
  Result<Response> r = exchange(Command{0x80, 0xFA, Psam::kMacLastBlock, 0x00, std::move(d), 4}, 4);
  if (!r) return r.status();
  return take<4>(r->data, 0);
}

Result<Mac1Output> SamClient::mac1_for_purchase(const Mac1Input& in) {
  Bytes d;
  d.reserve(0x24);
  put_bytes(d, in.card_random);
  put_u16be(d, in.offline_counter);
  put_u32be(d, in.amount_fen);
  put_u8(d, in.type);
  put_bytes(d, in.datetime);
  put_u8(d, in.key_version);
  put_u8(d, in.algorithm_id);
  put_bytes(d, in.card_serial);
  put_bytes(d, in.diversification_data);
  Result<Response> r = exchange(Command{0x80, 0x70, 0x00, 0x00, std::move(d), 8}, 8);
  if (!r) return r.status();
  return Mac1Output{get_u32be(r->data, 0), take<4>(r->data, 4)};
}

Status SamClient::verify_mac2(const protocol::Mac4& mac2) {
  Result<Response> r =
      exchange(Command{0x80, 0x72, 0x00, 0x00, Bytes(mac2.begin(), mac2.end()), std::nullopt}, 0);
  return r.status();
}

Result<protocol::Mac4> SamClient::general_mac(ByteView data) {
  if (data.empty()) return Result<protocol::Mac4>(Errc::kInvalidArgument, "MAC over no data");
  if (data.size() > Psam::kMacInputBytesMax) {
    return Result<protocol::Mac4>(Errc::kTooLarge, "MAC input of " + std::to_string(data.size()) +
                                                       " bytes is over the PSAM's limit");
  }
  std::size_t off = 0;
  for (;;) {
    const std::size_t n = std::min(kMacBlockBytesMax, data.size() - off);
    const bool last = off + n == data.size();
    const auto block = data.subspan(off, n);
    Command c{0x80,
              0xFA,
              last ? Psam::kMacLastBlock : Psam::kMacMoreBlocks,
              0x00,
              Bytes(block.begin(), block.end()),
              std::nullopt};
    if (last) c.le = 4;
    Result<Response> r = exchange(c, last ? 4 : 0);
    if (!r) return r.status();
    if (last) return take<4>(r->data, 0);
    off += n;
  }
}

}  // namespace citycard::devices
