// Calendar arithmetic on YYYYMMDD integers (the backend's settlement dates), private to the
// backend. Proleptic Gregorian; days are counted from 1970-01-01 (Howard Hinnant's
// days_from_civil), which is only an internal origin: nothing here reads a clock.
#pragma once

namespace citycard::backend::dates {

int to_days(int yyyymmdd);
int from_days(int days);
int add_days(int yyyymmdd, int days);
// Same day of the month `months` later, clamped to the month's last day (Jan 31 + 1 = Feb 29).
int add_months(int yyyymmdd, int months);
// 0 = Monday ... 6 = Sunday.
int weekday(int yyyymmdd);
int month_first(int yyyymmdd);
int month_last(int yyyymmdd);
// The Monday of the ISO week that holds the day.
int week_first(int yyyymmdd);
// True for an existing calendar date.
bool valid(int yyyymmdd);

}  // namespace citycard::backend::dates
