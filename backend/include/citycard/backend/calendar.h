// Maps the run's clock onto the city's calendar, for settlement dates and validity dates.
// The clock reads microseconds since the run's epoch; `origin_epoch2000_s` says which calendar
// second (since 2000-01-01 00:00:00, city time, as cards count) that epoch is. The backend
// reads time only through this, so virtual-time runs are deterministic.
//
// Threads: as thread-safe as the Clock it wraps; holds a reference, so the Clock must outlive it.
#pragma once

#include <cstdint>

#include "citycard/protocol/purse.h"
#include "citycard/sim/clock.h"

namespace citycard::backend {

// 2024-01-01 00:00:00: 8766 days after 2000-01-01.
inline constexpr std::int64_t kDefaultClockOriginEpoch2000S = 8766LL * 86'400;

class Calendar {
 public:
  explicit Calendar(const sim::Clock& clock,
                    std::int64_t origin_epoch2000_s = kDefaultClockOriginEpoch2000S)
      : clock_(clock), origin_epoch2000_s_(origin_epoch2000_s) {}

  std::int64_t now_us() const { return clock_.now_us(); }
  std::int64_t now_epoch2000_s() const;
  protocol::DateTime7 now_datetime() const;
  // The settlement date of something processed now, as the integer YYYYMMDD (20240101):
  // integers sort and compare as dates, which makes date ranges plain SQL.
  int today_yyyymmdd() const;

  // YYYYMMDD of a BCD date-time or date; the caller has checked the BCD digits.
  static int yyyymmdd(const protocol::DateTime7& datetime);
  // True when every nibble is a decimal digit and month, day, hour, minute, second are in
  // range (the day is not checked against the month's length).
  static bool valid_datetime(const protocol::DateTime7& datetime);

 private:
  const sim::Clock& clock_;
  std::int64_t origin_epoch2000_s_;
};

}  // namespace citycard::backend
