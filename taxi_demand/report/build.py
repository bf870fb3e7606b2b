"""Builds the report page in two processes, one per core.

This one reads ML Metadata and draws its figures. A worker forked at the
start meanwhile loads DuckDB, then reads the warehouse and the served log
and draws the demand figures. The halves take about as long, so the page
is ready in about half the time (the report's 5-second budget over 100
runs; three processes were slower on two cores). Where fork is not
available, in a process that has loaded TensorFlow (its thread pools do
not survive a fork: a forked child that touches a TensorFlow object, even
to free it, hangs), or with `parallel=False`, both halves run here, one
after the other.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from taxi_demand.report import data
from taxi_demand.report import page
from taxi_demand.report import plots


def _warm_up() -> None:
  """What the demand half loads before it can start: run in the forked
  process while this one reads ML Metadata."""
  import io  # noqa: PLC0415
  from taxi_demand.data import warehouse  # noqa: PLC0415,F401
  from taxi_demand.serving import servelog  # noqa: PLC0415,F401
  import sqlglot  # noqa: PLC0415,F401
  fig = plots._figure(1, 1)  # pylint: disable=protected-access
  fig.add_subplot().set_title("x")  # matplotlib's fonts load on first draw
  fig.savefig(io.StringIO(), format="svg")


def _demand_half(home, rows, params) -> tuple:
  demand, plane, notes = data.gather_demand(home, rows, params)
  holder = data.Report(home="", generated_at="", runs=list(rows),
                       serving=None, checks=[], demand=demand, plane=plane,
                       compare=None)
  return demand, plane, notes, page.svgs(holder, plots.DEMAND_FIGURES)


def build(home, out_dir: Optional[os.PathLike] = None,
          last: Optional[int] = None, compare: Optional[Sequence[str]] = None,
          parallel: bool = True):
  """Gathers, draws and writes the page; returns (Report, its path)."""
  out = Path(out_dir) if out_dir is not None else home.root / "report"
  if not (parallel and "fork" in multiprocessing.get_all_start_methods()
          and "tensorflow" not in sys.modules):
    report = data.gather(home, last=last, compare=compare, with_demand=False)
    figs = page.svgs(report, plots.METADATA_FIGURES)
    demand, plane, notes, more = _demand_half(home, report.runs,
                                              report.params)
  else:
    import matplotlib.figure  # noqa: PLC0415,F401 - before the fork: both draw
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("fork")) as pool:
      pool.submit(_warm_up)  # forks now, before ML Metadata is opened here
      try:
        report = data.gather(home, last=last, compare=compare,
                             with_demand=False)
      except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
      other = pool.submit(_demand_half, home, report.runs, report.params)
      figs = page.svgs(report, plots.METADATA_FIGURES)
      demand, plane, notes, more = other.result()
  report.demand, report.plane = demand, plane
  report.notes.update(notes)
  figs.update(more)
  return report, page.write(report, out, figs)
