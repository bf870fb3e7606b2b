"""When a next-day result is an alert: the rules and their defaults.

Apart from nextday.py so that the CLI's parser takes its flags' defaults
from `Rules` without importing numpy or pyarrow.
"""

from __future__ import annotations

import dataclasses
import math

from taxi_demand.errors import TaxiDemandError

DEFAULT_MARGIN = 0.25
DEFAULT_TREND_DAYS = 5
DEFAULT_TREND_SLOPE = 0.05
# The served supply forecast alerts when its MAE over the day exceeds idle
# now carried forward's by more than this share: a supply forecast earns
# its place in `recommend` only by beating that naive one. Measured on the
# test city (7 days, ticks every 15 min from 06:00, leads 5-45 min, rates
# of the 4 weeks before), its daily MAE was 1.00-1.06x naive on weekdays,
# 1.14x on the Saturday and 1.45x on the Sunday; on the guidance bench's
# unseen day 0.93-0.98x. 25% sits above the weekday-to-Saturday spread, so
# the ordinary days stay quiet, and flags a day like that Sunday, when
# `recommend --supply idle-now` would have guided better.
DEFAULT_SUPPLY_MARGIN = 0.25


@dataclasses.dataclass(frozen=True)
class Rules:
  """When a next-day result is an alert.

  Attributes:
    margin: sudden drop if MAE > eval MAE x (1 + margin).
    trend_days: K, how many daily results (today included) the trend spans.
    trend_slope: gradual degradation if MAE rises faster than this fraction
      of its mean per day over those K days.
    supply_margin: the served supply forecast alerts if its MAE over the
      day exceeds the naive supply forecast's (idle now, carried forward)
      x (1 + supply_margin).
  """
  margin: float = DEFAULT_MARGIN
  trend_days: int = DEFAULT_TREND_DAYS
  trend_slope: float = DEFAULT_TREND_SLOPE
  supply_margin: float = DEFAULT_SUPPLY_MARGIN

  def __post_init__(self):
    # Comparisons with nan are all false: a nan limit would never alert.
    if not 0 <= self.margin < math.inf:
      raise TaxiDemandError(f"--margin must be a finite number >= 0, got "
                            f"{self.margin}")
    if self.trend_days < 2:
      raise TaxiDemandError(f"--trend-days must be >= 2, got "
                            f"{self.trend_days}")
    if not 0 <= self.supply_margin < math.inf:
      raise TaxiDemandError(f"--supply-margin must be a finite number >= 0, "
                            f"got {self.supply_margin}")
    if not math.isfinite(self.trend_slope):
      raise TaxiDemandError(f"--trend-slope must be a finite number, got "
                            f"{self.trend_slope}")
