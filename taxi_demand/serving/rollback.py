"""Rollback: serve an earlier blessed version again, recorded in ML Metadata."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from taxi_demand.errors import TaxiDemandError
from taxi_demand.lineage import contract
from taxi_demand.lineage import queries
from taxi_demand.lineage import record
from taxi_demand.lineage.records import BlessingRecord
from taxi_demand.lineage import store
from taxi_demand.serving import registry


def _previous(pushes: List[queries.Push], current: Optional[str],
              kept: List[str]) -> str:
  """The newest kept version pushed before `current`."""
  order = [p.version for p in pushes]
  before = order[:order.index(current)] if current in order else order[:-1]
  candidates = [v for v in before if v in kept and v != current]
  if not candidates:
    raise TaxiDemandError(
        f"no earlier pushed version to roll back to (serving "
        f"{current or 'nothing'}; kept versions: {', '.join(kept) or 'none'})")
  return candidates[-1]


def rollback(home, to_version: Optional[str] = None) -> Dict[str, Any]:
  """Points CURRENT at `to_version` (default: the previous push) and records it.

  Only versions a Pusher pushed count, and a push needs ForecastGate's
  blessing, so only blessed versions can serve. Folders are never touched.

  Returns:
    {"from_version", "to_version", "execution_id", "span"}.
  """
  snap = store.load(home.metadata)
  pushes = queries.pushes(snap)
  current = registry.recorded_version(home.models, home.metadata) or (
      queries.serving_version(snap))
  kept = registry.versions(home.models)
  target = (_previous(pushes, current, kept) if to_version is None
            else queries.push_of(snap, str(to_version)).version)
  push = queries.push_of(snap, target)
  blessing = (queries.blessing_of_model(snap, push.model.id)
              if push.model is not None else None)
  if blessing is not None and not BlessingRecord.read(blessing).blessed:
    raise TaxiDemandError(f"version {target} is not blessed; refusing to "
                          "serve it")
  if target == current:
    raise TaxiDemandError(f"version {target} is already serving")
  registry.resolve(home.models, target)  # its folder must still be kept
  # Effective after the newest push so far: see queries.serving_timeline.
  span = max((e.span for e in queries.serving_timeline(snap)
              if e.span is not None), default=None)
  writable = record.open_writable(home.metadata)
  pushed_model = writable.get_artifacts_by_id([push.pushed_model.id])
  props: Dict[str, Any] = {"from_version": current, "to_version": target}
  if span is not None:
    props["span"] = span
  ids = record.record_execution(writable, contract.ROLLBACK, props,
                                {"pushed_model": pushed_model}, {})
  registry.set_serving(home.models, target, span)
  return {"from_version": current, "to_version": target, "span": span,
          "execution_id": ids["execution_id"]}
