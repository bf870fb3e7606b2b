"""The most pickups N taxis could make on a day, knowing every request:
a true upper bound for the fleet simulation (`taxi_demand.fleet`).

The fleet simulation's rules, minute by minute (`fleet.simulate`):
* a passenger appears at the step (minute) that holds its pickup second, in
  its pickup cell, and can be picked up at any step up to its pickup second
  plus the wait limit;
* a taxi idle in that cell at that step may take it; the trip starts at the
  step or at the pickup second, whichever is later, and the taxi is idle
  again in the dropoff cell at the first step after the trip ends;
* an idle taxi may drive to another cell; it is there, idle, at the first
  step after `max(round(minutes x 60), 60)` seconds; one passenger per taxi;
* the taxis start where the simulation starts them (`fleet.start_cells`).

The bound is a linear program over a time-expanded network, solved by
HiGHS (`scipy.optimize.linprog`): a unit of flow is a taxi (so one
passenger per taxi); a node is a cell at a step; arcs wait, drive to
another cell, or carry a passenger from its pickup cell at one of the steps
it may be picked up at to its dropoff cell at the step the trip ends. Each
passenger is carried at most once (one row per passenger), and the program
maximizes the passengers carried. Two ways of keeping it small lose
nothing:
* a cell has a node only at the steps one of its passengers can be picked
  up at: between two, an idle taxi there can only wait;
* drives leave only from a taxi just idle (at the start, or at a dropoff):
  waiting and then driving reaches no cell sooner than driving at once and
  waiting there, since a drive takes the same time at any hour.

Why it is >= what any policy achieves: every day the simulation can play
(whatever the policy decides, and however it matches) is a flow of this
network carrying the same passengers, because each rule above is kept or
relaxed, never tightened:
* matching is free: the program may leave a passenger to a later taxi or
  skip one; the simulation must hand a waiting passenger to the taxi idle
  longest in the cell;
* a taxi may drive at any step, not only when it has just become idle or
  waited `redecide_s`, and anywhere, not only where a policy sends it;
* driving times are the shortest chain of drives (a drive to a cell and on
  from there is allowed, as in the simulation, so the direct time is
  replaced by the shortest chain's when that is shorter: only faster);
* a drive of `depart_every_s` or longer leaves from the last whole
  `depart_every_s` tick at or before the taxi became idle (a taxi idle at
  08:07 drives as if it left at 08:05): it arrives no later than in the
  simulation, so only earlier; this keeps the network's size to one set of
  drives per cell and tick instead of per cell and minute;
* the day is cut into `block_s` blocks (3 hours): each block is its own
  program over the passengers asking in it (with their whole wait, past
  the block's end), and every taxi starts each block after the first free
  and wherever suits it, even one still carrying a passenger of the block
  before; the sum of the blocks is >= the whole day's optimum;
* the program is a linear relaxation: a passenger may be carried in
  fractions. With the one-per-passenger rows the matrix is not a network
  matrix, so its optimum need not be whole; a fractional optimum is still
  >= the best whole one, and `pickups` is its floor.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from taxi_demand import fleet
from taxi_demand import guidance
from taxi_demand.errors import CannotMeasure
from taxi_demand.errors import TaxiDemandError

# Coarse enough to keep a day of 77 cells to about a million drives, fine
# enough that a drive gains under 5 minutes on the simulation.
DEFAULT_DEPART_EVERY_S = 300
# One linear program for a whole day of 20,000 passengers takes HiGHS many
# minutes; three-hour blocks take seconds each, at the price of letting
# every taxi start each block wherever suits it.
DEFAULT_BLOCK_S = 3 * 3600


@dataclasses.dataclass(frozen=True)
class Bound:
  """The upper bound on one day's pickups for a fleet of `taxis`."""
  taxis: int
  passengers: int
  pickups: int              # floor of the linear optimum
  linear_optimum: float     # the program's own value (fractions allowed)
  taxi_hours: float
  arcs: int
  solve_s: float

  @property
  def pickups_per_taxi_hour(self) -> float:
    return self.pickups / self.taxi_hours if self.taxi_hours else 0.0

  def share(self, result: fleet.Result) -> float:
    """A simulated fleet's pickups per taxi-hour as a share of the bound's
    (the same fleet and day, so the same as pickups over pickups)."""
    if result.taxis != self.taxis:
      raise TaxiDemandError(
          f"the bound is for {self.taxis} taxis, the result for "
          f"{result.taxis}")
    return (result.pickups_per_taxi_hour / self.pickups_per_taxi_hour
            if self.pickups else 0.0)

  def to_dict(self):
    return {"taxis": self.taxis, "passengers": self.passengers,
            "pickups": self.pickups,
            "linear_optimum": round(self.linear_optimum, 3),
            "pickups_per_taxi_hour": round(self.pickups_per_taxi_hour, 4),
            "arcs": self.arcs, "solve_s": round(self.solve_s, 1)}


