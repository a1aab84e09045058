#include "citycard/protocol/capp.h"

namespace citycard::protocol {

Bytes TravelRecord::encode() const {
  Bytes out;
  out.reserve(kSize);
  put_u8(out, type);
  put_bytes(out, terminal);
  put_u8(out, sub_type);
  put_bytes(out, station);
  put_u32be(out, amount_fen);
  put_u32be(out, balance_after_fen);
  put_bytes(out, datetime);
  put_bytes(out, city);
  put_bytes(out, institution);
  out.resize(kSize, 0x00);
  return out;
}

std::optional<TravelRecord> TravelRecord::decode(ByteView b) {
  if (b.size() != kSize) return std::nullopt;
  TravelRecord r;
  r.type = b[0];
  r.terminal = take<8>(b, 1);
  r.sub_type = b[9];
  r.station = take<7>(b, 10);
  r.amount_fen = get_u32be(b, 17);
  r.balance_after_fen = get_u32be(b, 21);
  r.datetime = take<7>(b, 25);
  r.city = take<2>(b, 32);
  r.institution = take<8>(b, 34);
  return r;
}

Bytes MetroRecord::encode() const {
  Bytes out;
  out.reserve(kSize);
  put_u8(out, state);
  put_u8(out, line);
  put_u16be(out, entry_station);
  put_bytes(out, entry_device);
  put_bytes(out, entry_datetime);
  put_u16be(out, exit_station);
  put_bytes(out, exit_datetime);
  put_u32be(out, fare_fen);
  out.resize(kSize, 0x00);
  return out;
}

std::optional<MetroRecord> MetroRecord::decode(ByteView b) {
  if (b.size() != kSize) return std::nullopt;
  MetroRecord r;
  r.state = b[0];
  r.line = b[1];
  r.entry_station = get_u16be(b, 2);
  r.entry_device = take<4>(b, 4);
  r.entry_datetime = take<7>(b, 8);
  r.exit_station = get_u16be(b, 15);
  r.exit_datetime = take<7>(b, 17);
  r.fare_fen = get_u32be(b, 24);
  return r;
}

}  // namespace citycard::protocol
