#include "citycard/backend/calendar.h"

namespace citycard::backend {
namespace {

int unbcd(std::uint8_t b) {
  return (b >> 4) * 10 + (b & 0x0f);
}
bool is_bcd(std::uint8_t b) {
  return (b >> 4) <= 9 && (b & 0x0f) <= 9;
}

}  // namespace

std::int64_t Calendar::now_epoch2000_s() const {
  const std::int64_t us = clock_.now_us();
  // Floor, not truncation, so a clock reading before the epoch still maps to the right second.
  const std::int64_t s = us >= 0 ? us / 1'000'000 : -((-us + 999'999) / 1'000'000);
  return origin_epoch2000_s_ + s;
}

protocol::DateTime7 Calendar::now_datetime() const {
  return protocol::datetime_from_epoch2000(now_epoch2000_s());
}

int Calendar::today_yyyymmdd() const {
  return yyyymmdd(now_datetime());
}

int Calendar::yyyymmdd(const protocol::DateTime7& dt) {
  return (unbcd(dt[0]) * 100 + unbcd(dt[1])) * 10'000 + unbcd(dt[2]) * 100 + unbcd(dt[3]);
}

bool Calendar::valid_datetime(const protocol::DateTime7& dt) {
  for (std::uint8_t b : dt) {
    if (!is_bcd(b)) return false;
  }
  const int month = unbcd(dt[2]), day = unbcd(dt[3]);
  return month >= 1 && month <= 12 && day >= 1 && day <= 31 && unbcd(dt[4]) < 24 &&
         unbcd(dt[5]) < 60 && unbcd(dt[6]) < 60;
}

}  // namespace citycard::backend