def drive_steps(geometry: guidance.Geometry) -> np.ndarray:
  """(n, n) steps to drive from cell to cell as the simulation counts them
  (`max(round(minutes x 60), 60)` seconds, to the next whole step), then
  the shortest chain of such drives; -1 where no chain reaches."""
  minutes = np.asarray(geometry.minutes, float)
  reachable = np.isfinite(minutes)
  seconds = np.where(reachable, np.round(np.where(reachable, minutes, 0) *
                                         60), 0)
  steps = np.ceil(np.maximum(seconds, fleet.STEP_S) / fleet.STEP_S)
  steps = np.where(reachable, steps, np.inf)
  np.fill_diagonal(steps, 0)
  for k in range(len(steps)):      # Floyd-Warshall: only ever shortens
    steps = np.minimum(steps, steps[:, k:k + 1] + steps[k:k + 1, :])
  return np.where(np.isfinite(steps), steps, -1).astype(np.int64)


class _Arcs:
  """Arcs of the network, appended in blocks: tail, head node, and the
  passenger an arc carries (-1 for none)."""

  def __init__(self):
    self.tails, self.heads, self.carries = [], [], []

  def add(self, tail, head, carries=None):
    tail, head = np.broadcast_arrays(np.asarray(tail, np.int64),
                                     np.asarray(head, np.int64))
    self.tails.append(tail.ravel())
    self.heads.append(head.ravel())
    self.carries.append(np.full(tail.size, -1, np.int64) if carries is None
                        else np.asarray(carries, np.int64).ravel())

  def arrays(self):
    return (np.concatenate(self.tails), np.concatenate(self.heads),
            np.concatenate(self.carries))


