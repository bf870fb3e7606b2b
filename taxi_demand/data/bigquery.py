"""The trips table in BigQuery as a read-only warehouse: demand.sql as written.

`BigQueryWarehouse("bq://PROJECT.DATASET.TABLE")` answers the readers'
questions (serving features, data age, pickups, supply, ...) with the same
BigQuery SQL the local warehouse transpiles to DuckDB (taxi_demand.data.
reader), so both return the same rows. The client library is imported and
built on the first read, never at import or for `--help`; whatever it raises
becomes one line (taxi_demand.cloud.one_line), transient errors after
bounded retries ($TAXI_DEMAND_CLOUD_RETRY_S).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from typing import Union

import pyarrow as pa

from taxi_demand import cloud
from taxi_demand.data import contract
from taxi_demand.data import reader
from taxi_demand.data import sql as demand_sql
from taxi_demand.errors import TaxiDemandError

# A BigQuery REST endpoint to use instead of Google's, with no credentials:
# the tests' loopback double (tests/bigquery_double.py), or an emulator.
ENDPOINT_ENV_VAR = "TAXI_DEMAND_BIGQUERY_ENDPOINT"
# The project that runs (and pays for) the query jobs, when it is not the
# table's own: a public dataset's project runs no job of yours.
JOB_PROJECT_ENV_VAR = "GOOGLE_CLOUD_PROJECT"
TIMESTAMP_COLUMNS = contract.TIMESTAMP_COLUMNS


def _bigquery():
  """google.cloud.bigquery, imported without google.api_core's warning
  about Python 3.10 reaching the user."""
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=FutureWarning,
                            module=r"google\.")
    from google.cloud import bigquery  # noqa: PLC0415
  return bigquery


@contextlib.contextmanager
def google_errors(what: str):
  """Turns what a Google client raises inside the block into one line
  about `what` (an address)."""
  _bigquery()  # google.api_core first, quietly
  import requests  # noqa: PLC0415
  from google.api_core import exceptions as api  # noqa: PLC0415
  from google.auth import exceptions as auth  # noqa: PLC0415
  try:
    yield
  except TaxiDemandError:
    raise
  except (api.GoogleAPIError, auth.GoogleAuthError,
          requests.exceptions.RequestException, ConnectionError) as e:
    raise cloud.one_line(e, what) from e


# One client per (job project, endpoint) per process: the 5-minute job opens
# a reader each tick, and would otherwise build a client (and its auth
# session) each time.
_clients: dict = {}


class BigQueryWarehouse(reader.Reader):
  """The trips table `bq://PROJECT.DATASET.TABLE`, read-only.

  Its columns are checked on the first read (contract.QUERY_COLUMNS); the
  simulator's truth and the probes are not there unless a `probes` table
  sits beside the trips table in its dataset.
  """

  def __init__(self, address: Union[str, cloud.BigQueryTable]):
    """Parses `address` (one line if it does not parse); no Google call."""
    self.table = (address if isinstance(address, cloud.BigQueryTable)
                  else cloud.parse_bigquery(str(address)))
    self.path = str(self.table)
    self._client = None
    self._checked = False
    self._has: dict[str, bool] = {reader.TRIPS: True}

  def __enter__(self) -> "BigQueryWarehouse":
    return self

  def close(self) -> None:
    self._client = None  # shared with the process's other readers

  # ---- the client -------------------------------------------------------

  def _retries(self) -> dict:
    """retry (each API call) and job_retry (a job that failed for a
    transient reason, run again), both bounded by cloud.retry_deadline()."""
    retry = _bigquery().retry
    deadline = cloud.retry_deadline()
    return {"retry": retry.DEFAULT_RETRY.with_timeout(deadline),
            "job_retry": retry.DEFAULT_JOB_RETRY.with_timeout(deadline)}

  @property
  def client(self):
    """The BigQuery client, built once: anonymous against
    $TAXI_DEMAND_BIGQUERY_ENDPOINT, else with the default credentials."""
    if self._client is None:
      project = os.environ.get(JOB_PROJECT_ENV_VAR) or self.table.project
      endpoint = os.environ.get(ENDPOINT_ENV_VAR)
      key = (project, endpoint)
      if key not in _clients:
        bigquery = _bigquery()
        with google_errors(self.path):
          if endpoint:
            from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415
            _clients[key] = bigquery.Client(
                project=project, credentials=AnonymousCredentials(),
                client_options={"api_endpoint": endpoint})
          else:
            _clients[key] = bigquery.Client(project=project)
      self._client = _clients[key]
    return self._client

  def _get_table(self, qualified: str):
    with google_errors(str(self.path)):
      return self.client.get_table(qualified,
                                   retry=self._retries()["retry"])

  def _check_columns(self) -> None:
    """Once: one line unless the table has the columns the queries read,
    with timestamps as TIMESTAMP."""
    if self._checked:
      return
    kinds = {f.name.lower(): f.field_type
             for f in self._get_table(self.table.qualified).schema}
    missing = [c for c in contract.QUERY_COLUMNS if c not in kinds]
    if missing:
      raise TaxiDemandError(
          f"{self.path}: the table lacks column(s) the demand query reads: "
          f"{', '.join(missing)}")
    for name in TIMESTAMP_COLUMNS:
      if kinds[name] != "TIMESTAMP":
        raise TaxiDemandError(
            f"{self.path}: column {name} is {kinds[name]}, expected "
            "TIMESTAMP")
    self._checked = True

  # ---- reader.Reader ------------------------------------------------------

  def _table(self, name: str) -> str:
    if name == reader.TRIPS:
      return self.table.qualified
    return dataclasses.replace(self.table, table=name).qualified

  def _cfg(self, cfg: demand_sql.QueryConfig) -> demand_sql.QueryConfig:
    # The address names the trips table, whatever table the model's run
    # read (`trips` locally).
    if cfg.table == self.table.qualified:
      return cfg
    return dataclasses.replace(cfg, table=self.table.qualified)

  def _rows(self, bigquery_sql: str) -> pa.Table:
    self._check_columns()
    retries = self._retries()
    with google_errors(str(self.path)):
      job = self.client.query(bigquery_sql, **retries)
      return job.result(**retries).to_arrow(create_bqstorage_client=False)

  def has_table(self, name: str) -> bool:
    """The trips table, or a table `name` beside it in its dataset."""
    if name not in self._has:
      from google.api_core import exceptions as api  # noqa: PLC0415
      try:
        self._get_table(self._table(name))
        self._has[name] = True
      except TaxiDemandError as e:
        if not isinstance(e.__cause__, api.NotFound):
          raise
        self._has[name] = False
    return self._has[name]

  def truth(self, begin: int, end: int) -> pa.Table:
    """Empty: a table of real trips has no simulated intensity."""
    return reader.TRUTH_SCHEMA.empty_table()
