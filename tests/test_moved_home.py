"""A home copied, moved or restored from a backup answers from its own files.

ML Metadata records absolute paths; a copied home read the original's
schema and statistics, and failed once the original was gone."""

import json
import shutil

import pytest

from taxi_demand import cli
from taxi_demand.home import Home
from taxi_demand.lineage import store

pytestmark = pytest.mark.slow


def _paths_in(value):
  """Every string in a JSON value that looks like an absolute path."""
  if isinstance(value, dict):
    return [p for v in value.values() for p in _paths_in(v)]
  if isinstance(value, list):
    return [p for v in value for p in _paths_in(v)]
  return [value] if isinstance(value, str) and value.startswith("/") else []


def test_a_copied_home_answers_from_its_own_files_once_the_original_is_gone(
    standalone_city_home, serving_log_tools, tmp_path, capsys):
  original, versions = standalone_city_home
  t = serving_log_tools
  t.log_day(original, versions[-2], t.day)
  gone = str(original.root)
  moved = Home(tmp_path / "restored")
  shutil.copytree(original.root, moved.root)  # files, no link back
  shutil.rmtree(original.root)
  home = ["--home", str(moved.root)]

  # skew: the serving model's schema and training statistics, its own.
  assert cli.main(home + ["skew", "--date", t.day.isoformat(), "--json"]) == 0
  out = json.loads(capsys.readouterr().out)
  for key in ("training_statistics_uri", "schema_uri"):
    assert out[key].startswith(f"{moved.pipeline_root}/"), out[key]

  # lineage: every path it names is under the moved home.
  assert cli.main(home + ["lineage", "serving", "--json"]) == 0
  paths = _paths_in(json.loads(capsys.readouterr().out))
  assert paths and all(p.startswith(f"{moved.root}/") for p in paths), paths
  snap = store.load(moved.metadata)
  assert all(not a.uri.startswith(gone) for a in snap.artifacts.values())

  # report: its page names no path of the old home.
  assert cli.main(home + ["report", "--out", str(tmp_path / "out")]) == 0
  capsys.readouterr()
  page = (tmp_path / "out" / "index.html").read_text()
  assert gone not in page and f"{moved.pipeline_root}/" in page