def upper_bound(geometry: guidance.Geometry, passengers: fleet.Passengers,
                start: np.ndarray, begin: int, end: int, *,
                wait_limit_s: int = fleet.DEFAULT_WAIT_LIMIT_S,
                depart_every_s: int = DEFAULT_DEPART_EVERY_S,
                block_s: int = DEFAULT_BLOCK_S) -> Bound:
  """The most passengers the taxis at `start` (cell indices, one per
  taxi) could carry from `begin` to `end`, under the simulation's rules
  relaxed as the module docstring says.

  Args:
    geometry: the cells and driving minutes the simulation uses.
    passengers: the day's requests.
    start: each taxi's cell index at `begin` (`fleet.start_cells`).
    begin: first second, a whole step (as for `fleet.simulate`).
    end: the second the day ends.
    wait_limit_s: how long a passenger waits (the simulation's).
    depart_every_s: ticks that long drives leave from (a relaxation).
    block_s: the day is bounded in blocks this long, each with every
      taxi free anywhere at its start (a relaxation; see the module
      docstring).
  """
  import time  # noqa: PLC0415

  if len(start) < 1:
    raise TaxiDemandError("a fleet needs at least one taxi, got 0")
  for name, value in (("depart_every_s", depart_every_s),
                      ("block_s", block_s)):
    if value < fleet.STEP_S or value % fleet.STEP_S:
      raise TaxiDemandError(
          f"{name} must be a whole number of {fleet.STEP_S}-second steps, "
          f"got {value}")
  started = time.perf_counter()
  steps = drive_steps(geometry)
  total, arcs = 0.0, 0
  for b0 in range(begin, end, block_s):
    b1 = min(b0 + block_s, end)
    # A block's passengers keep their whole wait, into the next block's
    # time, except at the day's end, where the simulation stops too.
    horizon = end if b1 == end else min(b1 + wait_limit_s + fleet.STEP_S,
                                        end)
    value, size = _block(passengers, steps,
                         start if b0 == begin else None, len(start), b0, b1,
                         horizon, wait_limit_s,
                         depart_every_s // fleet.STEP_S)
    total, arcs = total + value, arcs + size
  taxis = len(start)
  asked = int(np.sum((passengers.pickup_at >= begin) &
                     (passengers.pickup_at < end)))
  return Bound(taxis=taxis, passengers=asked,
               pickups=int(np.floor(total + 1e-6)), linear_optimum=total,
               taxi_hours=taxis * (end - begin) / 3600, arcs=arcs,
               solve_s=time.perf_counter() - started)


def _block(passengers: fleet.Passengers, steps: np.ndarray,
           start: Optional[np.ndarray], taxis: int, begin: int, end: int,
           horizon: int, wait_limit_s: int, tick: int) -> tuple:
  """(the most passengers picked up in [begin, end) could be carried by
  `taxis` taxis at `start`, or anywhere if None, by `horizon`; arcs)."""
  n = len(steps)
  K = -(-(horizon - begin) // fleet.STEP_S)   # steps 0 .. K-1; K: the end
  asked = np.flatnonzero((passengers.pickup_at >= begin) &
                         (passengers.pickup_at < end))
  at = passengers.pickup_at[asked] - begin
  first = at // fleet.STEP_S
  last = np.minimum((at + wait_limit_s) // fleet.STEP_S, K - 1)
  # A passenger: one carry per step it may be picked up at.
  lags = np.arange(int(np.max(last - first, initial=-1)) + 1)
  ok = first[:, None] + lags[None, :] <= last[:, None]
  who = np.broadcast_to(asked[:, None], ok.shape)[ok]
  step = (first[:, None] + lags[None, :])[ok]
  done = -(-(np.maximum(step * fleet.STEP_S,
                        np.broadcast_to(at[:, None], ok.shape)[ok]) +
             passengers.seconds[who]) // fleet.STEP_S)
  # Nodes. Taxis idle in a cell matter only at the steps a passenger can
  # be picked up there (between two, a taxi can only wait): one node per
  # such cell and step, plus one per cell at the end. A taxi arriving at
  # another step waits for the next one.
  waits = np.unique(np.r_[passengers.pickup[who] * (K + 1) + step,
                          np.arange(n) * (K + 1) + K])

  def idle(c, k):
    """The node of the first carry step in cell c at or after step k."""
    return np.searchsorted(waits, np.asarray(c) * (K + 1) +
                           np.minimum(k, K))
  # Taxis just idle (starting, or at a dropoff before the end): they wait
  # there, or drive once. Waiting and then driving reaches nothing that
  # driving at once and waiting there does not (drives take the same time
  # at any hour), and two drives are no faster than one (drive_steps).
  ended = done < K
  frees = np.unique(np.r_[passengers.dropoff[who[ended]] * K + done[ended],
                          np.arange(n) * K])
  o = len(waits)
  freed = lambda key: o + np.searchsorted(frees, key)  # noqa: E731
  sink = o + len(frees)
  arcs = _Arcs()
  ends = (waits % (K + 1)) == K
  within = np.flatnonzero(~ends)       # a cell's end node waits no further
  arcs.add(within, within + 1)                              # wait
  arcs.add(np.flatnonzero(ends), sink)                      # the end
  free_cell, free_step = frees // K, frees % K
  arcs.add(freed(frees), idle(free_cell, free_step))        # stay
  _drives(arcs, steps, free_cell, free_step, freed(frees), idle, K, tick,
          sink)
  head = np.where(ended, freed(passengers.dropoff[who] * K +
                               np.minimum(done, K - 1)), sink)
  arcs.add(idle(passengers.pickup[who], step), head, carries=who)
  starts = freed(np.arange(n) * K)
  if start is None:       # free to start anywhere: from one source
    source = sink + 1 + n * -(-K // tick)
    arcs.add(source, starts)
    supply_nodes, supply = np.array([source]), np.array([taxis])
  else:
    supply_nodes = np.asarray(starts)
    supply = np.bincount(np.asarray(start, np.int64), minlength=n)
  tails, heads, carries = arcs.arrays()
  return _solve(tails, heads, carries, sink, supply_nodes, supply,
                len(passengers)), len(tails)


def _drives(arcs: _Arcs, steps, free_cell, free_step, free_node, idle, K,
            tick, sink) -> None:
  """Drives from taxis just idle. One shorter than `tick` steps leaves
  exactly when the taxi is idle; a longer one leaves from the last tick at
  or before (arriving earlier: a relaxation), so that all taxis idle in a
  cell between two ticks share one set of drives. It still arrives after
  the taxi was idle, so no drive goes back in time."""
  n = len(steps)
  ticks = -(-K // tick)
  leave = lambda c, t: sink + 1 + c * ticks + t  # noqa: E731
  arcs.add(free_node, leave(free_cell, free_step // tick))
  for d in range(n):
    s = steps[d]
    near = np.flatnonzero((s > 0) & (s < tick))
    mine = free_cell == d
    for c in near:
      arrive = free_step[mine] + s[c]
      ok = arrive < K
      arcs.add(free_node[mine][ok], idle(c, arrive[ok]))
    used = np.unique(free_step[mine] // tick)
    for c in np.flatnonzero(s >= tick):
      arrive = used * tick + s[c]
      ok = arrive < K
      arcs.add(leave(d, used[ok]), idle(c, arrive[ok]))


def _solve(tails, heads, carries, sink, start_nodes, taxis_at,
           n_passengers) -> float:
  """Max passengers carried: flow conservation at every node (the taxis
  enter at their start nodes and leave at the sink), at most one carry
  per passenger. Nodes no arc touches are dropped first.

  HiGHS's interior point method: its dual simplex takes minutes on these
  degenerate network programs where the interior point takes seconds.
  """
  from scipy import optimize  # noqa: PLC0415  (not needed to import fleet)
  from scipy import sparse  # noqa: PLC0415
  used, index = np.unique(np.concatenate([tails, heads, [sink],
                                          start_nodes]), return_inverse=True)
  tail_row, head_row = index[:len(tails)], index[len(tails):2 * len(tails)]
  m, cols = len(used), np.arange(len(tails))
  conservation = sparse.csr_matrix(
      (np.r_[np.ones(len(cols)), -np.ones(len(cols))],
       (np.r_[tail_row, head_row], np.r_[cols, cols])), shape=(m, len(cols)))
  supply = np.zeros(m)
  supply[np.searchsorted(used, start_nodes)] += taxis_at
  supply[np.searchsorted(used, sink)] -= taxis_at.sum()
  carrying = carries >= 0
  once = sparse.csr_matrix(
      (np.ones(int(carrying.sum())), (carries[carrying],
                                      cols[carrying])),
      shape=(n_passengers, len(cols)))
  result = optimize.linprog(-carrying.astype(float), A_ub=once,
                            b_ub=np.ones(n_passengers), A_eq=conservation,
                            b_eq=supply, bounds=(0, None), method="highs-ipm")
  if result.status != 0:
    raise CannotMeasure(f"the fleet's upper bound did not solve: "
                        f"{result.message}")
  return float(-result.fun)


def of_day(day: fleet.Day, taxis: int, *, seed: int = 0,
           start: Optional[np.ndarray] = None, **kwargs) -> Bound:
  """The bound for `taxis` on a `fleet.Day`, started where
  `fleet.simulate` starts them for `seed`."""
  if start is None:
    start = fleet.start_cells(day.passengers, len(day.geometry.cells),
                              taxis, seed)
  return upper_bound(day.geometry, day.passengers, start, day.begin,
                     day.end, **kwargs)
