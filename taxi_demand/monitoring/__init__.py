"""taxi_demand.monitoring."""
