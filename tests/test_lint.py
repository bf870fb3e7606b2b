"""`make lint`: ruff and mypy run first in `make test`, and catch bugs."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
  return subprocess.run([str(BIN / tool), *args], cwd=REPO, text=True,
                        capture_output=True, timeout=300)


def _recipe(target: str) -> str:
  """The lines of `target`'s recipe in the Makefile, joined."""
  text = (REPO / "Makefile").read_text()
  match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
  assert match, f"no {target} target"
  return match.group(1)


def test_make_test_fails_when_the_lint_fails_before_the_suite_runs():
  """CI runs `make test`: its lint step must gate pytest."""
  test = _recipe("test")
  assert "$(MAKE) --no-print-directory lint; lint=$$?" in test
  assert test.index("exit $$lint") < test.index("pytest")
  lint = _recipe("lint")
  assert "ruff check" in lint and "mypy" in lint


def test_ruff_refuses_an_unused_import_and_an_unmarked_deferred_import(
    tmp_path):
  module = tmp_path / "mutated.py"
  module.write_text('"""A mutation."""\nimport os\n\n\ndef f():\n'
                    '  import json\n  return json\n')
  proc = _run("ruff", "check", "--config", "ruff.toml", "--no-cache",
              str(module))
  assert proc.returncode == 1, proc.stdout
  assert "F401" in proc.stdout and "PLC0415" in proc.stdout, proc.stdout

  module.write_text('"""Fixed."""\n\n\ndef f():\n'
                    '  import json  # noqa: PLC0415\n  return json\n')
  proc = _run("ruff", "check", "--config", "ruff.toml", "--no-cache",
              str(module))
  assert proc.returncode == 0, proc.stdout


def test_mypy_refuses_a_wrong_type_passed_to_our_code(tmp_path):
  module = tmp_path / "mutated.py"
  module.write_text('"""A mutation."""\nfrom taxi_demand import spans\n\n'
                    'spans.start_of("2024-01-01")\n')
  proc = _run("mypy", "--config-file", "mypy.ini", str(module))
  assert proc.returncode == 1, proc.stdout
  assert '[arg-type]' in proc.stdout, proc.stdout


def _conversion():
  spec = importlib.util.spec_from_file_location(
      "deferred_imports", REPO / "tools" / "deferred_imports.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module._convert


def test_the_conversion_writes_each_pylint_spelling_as_ruff_s():
  convert = _conversion()
  deferred = "  import x  # pylint: disable=g-import-not-at-top\n"
  assert convert(deferred) == "  import x  # noqa: PLC0415\n"
  unused = ("  import taxi_demand  # noqa: F401  "
            "pylint: disable=g-import-not-at-top,unused-import\n")
  assert convert(unused) == "  import taxi_demand  # noqa: F401,PLC0415\n"
  top = ("from a import b  # noqa: E402  "
         "pylint: disable=g-import-not-at-top,wrong-import-position\n")
  assert convert(top) == "from a import b  # noqa: E402\n"
  reason = "  import y  # pylint: disable=g-import-not-at-top  (TensorFlow)\n"
  assert convert(reason) == "  import y  # noqa: PLC0415  (TensorFlow)\n"
  assert convert("  # pylint: disable=g-import-not-at-top\n") == ""
  done = "  import z  # noqa: PLC0415\n"
  assert convert(done) == done
