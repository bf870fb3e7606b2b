"""Spans: days since 1970-01-01, the unit of every daily run and partition."""

from __future__ import annotations

import datetime

from taxi_demand.errors import TaxiDemandError

EPOCH = datetime.date(1970, 1, 1)


def span_of(day: datetime.date) -> int:
  """The span of a calendar day."""
  return (day - EPOCH).days


def day_of(span: int) -> datetime.date:
  """The calendar day of a span."""
  return EPOCH + datetime.timedelta(days=int(span))


def parse_day(text: str) -> datetime.date:
  """YYYY-MM-DD, or one clear error naming what was given."""
  try:
    return datetime.date.fromisoformat(str(text))
  except (TypeError, ValueError):
    raise TaxiDemandError(f"bad date {text!r}: expected YYYY-MM-DD") from None


def parse_span(text: str) -> int:
  """The span of a YYYY-MM-DD date."""
  return span_of(parse_day(text))
