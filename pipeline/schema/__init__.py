"""The curated schema: built from taxi_demand.features, checked in."""
