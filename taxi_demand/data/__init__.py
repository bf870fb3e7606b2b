"""Trips in, examples out: contract, warehouse, the demand query, simulator."""
