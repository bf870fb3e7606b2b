"""Every example in every --help is a command that works.

Each example line of `taxi-demand`, its commands, runner_local.py and
runner_vertex.py parses with its own parser; the predict examples, which
once asked for a horizon no model serves, run on the test city.
"""

from __future__ import annotations

import re
import shlex

import pytest

import runner_local
import runner_vertex
from taxi_demand import cli

# (how the example starts, the entry point's parse, the help's argv prefixes)
_ENTRIES = {
    "taxi-demand": (cli.build_parser().parse_args,
                    [[]] + [[name] for name in cli.build_parser()._subparsers
                            ._group_actions[0].choices]),
    "python runner_local.py": (runner_local.parse_args, [[]]),
    "python runner_vertex.py": (runner_vertex.parse_args,
                                [[]] + [[a] for a in runner_vertex.ACTIONS]),
}


def _help(capsys, parse, prefix) -> str:
  with pytest.raises(SystemExit) as e:
    parse([*prefix, "--help"])
  assert e.value.code == 0
  return capsys.readouterr().out


def examples(text: str, start: str):
  """The commands in a help text that start with `start`, continuation
  lines joined and comments dropped, as a shell would read them."""
  text = re.sub(r"\\\n", "", text)
  for line in text.splitlines():
    line = line.strip()
    if line.startswith(start + " ") or line == start:
      yield shlex.split(line, comments=True)[len(start.split()):]


def _all_examples(capsys):
  found = []
  for start, (parse, prefixes) in _ENTRIES.items():
    for prefix in prefixes:
      for argv in examples(_help(capsys, parse, prefix), start):
        found.append((start, argv))
  return found


def test_every_help_example_parses(capsys):
  found = _all_examples(capsys)
  assert len(found) > 40  # every command's help has some
  for start, argv in found:
    parse = _ENTRIES[start][0]
    try:
      parse(argv)
    except SystemExit as e:
      raise AssertionError(
          f"{start} {shlex.join(argv)}: {capsys.readouterr().err}") from e


def test_the_predict_examples_run(city_copy, capsys):
  from taxi_demand.serving import registry  # noqa: PLC0415
  version = registry.serving_version(city_copy.models)
  runs = [argv for start, argv in _all_examples(capsys)
          if start == "taxi-demand" and argv[0] == "predict"
          and "--every" not in argv]  # --every runs until Ctrl-C
  assert len(runs) >= 4  # three in predict's help, one in the main one
  for argv in runs:
    # The examples name a version of the reader's home; use the city's.
    argv = [version if re.fullmatch(r"\d{10}", a) else a for a in argv]
    code = cli.main(["--home", str(city_copy.root), *argv])
    err = capsys.readouterr().err
    assert code == 0, f"taxi-demand {shlex.join(argv)}: {err}"
