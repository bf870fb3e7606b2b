"""The CLI's fast paths: help and version answer without TensorFlow."""

import subprocess
import sys

from taxi_demand import cli

_NO_TF = (
    "import sys, taxi_demand.cli as c\n"
    "try:\n"
    "  c.main(['--help'])\n"
    "except SystemExit:\n"
    "  pass\n"
    "heavy = [m for m in ('tensorflow', 'tfx', 'apache_beam', 'duckdb') "
    "if m in sys.modules]\n"
    "print('HEAVY=' + ','.join(heavy))\n")


def test_help_does_not_import_tensorflow():
  out = subprocess.run([sys.executable, "-c", _NO_TF], capture_output=True,
                       text=True, check=True).stdout
  assert out.strip().splitlines()[-1] == "HEAVY="


def test_help_runs_as_a_module_and_teaches():
  proc = subprocess.run([sys.executable, "-m", "taxi_demand", "--help"],
                        capture_output=True, text=True, check=True)
  assert "TAXI_DEMAND_HOME" in proc.stdout
  assert "Exit codes" in proc.stdout


def test_keras_2_is_selected_before_tensorflow_loads():
  code = ("import taxi_demand, tensorflow as tf; "
          "print(tf.keras.__name__)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True).stdout
  assert out.strip().startswith("tf_keras")


def test_unknown_command_is_a_usage_error(capsys):
  try:
    cli.main(["no-such-command"])
  except SystemExit as e:
    assert e.code == 1  # one line, as for any bad input (test_arguments)
  else:
    raise AssertionError("argparse accepted an unknown command")
