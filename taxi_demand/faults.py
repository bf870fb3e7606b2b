"""Crash points: named places where a kill matrix has this process die.

The storage systems people trust most test every crash point on purpose
(SQLite's crash tests simulate a power loss at each write); random kills find
holes only by luck. Each place where dying would leave state half-done calls
`point(NAME)`. With `TAXI_DEMAND_CRASH_AT` naming it, the process sends
itself SIGKILL there: no cleanup, no finally, no flush, as kill -9 or a
power loss. Unset (always, outside the kill matrix), a point costs one
environment lookup.

  TAXI_DEMAND_CRASH_AT=load.inside        die at the first hit
  TAXI_DEMAND_CRASH_AT=servelog.written@3 die at the third hit

The points (POINTS) are named here so that the bench, the tests and the code
agree on them. Standard library only.
"""

from __future__ import annotations

import os
import signal
from typing import Dict

ENV_VAR = "TAXI_DEMAND_CRASH_AT"

POINTS: Dict[str, str] = {
    "load.before": "a load, before its transaction begins",
    "load.inside": "a load, every row written, before COMMIT",
    "load.after": "a load, just after COMMIT, before it reports",
    "servelog.written": "a tick's file written under its hidden name, "
                        "before the rename that publishes it (on Cloud "
                        "Storage: its bytes ready, before the upload)",
    "servelog.published": "a tick's file renamed into place (or uploaded), "
                          "before the tick's next file (or its return)",
    "registry.staged": "a push: the version's files written (locally in "
                       "its hidden folder, on Cloud Storage uploaded), "
                       "before the rename or completion marker that "
                       "publishes it",
    "pusher.moved": "the Pusher: the version renamed into place and "
                    "CURRENT moved, before ML Metadata records the push",
    # The daily run's nodes (pipeline/progress.py CrashPoints).
    "node.start.*": "a pipeline node, as LocalDagRunner starts it",
    "node.inside.*": "a pipeline node, its execution RUNNING in ML Metadata "
                     "and its executor about to run",
    "node.end.*": "a pipeline node, its executor returned, its outputs "
                  "written but not yet published",
}

_hits: Dict[str, int] = {}


def armed() -> str:
  """The point named by TAXI_DEMAND_CRASH_AT ('' when none)."""
  return os.environ.get(ENV_VAR, "")


def point(name: str) -> None:
  """Dies here (SIGKILL) if TAXI_DEMAND_CRASH_AT names this point and hit."""
  spec = os.environ.get(ENV_VAR)
  if not spec:
    return
  wanted, _, nth = spec.partition("@")
  if wanted != name:
    return
  _hits[name] = _hits.get(name, 0) + 1
  if _hits[name] == (int(nth) if nth else 1):
    os.kill(os.getpid(), signal.SIGKILL)


def known(name: str) -> bool:
  """Whether `name` is a point the code has (node points by prefix)."""
  return name in POINTS or any(
      k.endswith("*") and name.startswith(k[:-1]) and len(name) > len(k) - 1
      for k in POINTS)
