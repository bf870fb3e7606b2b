"""DuckDBExampleGen: BigQueryExampleGen's shape over the embedded DuckDB warehouse."""

from pipeline.components.duckdb_example_gen.component import DuckDBExampleGen
from pipeline.components.duckdb_example_gen.component import input_config_for
from pipeline.components.duckdb_example_gen.component import range_config_for

__all__ = ["DuckDBExampleGen", "input_config_for", "range_config_for"]
