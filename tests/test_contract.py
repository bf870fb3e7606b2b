"""The trips contract: required columns, rule order, the city's bounding box."""

import csv
from pathlib import Path

import pyarrow as pa

from taxi_demand.data import contract

SAMPLE = (Path(pa.__file__).resolve().parent.parent / "tfx" / "examples" /
          "chicago_taxi_pipeline" / "data" / "simple" / "data.csv")


def test_real_sample_has_every_required_column():
  with SAMPLE.open() as f:
    header = next(csv.reader(f))
  assert contract.missing_columns(header) == []
  assert "unique_key" not in header  # hence the content-derived key


def test_missing_columns_are_named_in_contract_order():
  assert contract.missing_columns(["trip_start_timestamp", "trip_miles"]) == [
      "trip_seconds", "pickup_community_area", "pickup_latitude",
      "pickup_longitude"]


def test_required_columns_are_warehouse_columns():
  assert set(contract.REQUIRED_COLUMNS) <= set(contract.TRIP_COLUMNS)


def test_rules_cover_the_issue_and_are_unique():
  assert contract.RULE_NAMES == (
      "malformed_row", "bad_timestamp", "timestamp_out_of_range",
      "missing_pickup_location", "community_area_out_of_range", "coordinates_outside_chicago",
      "negative_duration", "negative_distance", "value_out_of_range",
      "duplicate_key")


def test_bounding_box_holds_the_city_and_ohare_but_not_elsewhere():
  box = contract.CHICAGO_BBOX
  def inside(lat, lon):
    return box.south <= lat <= box.north and box.west <= lon <= box.east
  assert inside(41.8781, -87.6298)      # the Loop
  assert inside(41.9786, -87.9048)      # O'Hare
  assert inside(41.7868, -87.7522)      # Midway
  assert not inside(0.0, 0.0)
  assert not inside(42.0451, -87.6877 - 1)  # west of the city
