"""Argument errors of every entry point: one line naming the problem, exit 1.

`taxi-demand`, runner_local.py and runner_vertex.py alike; `--help` still
prints the whole help and exits 0. The values are refused as the flags are
parsed, before any command reads the home.
"""

from __future__ import annotations

import pytest

import runner_local
import runner_vertex
from taxi_demand import cli


def _exit_code(main, argv):
  """What `main(argv)` exits with: its return value or its SystemExit."""
  try:
    return main(argv)
  except SystemExit as e:
    return e.code


def _one_line_error(capsys, main, argv):
  """The one stderr line of a refused `main(argv)`; checks exit code 1."""
  code = _exit_code(main, argv)
  out, err = capsys.readouterr()
  assert code == 1, (code, err)
  assert out == "" and len(err.splitlines()) == 1, err
  assert "unexpected" not in err and "Traceback" not in err
  return err.strip()


AT = ["--at", "2024-02-10T08:00"]


@pytest.mark.parametrize("argv, message", [
    (["no-such-command"], "taxi-demand: error: argument COMMAND: invalid "
     "choice: 'no-such-command'"),
    (["load"], "taxi-demand load: error: the following arguments are "
     "required: PATH"),
    (["predict", "--horizon", "x"], "taxi-demand predict: error: argument "
     "--horizon: expected an integer >= 1, got 'x'"),
    (["predict", "--horizon", "0"], "argument --horizon: must be an integer "
     ">= 1, got '0'"),
    (["runs", "--all", "--last", "2"], "taxi-demand runs: error: argument "
     "--last: not allowed with argument --all"),
    (["report", "--last", "2", "--all"], "taxi-demand report: error: argument "
     "--all: not allowed with argument --last"),
    (["runs", "--last"], "taxi-demand runs: error: argument --last: expected "
     "one argument"),
    (["recommend", *AT], "one of the arguments --cell --idle --all-idle is "
     "required"),
    (["predict", "--bogus", "a\nforged line"], "unrecognized arguments: "
     "--bogus a\\nforged line"),
])
def test_taxi_demand_usage_error_is_one_line_exit_1(home, capsys, argv,
                                                    message):
  line = _one_line_error(capsys, cli.main, argv)
  assert message in line
  assert line.endswith("--help)")  # where to read more, on the same line


@pytest.mark.parametrize("argv, flag", [
    (["recommend", *AT, "--cell", "8", "--top", "0"], "--top"),
    (["recommend", *AT, "--cell", "8", "--top", "-3"], "--top"),
    (["recommend", *AT, "--cell", "8", "--speed", "0"], "--speed"),
    (["recommend", *AT, "--cell", "8", "--speed", "nan"], "--speed"),
    (["recommend", *AT, "--cell", "8", "--speed", "inf"], "--speed"),
    (["predict", "--every", "5m", *AT, "--speed", "nan"], "--speed"),
    (["predict", "--every", "5m", *AT, "--speed", "inf"], "--speed"),
    (["predict", "--every", "5m", *AT, "--speed", "-1"], "--speed"),
    (["simulate", "--start", "2024-01-01", "--days", "1", "--seed", "-1",
      "--out", "x"], "--seed"),
])
def test_a_nonsense_number_is_refused_as_it_is_parsed(home, capsys, argv,
                                                      flag):
  line = _one_line_error(capsys, cli.main, argv)
  assert f"error: argument {flag}: must be " in line
  assert not home.root.exists()  # refused before anything was touched


@pytest.mark.parametrize("argv, message", [
    (["--margin", "nan"], "--margin must be a finite number >= 0, got nan"),
    (["--margin", "inf"], "--margin must be a finite number >= 0, got inf"),
    (["--trend-slope", "nan"], "--trend-slope must be a finite number, got "
     "nan"),
])
def test_next_day_refuses_limits_that_never_alert(home, capsys, argv,
                                                  message):
  line = _one_line_error(capsys, cli.main,
                         ["next-day", "--date", "2024-02-08", *argv])
  assert line == f"taxi-demand next-day: {message}"


