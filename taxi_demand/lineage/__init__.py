"""taxi_demand.lineage."""
