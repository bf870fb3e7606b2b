"""Test support: what the tests and the benches drive, never production code."""
