"""Custom TFX components: DuckDB ExampleGen and the gates."""
