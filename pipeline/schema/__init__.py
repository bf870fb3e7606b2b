"""The curated schema: built from taxi_demand.modeling.features, checked in."""
