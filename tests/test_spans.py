"""Spans: one epoch and one day length, in taxi_demand/spans.py alone."""

import datetime
import re
from pathlib import Path

from taxi_demand import spans

ROOT = Path(__file__).resolve().parent.parent


def test_epoch_seconds_map_to_days_and_back():
  first = spans.start_of(spans.parse_span("2024-02-05"))
  assert spans.day_of_epoch(first) == datetime.date(2024, 2, 5)
  assert spans.day_of_epoch(first - 1) == datetime.date(2024, 2, 4)
  assert spans.day_of_epoch(first + spans.SECONDS_PER_DAY - 1) == \
      datetime.date(2024, 2, 5)
  assert spans.span_of_epoch(spans.start_of(19760) + 5) == 19760


def test_no_module_keeps_its_own_epoch_or_day_length():
  """Span arithmetic goes through spans.py: a second EPOCH or a literal
  86400 elsewhere is a second definition that can drift from it."""
  found = []
  for path in [*ROOT.glob("taxi_demand/**/*.py"), *ROOT.glob("pipeline/**/*.py")]:
    if path.name == "spans.py" and path.parent.name == "taxi_demand":
      continue
    for n, line in enumerate(path.read_text().splitlines(), 1):
      if re.search(r"\b86_?400\b|^EPOCH\s*=|date\(1970,", line):
        found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
  assert found == []
