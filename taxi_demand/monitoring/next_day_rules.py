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
# now carried forward's by more than this share. Forecasting supply earns
# its place only by beating that naive forecast (the replay's target is
# 0.8x of it); a day it does worse than the naive one by over a tenth is
# beyond the day-to-day spread of a fleet's idle counts, while a few per
# cent either way is noise on a quiet day's handful of idle taxis.
DEFAULT_SUPPLY_MARGIN = 0.10


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
