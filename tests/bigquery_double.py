"""A loopback test double of the BigQuery REST API, over a DuckDB warehouse.

Test code, not product. The real google-cloud-bigquery client, pointed at
`BigQueryDouble.url` (taxi_demand's $TAXI_DEMAND_BIGQUERY_ENDPOINT), runs its
queries here: jobs.insert runs the received BigQuery SQL on the warehouse
file, read-only, through the project's own transpiler (sql.to_duckdb),
after naming `project.dataset.table` as the DuckDB `trips` table (and
`project.dataset.X` as table X) and substituting any query parameters.
jobs.get, jobs.getQueryResults (paged), jobs.query, tables.get and
tabledata.list answer in BigQuery's JSON shapes, as
google/cloud/bigquery/_helpers.py parses them.

Faults for the failure tests: `fault = "forbidden"` (403 on every call) or
`"unavailable"` (503 on every call, until the client's retries run out),
`dropped_columns` (tables.get shows the trips table without them); a table
the double does not hold is 404, as BigQuery's.
"""

from __future__ import annotations

import contextlib
import datetime
import http.server
import json
import re
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Optional

import duckdb

from taxi_demand.data import sql

API = "/bigquery/v2"
PAGE_ROWS = 10_000
LOCATION = "US"

# DuckDB types -> BigQuery's REST (legacy) type names, which the client maps.
_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
            "USMALLINT", "UINTEGER", "UBIGINT")
_FLOAT = ("FLOAT", "DOUBLE", "REAL", "DECIMAL")


def bigquery_type(duckdb_type: str) -> str:
  name = str(duckdb_type).upper()
  base = name.split("(")[0]
  if base in _INTEGER:
    return "INTEGER"
  if base in _FLOAT:
    return "FLOAT"
  if base == "BOOLEAN":
    return "BOOLEAN"
  if base.startswith("TIMESTAMP"):
    return "TIMESTAMP"
  if base == "DATE":
    return "DATE"
  return "STRING"


def cell(value, kind: str, int64_timestamps: bool):
  """One value as the REST API sends it: a string, or None."""
  if value is None:
    return None
  if kind == "INTEGER":
    return str(int(value))
  if kind == "FLOAT":
    v = float(value)
    if v != v:
      return "NaN"
    if v in (float("inf"), float("-inf")):
      return "Infinity" if v > 0 else "-Infinity"
    return repr(v)
  if kind == "BOOLEAN":
    return "true" if value else "false"
  if kind == "TIMESTAMP":
    if value.tzinfo is None:  # the warehouse's naive wall clock, as UTC
      value = value.replace(tzinfo=datetime.timezone.utc)
    micros = int(value.timestamp()) * 1_000_000 + value.microsecond
    return str(micros) if int64_timestamps else repr(micros / 1e6)
  if kind == "DATE":
    return value.isoformat()
  return str(value)


class ApiError(Exception):
  """An HTTP error answer in BigQuery's JSON shape."""

  STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED",
            404: "NOT_FOUND", 503: "UNAVAILABLE"}

  def __init__(self, code: int, reason: str, message: str):
    super().__init__(message)
    self.code, self.reason, self.message = code, reason, message

  def body(self) -> dict:
    return {"error": {"code": self.code, "message": self.message,
                      "errors": [{"message": self.message, "domain": "global",
                                  "reason": self.reason}],
                      "status": self.STATUS.get(self.code, "UNKNOWN")}}


