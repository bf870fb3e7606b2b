"""US federal holidays by rule, the Python twin of the rule inside demand.sql."""

from __future__ import annotations

import datetime

# (month, weekday, nth) rules; weekday uses Python's Monday=0. nth=-1 = last.
_FLOATING = (
    (1, 0, 3),    # Martin Luther King Jr. Day: third Monday of January
    (2, 0, 3),    # Presidents' Day: third Monday of February
    (5, 0, -1),   # Memorial Day: last Monday of May
    (9, 0, 1),    # Labor Day: first Monday of September
    (11, 3, 4),   # Thanksgiving: fourth Thursday of November
)
# (month, day) rules. No observed-day shifting: the contract says the rule,
# not the day off, so that BigQuery and DuckDB can compute it from the date.
_FIXED = ((1, 1), (7, 4), (12, 25))


def is_us_holiday(day: datetime.date) -> bool:
  """True if `day` is a US federal holiday by rule (no observed shifting)."""
  if (day.month, day.day) in _FIXED:
    return True
  for month, weekday, nth in _FLOATING:
    if day.month != month or day.weekday() != weekday:
      continue
    if nth == -1:
      # Last such weekday: one week later falls in the next month.
      if (day + datetime.timedelta(days=7)).month != month:
        return True
    elif (day.day - 1) // 7 + 1 == nth:
      return True
  return False


def holidays(year: int) -> list[datetime.date]:
  """Every holiday of `year` under the rule, in date order."""
  day = datetime.date(year, 1, 1)
  out = []
  while day.year == year:
    if is_us_holiday(day):
      out.append(day)
    day += datetime.timedelta(days=1)
  return out
