"""taxi_demand.serving."""
