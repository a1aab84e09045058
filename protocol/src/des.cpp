// OpenSSL's low-level DES API is deprecated in 3.0 but still built and maintained: it is the
// only OpenSSL interface that keeps a key schedule across calls without an EVP context. This
// file alone is compiled with -Wno-deprecated-declarations (protocol/CMakeLists.txt).
#include "citycard/protocol/des.h"

#include <openssl/des.h>

#include <cstring>

namespace citycard::protocol::crypto {
namespace {

static_assert(sizeof(DES_key_schedule) == 128, "DesKey stores the schedule as 128 bytes");
static_assert(alignof(DES_key_schedule) <= 8);

DES_key_schedule* ks(std::array<std::uint8_t, 128>& bytes) {
  return reinterpret_cast<DES_key_schedule*>(bytes.data());
}
DES_key_schedule* ks(const std::array<std::uint8_t, 128>& bytes) {
  // DES_encrypt1/3 take a non-const schedule but never write to it.
  return reinterpret_cast<DES_key_schedule*>(const_cast<std::uint8_t*>(bytes.data()));
}

void schedule(const std::uint8_t* key8, std::array<std::uint8_t, 128>& out) {
  DES_cblock k;
  std::memcpy(k, key8, 8);
  DES_set_key_unchecked(&k, ks(out));
}

// OpenSSL's DES core works on two little-endian 32-bit halves (its c2l/l2c macros); loading
// once per block and XOR-ing in that form is the same CBC chain as on bytes.
DES_LONG load(const std::uint8_t* p) {
  return static_cast<DES_LONG>(p[0]) | static_cast<DES_LONG>(p[1]) << 8 |
         static_cast<DES_LONG>(p[2]) << 16 | static_cast<DES_LONG>(p[3]) << 24;
}
void store(DES_LONG v, std::uint8_t* p) {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
  p[2] = static_cast<std::uint8_t>(v >> 16);
  p[3] = static_cast<std::uint8_t>(v >> 24);
}

// CBC over `data` padded with ISO 9797-1 method 2, without building the padded copy.
template <class Encrypt>
Mac4 cbc_mac(DES_LONG state[2], ByteView data, Encrypt encrypt) {
  std::size_t off = 0;
  for (; off + 8 <= data.size(); off += 8) {
    state[0] ^= load(data.data() + off);
    state[1] ^= load(data.data() + off + 4);
    encrypt(state);
  }
  std::uint8_t last[8] = {};
  const std::size_t rest = data.size() - off;
  if (rest > 0) std::memcpy(last, data.data() + off, rest);
  last[rest] = 0x80;
  state[0] ^= load(last);
  state[1] ^= load(last + 4);
  encrypt(state);
  Mac4 out;
  store(state[0], out.data());
  return out;
}

}  // namespace

DesKey::DesKey(const Block8& key) {
  schedule(key.data(), schedule_);
}
DesKey::DesKey(const std::uint8_t* key8) {
  schedule(key8, schedule_);
}

Block8 DesKey::encrypt(const Block8& in) const {
  DES_LONG d[2] = {load(in.data()), load(in.data() + 4)};
  DES_encrypt1(d, ks(schedule_), DES_ENCRYPT);
  Block8 out;
  store(d[0], out.data());
  store(d[1], out.data() + 4);
  return out;
}

Mac4 DesKey::mac(ByteView data) const {
  DES_LONG state[2] = {0, 0};
  DES_key_schedule* k = ks(schedule_);
  return cbc_mac(state, data, [k](DES_LONG* d) { DES_encrypt1(d, k, DES_ENCRYPT); });
}

TdesKey::TdesKey(const Key16& key) {
  schedule(key.data(), k1_);
  schedule(key.data() + 8, k2_);
}

Block8 TdesKey::encrypt(const Block8& in) const {
  DES_LONG d[2] = {load(in.data()), load(in.data() + 4)};
  DES_encrypt3(d, ks(k1_), ks(k2_), ks(k1_));
  Block8 out;
  store(d[0], out.data());
  store(d[1], out.data() + 4);
  return out;
}

Mac4 TdesKey::mac(ByteView data) const {
  return mac(Block8{}, data);
}

Mac4 TdesKey::mac(const Block8& iv, ByteView data) const {
  DES_LONG state[2] = {load(iv.data()), load(iv.data() + 4)};
  DES_key_schedule* a = ks(k1_);
  DES_key_schedule* b = ks(k2_);
  return cbc_mac(state, data, [a, b](DES_LONG* d) { DES_encrypt3(d, a, b, a); });
}

Key16 diversify(const TdesKey& master, const Serial8& serial) {
  Block8 d, nd;
  for (int i = 0; i < 8; ++i) {
    d[i] = serial[i];
    nd[i] = static_cast<std::uint8_t>(~serial[i]);
  }
  const Block8 left = master.encrypt(d), right = master.encrypt(nd);
  Key16 out;
  for (int i = 0; i < 8; ++i) {
    out[i] = left[i];
    out[i + 8] = right[i];
  }
  return out;
}

}  // namespace citycard::protocol::crypto
