"""A day of trips with taxi ids, written as a trips CSV, for the supply tests."""

import csv


def write_trips(path, day: str, rows) -> None:
  """Rows of (taxi ("": none), start HH:MM, end HH:MM ("": none), seconds,
  pickup area, dropoff area) on `day`, as a CSV the warehouse loads."""
  with open(path, "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(["unique_key", "taxi_id", "trip_start_timestamp",
                  "trip_end_timestamp", "trip_seconds", "trip_miles",
                  "pickup_community_area", "dropoff_community_area",
                  "pickup_latitude", "pickup_longitude"])
    for i, (taxi, start, end, seconds, a, b) in enumerate(rows):
      out.writerow([f"k{i}", taxi, f"{day} {start}:00",
                    f"{day} {end}:00" if end else "", seconds, 1.0, a, b,
                    41.88, -87.63])