class BigQueryDouble:
  """The REST double on 127.0.0.1, serving one warehouse file.

  Args:
    warehouse: the DuckDB file (opened read-only, per query).
    table: the trips table's `project.dataset.table`.
  """

  def __init__(self, warehouse: Path, table: str = "test-project.city.trips"):
    self.warehouse = Path(warehouse)
    self.table = table
    self.project, self.dataset, self.table_id = table.split(".")
    self.fault: Optional[str] = None
    self.dropped_columns: set = set()
    self.calls: list = []        # (method, path) of every request
    self.queries: list = []      # the BigQuery SQL of every job
    self._jobs: dict = {}
    self._server: Optional[http.server.ThreadingHTTPServer] = None

  # ---- lifecycle -------------------------------------------------------

  def start(self) -> "BigQueryDouble":
    double = self

    class Handler(_Handler):
      owner = double

    self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self._server.daemon_threads = True
    threading.Thread(target=self._server.serve_forever, daemon=True).start()
    return self

  def stop(self) -> None:
    if self._server is not None:
      self._server.shutdown()
      self._server.server_close()
      self._server = None

  def __enter__(self):
    return self.start()

  def __exit__(self, *exc):
    self.stop()

  @property
  def address(self) -> str:
    """The trips table as a warehouse address."""
    return f"bq://{self.table}"

  @property
  def url(self) -> str:
    host, port = self._server.server_address[:2]
    # typeshed allows bytes for any socket family; an AF_INET host is a str.
    return f"http://{host}:{port}"  # type: ignore[str-bytes-safe]

  def reset(self) -> None:
    """No fault, every column shown, calls forgotten."""
    self.fault = None
    self.dropped_columns = set()
    self.calls.clear()
    self.queries.clear()

  # ---- the warehouse -------------------------------------------------------

  def _connect(self):
    con = duckdb.connect(str(self.warehouse), read_only=True)
    con.execute("SET TimeZone = 'UTC'")  # as taxi_demand's Warehouse
    return con

  def _duckdb_table(self, qualified: str) -> Optional[str]:
    """The DuckDB table a BigQuery `project.dataset.table` stands for."""
    if qualified == self.table:
      return "trips"
    project, _, rest = qualified.partition(".")
    dataset, _, name = rest.partition(".")
    if (project, dataset) != (self.project, self.dataset) or name == "trips":
      return None
    con = self._connect()
    try:
      held = con.execute("SELECT count(*) FROM information_schema.tables "
                         "WHERE table_name = ?", [name]).fetchone()[0]
    finally:
      con.close()
    return name if held else None

  def table_resource(self, project: str, dataset: str, table: str) -> dict:
    name = self._duckdb_table(f"{project}.{dataset}.{table}")
    if name is None:
      raise ApiError(404, "notFound",
                     f"Not found: Table {project}:{dataset}.{table}")
    con = self._connect()
    try:
      columns = con.execute(f"DESCRIBE {name}").fetchall()
      rows = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
    finally:
      con.close()
    hidden = self.dropped_columns if name == "trips" else set()
    return {
        "kind": "bigquery#table", "id": f"{project}:{dataset}.{table}",
        "tableReference": {"projectId": project, "datasetId": dataset,
                           "tableId": table},
        "schema": {"fields": [
            {"name": c[0], "type": bigquery_type(c[1]), "mode": "NULLABLE"}
            for c in columns if c[0] not in hidden]},
        "numRows": str(rows), "type": "TABLE", "location": LOCATION,
        "creationTime": "1700000000000"}

  def _duckdb_sql(self, text: str, parameters) -> str:
    """The received BigQuery SQL, tables named and parameters filled, as
    DuckDB SQL."""
    def name(match):
      table = self._duckdb_table(match.group(1))
      if table is None:
        project, dataset, rest = (match.group(1).split(".") + ["", ""])[:3]
        raise ApiError(404, "notFound",
                       f"Not found: Table {project}:{dataset}.{rest} was not "
                       f"found in location {LOCATION}")
      return table
    # Only `project.dataset.table` names a table; other quoted names are
    # columns or aliases.
    text = re.sub(r"`((?:[\w.-]+:)?[\w-]+\.\w+\.\w+)`", name, text)
    return sql.to_duckdb(_substitute(text, parameters or []))

  def run(self, text: str, parameters=None) -> dict:
    """Runs a query; returns the job's state: schema and rows, or error."""
    self.queries.append(text)
    try:
      duck = self._duckdb_sql(text, parameters)
      con = self._connect()
      try:
        cursor = con.execute(duck)
        kinds = [(d[0], bigquery_type(d[1])) for d in cursor.description]
        rows = cursor.fetchall()
      finally:
        con.close()
    except ApiError as e:
      return {"error": e}
    except duckdb.Error as e:
      return {"error": ApiError(400, "invalidQuery",
                                str(e).splitlines()[0])}
    return {"kinds": kinds, "rows": rows}

  # ---- the REST resources -------------------------------------------------------

  def job_resource(self, job_id: str) -> dict:
    job = self._jobs.get(job_id)
    if job is None:
      raise ApiError(404, "notFound", f"Not found: Job {self.project}:"
                     f"{LOCATION}.{job_id}")
    status: dict = {"state": "DONE"}
    if "error" in job["result"]:
      e = job["result"]["error"]
      status["errorResult"] = {"reason": e.reason, "message": e.message}
      status["errors"] = [status["errorResult"]]
    now = str(int(job["created"] * 1000))
    return {
        "kind": "bigquery#job", "etag": job_id,
        "id": f"{job['project']}:{LOCATION}.{job_id}",
        "jobReference": self._reference(job),
        "configuration": job["configuration"], "status": status,
        "statistics": {"creationTime": now, "startTime": now, "endTime": now,
                       "query": {"totalBytesProcessed": "0",
                                 "statementType": "SELECT"}}}

  def _reference(self, job) -> dict:
    return {"projectId": job["project"], "jobId": job["id"],
            "location": LOCATION}

  def insert_job(self, project: str, body: dict) -> dict:
    reference = body.get("jobReference") or {}
    job_id = reference.get("jobId") or uuid.uuid4().hex
    query = body["configuration"]["query"]
    self._jobs[job_id] = {
        "id": job_id, "project": project, "created": time.time(),
        "configuration": body["configuration"],
        "result": self.run(query["query"], query.get("queryParameters"))}
    return self.job_resource(job_id)

  def query_results(self, job_id: str, params: dict) -> dict:
    job = self._jobs.get(job_id)
    if job is None:
      raise ApiError(404, "notFound", f"Not found: Job {job_id}")
    result = job["result"]
    if "error" in result:
      raise result["error"]
    out = {"kind": "bigquery#getQueryResultsResponse",
           "jobReference": self._reference(job), "jobComplete": True,
           "cacheHit": False, "totalBytesProcessed": "0"}
    out.update(self._page(result, params))
    return out

  def _page(self, result: dict, params: dict) -> dict:
    """Schema, totalRows and one page of rows (maxResults from startIndex
    or pageToken), with the next pageToken if rows are left."""
    kinds, rows = result["kinds"], result["rows"]
    first = int(params.get("pageToken") or params.get("startIndex") or 0)
    size = params.get("maxResults")
    size = PAGE_ROWS if size in (None, "") else int(size)
    int64 = str(params.get("formatOptions.useInt64Timestamp", "")).lower() \
        == "true"
    page = rows[first:first + size]
    out: dict = {
        "schema": {"fields": [{"name": n, "type": k, "mode": "NULLABLE"}
                              for n, k in kinds]},
        "totalRows": str(len(rows))}
    if size:
      out["rows"] = [{"f": [{"v": cell(v, k, int64)}
                            for v, (_, k) in zip(row, kinds)]}
                     for row in page]
      if first + size < len(rows):
        out["pageToken"] = str(first + size)
    return out

  def query(self, project: str, body: dict) -> dict:
    """jobs.query: a job and its first page in one call."""
    job = self.insert_job(project, {"configuration": {"query": {
        k: v for k, v in body.items() if k not in ("maxResults",
                                                    "formatOptions")}}})
    job_id = job["jobReference"]["jobId"]
    params = {"maxResults": body.get("maxResults")}
    if (body.get("formatOptions") or {}).get("useInt64Timestamp"):
      params["formatOptions.useInt64Timestamp"] = "true"
    return self.query_results(job_id, params)

  def table_data(self, project: str, dataset: str, table: str,
                 params: dict) -> dict:
    """tabledata.list: the table's rows (in DuckDB's order)."""
    self.table_resource(project, dataset, table)  # 404 if not held
    result = self.run(f"SELECT * FROM `{project}.{dataset}.{table}`")
    if "error" in result:
      raise result["error"]
    out = self._page(result, params)
    out.pop("schema")
    out["kind"] = "bigquery#tableDataList"
    return out

  def answer(self, method: str, path: str, params: dict, body: dict):
    """(status, JSON) for one request."""
    self.calls.append((method, path))
    if self.fault == "forbidden":
      raise ApiError(403, "accessDenied", "Access Denied: the caller has "
                     "no role here (the double's fault)")
    if self.fault == "unavailable":
      raise ApiError(503, "backendError", "Service unavailable (the "
                     "double's fault)")
    parts = path[len(API):].strip("/").split("/") if path.startswith(
        API) else []
    if len(parts) < 3 or parts[0] != "projects":
      raise ApiError(404, "notFound", f"no such resource {path}")
    project, rest = parts[1], parts[2:]
    if rest == ["jobs"] and method == "POST":
      return self.insert_job(project, body)
    if rest == ["queries"] and method == "POST":
      return self.query(project, body)
    if len(rest) == 2 and rest[0] == "jobs" and method == "GET":
      return self.job_resource(rest[1])
    if len(rest) == 2 and rest[0] == "queries" and method == "GET":
      return self.query_results(rest[1], params)
    if len(rest) >= 4 and rest[0] == "datasets" and rest[2] == "tables":
      if len(rest) == 4 and method == "GET":
        return self.table_resource(project, rest[1], rest[3])
      if rest[4:] == ["data"] and method == "GET":
        return self.table_data(project, rest[1], rest[3], params)
    raise ApiError(400, "invalid", f"the double does not answer {method} "
                   f"{path}")


