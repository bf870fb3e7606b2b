"""tools/bootstrap.sh: a checked Python 3.10, one clear line, no half-built venv."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def checkout(tmp_path):
  """The files bootstrap reads, in a scratch folder."""
  (tmp_path / "tools").mkdir()
  shutil.copy(REPO / "tools" / "bootstrap.sh", tmp_path / "tools")
  for name in ("requirements.lock", "setup.py"):
    shutil.copy(REPO / name, tmp_path)
  return tmp_path


def bootstrap(checkout, **env):
  return subprocess.run(["bash", str(checkout / "tools" / "bootstrap.sh")],
                        capture_output=True, text=True,
                        env={**os.environ, **env}, timeout=120)


def test_a_missing_python_fails_in_one_line_and_builds_nothing(checkout):
  proc = bootstrap(checkout, PYTHON="/nonexistent")
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "Python 3.10" in lines[0], proc.stderr
  assert not (checkout / ".venv").exists()


def test_a_python_of_the_wrong_version_is_refused(checkout, tmp_path):
  fake = tmp_path / "python3.11"
  # Answers like a 3.11 would to the version check: sys.exit(True).
  fake.write_text("#!/bin/sh\nexit 1\n")
  fake.chmod(0o755)
  proc = bootstrap(checkout, PYTHON=str(fake))
  assert proc.returncode == 1
  assert "not a working Python 3.10" in proc.stderr
  assert not (checkout / ".venv").exists()


def test_a_matching_stamp_skips_all_work(checkout):
  key = subprocess.run(
      "cat requirements.lock setup.py | sha256sum | cut -c1-16", shell=True,
      cwd=checkout, capture_output=True, text=True, check=True).stdout.strip()
  (checkout / ".venv").mkdir()
  (checkout / ".venv" / f".installed-{key}").touch()
  proc = bootstrap(checkout)
  assert proc.returncode == 0 and proc.stderr == ""


def test_the_lock_pins_every_package_exactly():
  lines = [line.split("#")[0].strip() for line in
           (REPO / "requirements.lock").read_text().splitlines()]
  reqs = [line for line in lines if line]
  assert reqs and all("==" in r for r in reqs), [r for r in reqs
                                                 if "==" not in r]
  names = {r.split("==")[0].split("[")[0].lower() for r in reqs}
  for pinned in ("tfx", "tensorflow", "apache-beam", "dill", "duckdb",
                 "sqlglot", "pytest", "tf-keras", "kfp"):
    assert pinned in names