@pytest.mark.parametrize("argv, message", [
    (["--date"], "runner_local.py: error: argument --date: expected one "
     "argument"),
    (["--train-days", "0"], "argument --train-days: must be an integer "
     ">= 1, got '0'"),
    (["--train-steps", "0"], "argument --train-steps: must be an integer "
     ">= 1"),
    (["--keep-versions", "-1"], "argument --keep-versions: must be an "
     "integer >= 1"),
    (["--grid-metres", "0"], "argument --grid-metres: must be an integer "
     ">= 1"),
    (["--beam-workers", "0"], "argument --beam-workers: must be an integer "
     ">= 1"),
    (["--naive-margin", "nan"], "argument --naive-margin: must be a finite "
     "number, got 'nan'"),
    (["--cell-margin", "inf"], "argument --cell-margin: must be a finite "
     "number"),
    (["--slot-minutes", "7"], "argument --slot-minutes: invalid choice: 7"),
])
def test_runner_local_argument_error_is_one_line_exit_1(tmp_path, capsys,
                                                        argv, message):
  home = tmp_path / "home"
  line = _one_line_error(capsys, runner_local.main,
                         ["--home", str(home), *argv])
  assert message in line and line.startswith("runner_local.py: error: ")
  assert not home.exists()


@pytest.mark.parametrize("argv, message", [
    (["compile", "--dataflow-max-workers", "0"], "runner_vertex.py compile: "
     "error: argument --dataflow-max-workers: must be an integer >= 1, "
     "got '0'"),
    (["submit", "--accelerator-count", "-1"], "argument --accelerator-count: "
     "must be an integer >= 0"),
    (["compile", "--train-days", "x"], "argument --train-days: expected an "
     "integer >= 1, got 'x'"),
    (["--bogus"], "runner_vertex.py: error: unrecognized arguments: --bogus"),
])
def test_runner_vertex_argument_error_is_one_line_exit_1(tmp_path, capsys,
                                                         argv, message):
  out = tmp_path / "p.json"
  line = _one_line_error(capsys, runner_vertex.main,
                         [*argv, "--output", str(out)])
  assert message in line
  assert not out.exists()


@pytest.mark.parametrize("main, argv", [
    (cli.main, ["--help"]),
    (cli.main, ["predict", "--help"]),
    (runner_local.main, ["--help"]),
    (runner_vertex.main, ["submit", "--help"]),
])
def test_help_is_still_the_whole_help_and_exit_0(capsys, main, argv):
  assert _exit_code(main, argv) == 0
  out, err = capsys.readouterr()
  assert out.startswith("usage: ") and len(out.splitlines()) > 10
  assert err == ""


# --- flags default to the dataclasses they fill --------------------------------


def _model_flags(argv=()):
  import argparse  # noqa: PLC0415
  from pipeline import flags  # noqa: PLC0415
  parser = argparse.ArgumentParser()
  flags.add_model_flags(parser)
  return parser, parser.parse_args(list(argv))


def test_runner_flags_left_out_build_the_default_config():
  """No flag given: the config the runners build is PipelineConfig's own
  default, thresholds and query included; --help names each default."""
  from pipeline import flags  # noqa: PLC0415
  from pipeline.config import PipelineConfig  # noqa: PLC0415
  import dataclasses  # noqa: PLC0415
  import types  # noqa: PLC0415
  parser, args = _model_flags()
  built = flags.model_config_kwargs(args)
  default = types.SimpleNamespace(**{
      f.name: f.default if f.default_factory is dataclasses.MISSING
      else f.default_factory() for f in dataclasses.fields(PipelineConfig)})
  for field, value in built.items():
    assert value == getattr(default, field), field
  text = parser.format_help()
  for default_shown in (f"(default {default.train_days})",
                        f"(default {default.keep_versions})",
                        f"(default {default.query.grid_metres})",
                        f"(default {default.thresholds.naive_margin})"):
    assert default_shown in " ".join(text.split()), default_shown


def test_forecast_gate_parameters_default_to_the_thresholds():
  import dataclasses  # noqa: PLC0415
  from pipeline.components import forecast_gate  # noqa: PLC0415
  from pipeline.config import Thresholds  # noqa: PLC0415
  defaults = forecast_gate.ForecastGate.EXECUTOR_SPEC.executor_class._ARG_DEFAULTS
  for field in dataclasses.fields(Thresholds):
    if field.name in defaults:
      assert defaults[field.name] == field.default, field.name


def test_next_day_flags_default_to_its_rules(capsys):
  from taxi_demand.monitoring import nextday  # noqa: PLC0415
  parser = cli.build_parser()
  args = parser.parse_args(["next-day", "--date", "2024-02-10"])
  assert nextday.Rules(margin=args.margin, trend_days=args.trend_days,
                       trend_slope=args.trend_slope) == nextday.Rules()