class _Handler(http.server.BaseHTTPRequestHandler):
  owner: BigQueryDouble
  protocol_version = "HTTP/1.1"  # keep-alive, as the client pools

  def log_message(self, *args):
    pass

  def _handle(self, method: str):
    url = urllib.parse.urlsplit(self.path)
    params = dict(urllib.parse.parse_qsl(url.query))
    length = int(self.headers.get("Content-Length") or 0)
    raw = self.rfile.read(length) if length else b""
    try:
      body = self.owner.answer(method, url.path, params,
                               json.loads(raw) if raw else {})
      code = 200
    except ApiError as e:
      code, body = e.code, e.body()
    data = json.dumps(body).encode()
    self.send_response(code)
    self.send_header("Content-Type", "application/json; charset=UTF-8")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def do_GET(self):  # noqa: N802
    self._handle("GET")

  def do_POST(self):  # noqa: N802
    self._handle("POST")


def _literal(parameter: dict) -> str:
  kind = parameter["parameterType"]["type"]
  value = (parameter.get("parameterValue") or {}).get("value")
  if value is None:
    return "NULL"
  if kind in ("INT64", "INTEGER", "FLOAT64", "FLOAT", "NUMERIC"):
    return str(value)
  if kind in ("BOOL", "BOOLEAN"):
    return "TRUE" if str(value).lower() == "true" else "FALSE"
  quoted = "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
  return f"TIMESTAMP {quoted}" if kind == "TIMESTAMP" else quoted


def _substitute(text: str, parameters: list) -> str:
  """Named (@name) or positional (?) query parameters as literals."""
  named = {p["name"]: _literal(p) for p in parameters if p.get("name")}
  if named:
    return re.sub(r"@(\w+)", lambda m: named.get(m.group(1), m.group(0)),
                  text)
  positional = iter(_literal(p) for p in parameters)
  return re.sub(r"\?", lambda m: next(positional), text) if parameters \
      else text


@contextlib.contextmanager
def reading(warehouse: Path, table: str = "test-project.city.trips"):
  """A BigQueryWarehouse reading `warehouse` through a double of its own:
  $TAXI_DEMAND_BIGQUERY_ENDPOINT set while the block runs."""
  import pytest  # noqa: PLC0415
  from taxi_demand.data.bigquery import BigQueryWarehouse  # noqa: PLC0415
  from taxi_demand.data.bigquery import ENDPOINT_ENV_VAR  # noqa: PLC0415
  with BigQueryDouble(warehouse, table) as double, \
      pytest.MonkeyPatch.context() as env:
    env.setenv(ENDPOINT_ENV_VAR, double.url)
    with BigQueryWarehouse(double.address) as reader:
      yield reader
