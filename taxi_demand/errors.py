"""Errors that the CLI turns into one line and an exit code."""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_ALERT = 3


class TaxiDemandError(Exception):
  """A user-facing failure: bad input, missing state. Exit code 1."""

  exit_code = EXIT_ERROR


class AlertError(TaxiDemandError):
  """A validation, skew or degradation alert. Exit code 3."""

  exit_code = EXIT_ALERT
