"""DuckDBExampleGen: BigQueryExampleGen's shape over the embedded DuckDB warehouse."""

from pipeline.components.duckdb_example_gen.component import DuckDBExampleGen
from pipeline.components.duckdb_example_gen.component import ingest_fingerprint
from pipeline.components.duckdb_example_gen.component import input_config_for
from pipeline.components.duckdb_example_gen.component import query_key
from pipeline.components.duckdb_example_gen.component import range_config_for

__all__ = ["DuckDBExampleGen", "ingest_fingerprint", "input_config_for",
           "query_key", "range_config_for"]
