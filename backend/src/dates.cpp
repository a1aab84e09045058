#include "dates.h"

namespace citycard::backend::dates {
namespace {

int days_from_civil(int y, int m, int d) {
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const int yoe = y - era * 400;
  const int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146'097 + doe - 719'468;
}

bool leap(int y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int month_days(int y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : kDays[m - 1];
}

}  // namespace

int to_days(int v) {
  return days_from_civil(v / 10'000, v / 100 % 100, v % 100);
}

int from_days(int z) {
  z += 719'468;
  const int era = (z >= 0 ? z : z - 146'096) / 146'097;
  const int doe = z - era * 146'097;
  const int yoe = (doe - doe / 1'460 + doe / 36'524 - doe / 146'096) / 365;
  const int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int mp = (5 * doy + 2) / 153;
  const int d = doy - (153 * mp + 2) / 5 + 1;
  const int m = mp + (mp < 10 ? 3 : -9);
  const int y = yoe + era * 400 + (m <= 2);
  return y * 10'000 + m * 100 + d;
}

int add_days(int v, int days) {
  return from_days(to_days(v) + days);
}

int add_months(int v, int months) {
  int y = v / 10'000, m = v / 100 % 100 - 1 + months;
  y += m >= 0 ? m / 12 : (m - 11) / 12;
  m = ((m % 12) + 12) % 12 + 1;
  int d = v % 100;
  if (d > month_days(y, m)) d = month_days(y, m);
  return y * 10'000 + m * 100 + d;
}

int weekday(int v) {
  // 1970-01-01 was a Thursday (3 when Monday is 0).
  return ((to_days(v) % 7) + 7 + 3) % 7;
}

int month_first(int v) {
  return v / 100 * 100 + 1;
}

int month_last(int v) {
  return v / 100 * 100 + month_days(v / 10'000, v / 100 % 100);
}

int week_first(int v) {
  return add_days(v, -weekday(v));
}

bool valid(int v) {
  const int y = v / 10'000, m = v / 100 % 100, d = v % 100;
  return y >= 1900 && y <= 9999 && m >= 1 && m <= 12 && d >= 1 && d <= month_days(y, m);
}

}  // namespace citycard::backend::dates
