"""Google Cloud addresses and failures, in one place for every backend.

`gs://BUCKET[/PREFIX]` names a store root (the model registry, the served
log) and `bq://PROJECT.DATASET.TABLE` a trips table. Both parse here, and
whatever a Google client raises becomes one line here: missing credentials,
a permission or a table that is not there, a transient error whose retries
ran out. Standard library only at import: the client libraries cost about a
second, and `--help` and bad addresses must not wait for them.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Union

from taxi_demand.errors import TaxiDemandError

GS_SCHEME = "gs://"
BQ_SCHEME = "bq://"
# Seconds a call may spend retrying transient errors (429, 500, 503, resets)
# before it fails in one line; tests shorten it.
RETRY_ENV_VAR = "TAXI_DEMAND_CLOUD_RETRY_S"
DEFAULT_RETRY_S = 60.0

# Bucket names: 3-63 characters (222 with dots), lowercase letters, digits,
# dashes, underscores and dots, starting and ending with a letter or digit.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
# BigQuery: project ids (with an optional domain:), dataset and table names.
_PROJECT = re.compile(r"(?:[a-z][a-z0-9.-]*:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,1023}")


@dataclasses.dataclass(frozen=True)
class GcsAddress:
  """gs://bucket/prefix, the prefix without leading or trailing slashes."""

  bucket: str
  prefix: str = ""

  def __str__(self) -> str:
    return f"{GS_SCHEME}{self.bucket}" + (f"/{self.prefix}" if self.prefix
                                          else "")

  def child(self, name: str) -> "GcsAddress":
    return GcsAddress(self.bucket, f"{self.prefix}/{name}".strip("/"))


@dataclasses.dataclass(frozen=True)
class BigQueryTable:
  """bq://project.dataset.table."""

  project: str
  dataset: str
  table: str

  def __str__(self) -> str:
    return f"{BQ_SCHEME}{self.project}.{self.dataset}.{self.table}"

  @property
  def qualified(self) -> str:
    """project.dataset.table, as BigQuery SQL names it in backticks."""
    return f"{self.project}.{self.dataset}.{self.table}"


def is_gcs(location: Union[str, os.PathLike, None]) -> bool:
  return isinstance(location, (str, GcsAddress)) and str(location).startswith(
      GS_SCHEME)


def is_bigquery(location: Union[str, os.PathLike, None]) -> bool:
  return isinstance(location, (str, BigQueryTable)) and str(
      location).startswith(BQ_SCHEME)


def parse_gcs(text: str, what: str = "store") -> GcsAddress:
  """gs://BUCKET[/PREFIX] -> GcsAddress, or one line naming what is wrong."""
  raw = str(text).strip()
  if not raw.startswith(GS_SCHEME):
    raise TaxiDemandError(f"bad {what} address {text!r}: expected "
                          "gs://BUCKET[/PREFIX]")
  bucket, _, prefix = raw[len(GS_SCHEME):].partition("/")
  prefix = prefix.strip("/")
  if not _BUCKET.fullmatch(bucket) or ".." in bucket:
    raise TaxiDemandError(
        f"bad {what} address {text!r}: {bucket!r} is not a bucket name "
        "(3-222 lowercase letters, digits, '-', '_' or '.')")
  if "//" in prefix or any(c in prefix for c in "\r\n#[]*?") or any(
      part in (".", "..") for part in prefix.split("/")):
    raise TaxiDemandError(
        f"bad {what} address {text!r}: the path after the bucket may not "
        "hold empty, '.' or '..' parts, wildcards, '#' or line breaks")
  return GcsAddress(bucket, prefix)


def parse_bigquery(text: str, what: str = "warehouse") -> BigQueryTable:
  """bq://PROJECT.DATASET.TABLE -> BigQueryTable, or one line."""
  raw = str(text).strip()
  body = raw[len(BQ_SCHEME):] if raw.startswith(BQ_SCHEME) else None
  # The project may hold dots after a domain (example.com:project).
  parts = body.rsplit(".", 2) if body else []
  if len(parts) != 3 or not _PROJECT.fullmatch(parts[0]) or not all(
      _NAME.fullmatch(p) for p in parts[1:]):
    raise TaxiDemandError(
        f"bad {what} address {text!r}: expected bq://PROJECT.DATASET.TABLE "
        "(a project id, then dataset and table names of letters, digits "
        "and '_')")
  return BigQueryTable(*parts)


def retry_deadline() -> float:
  """Seconds of retries a transient error gets ($TAXI_DEMAND_CLOUD_RETRY_S)."""
  raw = os.environ.get(RETRY_ENV_VAR)
  if not raw:
    return DEFAULT_RETRY_S
  try:
    value = float(raw)
  except ValueError:
    raise TaxiDemandError(f"bad ${RETRY_ENV_VAR} {raw!r}: expected seconds"
                          ) from None
  if value < 0:
    raise TaxiDemandError(f"bad ${RETRY_ENV_VAR} {raw!r}: expected seconds "
                          ">= 0")
  return value


def one_line(error: BaseException, what: str) -> TaxiDemandError:
  """What a Google client raised about `what` (an address), as one line.

  Names the cause a person can act on: credentials, a permission, a missing
  bucket or table, retries that ran out. Anything else keeps its first line.
  """
  from google.api_core import exceptions as api  # noqa: PLC0415
  from google.auth import exceptions as auth  # noqa: PLC0415
  first = _first_line(error)
  if isinstance(error, auth.DefaultCredentialsError):
    why = ("no Google Cloud credentials found: run `gcloud auth "
           "application-default login`, or run as a service account")
  elif isinstance(error, auth.RefreshError):
    why = f"the Google Cloud credentials were refused: {first}"
  elif isinstance(error, api.Forbidden):
    why = ("permission denied (the account lacks a role on it; README: "
           f"Run on Google Cloud): {first}")
  elif isinstance(error, api.Unauthorized):
    why = f"not authorized: {first}"
  elif isinstance(error, api.NotFound):
    why = f"not found: {first}"
  elif isinstance(error, api.RetryError) or isinstance(
      error, (api.TooManyRequests, api.ServerError, api.ServiceUnavailable)):
    cause_line = _first_line(getattr(error, "cause", None) or error)
    why = (f"still failing after {retry_deadline():g} s of retries "
           f"(${RETRY_ENV_VAR}): {cause_line}")
  elif isinstance(error, (ConnectionError, OSError)):
    why = f"cannot reach Google Cloud: {first}"
  else:
    why = first
  return TaxiDemandError(f"{what}: {why}")


def _first_line(error: BaseException) -> str:
  """What an error says, without the request line a person cannot act on.

  A Google API error's text starts with its method and URL ("403 GET
  https://...: Access Denied: ..."); the error's own first message is the
  part that names the cause.
  """
  details = getattr(error, "errors", None) or []
  said = details[0].get("message") if details and isinstance(
      details[0], dict) else None
  code = getattr(error, "code", None)
  if said:
    text = f"{int(code)} {said}" if isinstance(code, int) else said
  else:
    text = str(error)
  return (text.strip().splitlines() or [type(error).__name__])[0]
