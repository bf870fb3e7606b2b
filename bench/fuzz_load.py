"""Fuzz `taxi-demand load` with hostile files: nothing lost, nothing forged.

Usage: python bench/fuzz_load.py --json [--seed S] [--files N] [--workdir DIR]

Generates N files (default 300) into a temporary folder: random bytes,
empty files, broken CSV (unterminated quotes, wrong field counts, NUL
bytes, invalid UTF-8, mixed line breaks), extreme and non-finite values,
wrong types, impossible timestamps, UTC offsets, Parquet with odd types,
truth and probe files, copies of trips written another way, all under
hostile names (newlines, glob characters, quotes, terminal escapes,
unicode). Each is loaded through `taxi_demand.cli.main(["load", ...])`
into one home, one at a time, and after each load it checks:

* the exit code is 0, or 1 with exactly one line on stderr;
* no output line says "unexpected", and no line starts with a forged
  "read "/"taxi-demand " line from a file name;
* nothing is lost: read == loaded + quarantined (trips and probes), and
  the `trips`, `probes` and `quarantine` tables grew by exactly that;
* a refused file changes no table.

Prints one JSON object: counts of files loaded, refused and skipped,
rows read, loaded and quarantined by rule, refusals by reason, the
problems found (none expected) and the time taken. Exit 1 if any.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere

TRIP_HEADER = ["unique_key", "taxi_id", "trip_start_timestamp",
               "trip_end_timestamp", "trip_seconds", "trip_miles",
               "pickup_community_area", "pickup_latitude", "pickup_longitude",
               "fare", "tips", "company"]
PROBE_HEADER = ["vehicle_id", "ping_timestamp", "latitude", "longitude",
                "occupied", "community_area"]

# Names a careless user or an attacker might give a file ({i} keeps each
# one apart from the others).
NAMES = ["t[{i}].csv", "*{i}.csv", "?{i}.csv", "{{a,b}}{i}.csv",
         "evil\ntaxi-demand load: all good {i}.csv",
         "read 99  loaded 99  quarantined 0\n{i}.csv",
         "quote'\"{i}.csv", "\x1b[2K\x1b[31mred{i}.csv", "tab\t{i}.csv",
         "ünïcødé ©{i} 数据.csv", "\u2028line-sep{i}.csv",
         " lead{i}.csv",
         "back\\slash{i}.csv", "semi;colon{i}.csv", "plain{i}.csv",
         "trips{i}.parquet", "truth-{i}.parquet", "[{i}]*.parquet",
         "evil\n{i}.parquet", "%s{i}%n.csv", "-dash{i}.csv",
         "${{HOME}}{i}.csv", "null\x7f{i}.csv"]

TIMESTAMPS = ["2024-01-07 10:05:00", "2024-01-07 10:05:00 UTC",
              "1704621900", "01/07/2024 10:05:00 AM",
              "2024-01-07T10:05:00+05:00", "2024-01-07T10:05:00-06:00",
              "2024-01-07 10:05:00+00", "1900-01-01 00:00:00",
              "2100-01-01 00:00:00", "99999999999", "-99999999999",
              "999999999999999", "infinity", "-infinity", "NaN", "",
              "2024-02-30 10:00:00", "0", "yesterday", "2024-01-07",
              "5138-11-16 00:00:00", "1200-01-01 (BC) 00:00:00",
              "2024-01-07 25:61:61", "2024-01-07 10:05:00 America/Chicago"]
NUMBERS = ["600", "1.5", "0", "-1", "-0.0", "8.0", "08", "1e308", "-1e308",
           "1e-320", "NaN", "nan", "inf", "-inf", "Infinity", "", "abc",
           "9" * 40, "0x10", "1,5", "1_000", " 7 ", "true", "\u0663",
           "12.5e2", "-9223372036854775809", "9223372036854775808"]
AREAS = ["8", "32", "77", "0", "78", "-1", "8.5", "8.0", "", "abc", "1e3",
         "NaN"]
LATS = ["41.8993", "41.9", "", "0", "NaN", "inf", "91", "-87.63", "abc"]
LONS = ["-87.6330", "-87.63", "", "0", "NaN", "-inf", "181", "41.9"]
TEXT = ["Flash Cab", "", "O'Hare \"Taxi\"", "comma, inc", "line\nbreak",
        "ünï©ødé", "\x1b[31mred", "=cmd|' /C calc'!A0", "x" * 3000,
        "tab\there", "\\N", "NULL"]


def _csv_field(value: str) -> str:
  if any(c in value for c in ',"\n\r'):
    return '"' + value.replace('"', '""') + '"'
  return value


def _trip_row(rng: random.Random, i: int) -> list[str]:
  return [rng.choice([f"k{i}", f"k{i % 7}", "", " ", f"k{i}\u00a0"]),
          rng.choice(["taxi1", "", "t\n2"]),
          rng.choice(TIMESTAMPS), rng.choice(TIMESTAMPS),
          rng.choice(NUMBERS), rng.choice(NUMBERS), rng.choice(AREAS),
          rng.choice(LATS), rng.choice(LONS), rng.choice(NUMBERS),
          rng.choice(NUMBERS), rng.choice(TEXT)]


def _good_trip(rng: random.Random, i: int) -> list[str]:
  minute = rng.randrange(0, 60 * 24 * 3)
  return [f"g{i}-{minute}", "taxi1",
          f"2024-01-{7 + minute // 1440:02d} {minute // 60 % 24:02d}:"
          f"{minute % 60:02d}:00", "", "600", "1.5",
          str(rng.randrange(1, 78)), "41.8993", "-87.6330", "9.25", "",
          "Flash Cab"]


def _csv_text(header: list[str], rows: list[list[str]], newline="\n") -> str:
  return newline.join(",".join(_csv_field(v) for v in row)
                      for row in [header, *rows]) + newline


# ---- file kinds: each returns the bytes (CSV) or writes Parquet -------------

def _random_bytes(rng, i, path):
  path.write_bytes(rng.randbytes(rng.choice([1, 10, 4096, 70_000])))


def _empty(rng, i, path):
  path.write_bytes(rng.choice([b"", b"\n", b"\xef\xbb\xbf", b"   \n\n"]))


def _hostile_csv(rng, i, path):
  rows = [_trip_row(rng, i * 100 + j) for j in range(rng.randrange(1, 40))]
  rows += [_good_trip(rng, i * 100 + j) for j in range(rng.randrange(0, 5))]
  newline = rng.choice(["\n", "\r\n"])
  data = _csv_text(TRIP_HEADER, rows, newline).encode()
  if rng.random() < 0.2:
    data = b"\xef\xbb\xbf" + data
  path.write_bytes(data)


def _broken_csv(rng, i, path):
  lines = [",".join(TRIP_HEADER).encode()]
  for j in range(rng.randrange(2, 30)):
    row = [_csv_field(v) for v in _good_trip(rng, i * 100 + j)]
    damage = rng.randrange(9)
    if damage == 0:
      row.append("extra")
    elif damage == 1:
      row = row[:3]
    elif damage == 2:
      row[-1] = '"unterminated'
    elif damage == 3:
      row[-1] = 'stray "quote" inside'
    line = ",".join(row).encode()
    if damage == 4:
      line = line.replace(b"Flash", b"Fl\xe9sh")  # latin-1, not UTF-8
    elif damage == 5:
      line = line[:10] + b"\x00" + line[10:]
    elif damage == 6:
      line += b"\r"  # a stray CR: mixed line breaks
    lines.append(line)
  path.write_bytes(b"\n".join(lines) + rng.choice([b"\n", b""]))


def _bad_header(rng, i, path):
  headers = ["a;b;c", "unique_key\ttrip_start_timestamp",
             "trip_start_timestamp,trip_start_timestamp,trip_seconds",
             "trip_start_timestamp,,trip_seconds", "only_one_column",
             '"unterminated,header', ",".join(TRIP_HEADER[:4]),
             "x" * 70_000]
  path.write_text(rng.choice(headers) + "\n1,2,3\n")


def _header_only(rng, i, path):
  path.write_text(",".join(TRIP_HEADER) + rng.choice(["", "\n", "\r\n"]))


def _probes_csv(rng, i, path):
  """Pings, half of them good, the rest hostile."""
  def ping(j):
    if rng.random() < 0.5:
      return [f"v{i}", f"2024-01-07 10:{j % 60:02d}:00", "41.8993",
              "-87.6330", rng.choice(["true", "F", "yes"]), "8"]
    return [rng.choice(["v1", "", " ", f"v{i}"]), rng.choice(TIMESTAMPS),
            rng.choice(LATS), rng.choice(LONS),
            rng.choice(["true", "F", "yes", "maybe", "", "1", "2"]),
            rng.choice(AREAS)]
  rows = [ping(j) for j in range(rng.randrange(1, 25))]
  path.write_text(_csv_text(PROBE_HEADER, rows))


def _rewritten_copy(rng, i, path):
  """Trips already loaded by an earlier file, their numbers written
  another way: every one should come back as duplicate_key."""
  rows = []
  for j in range(rng.randrange(1, 6)):
    row = _good_trip(random.Random(j), j)
    row[0] = ""  # no unique_key: the content key decides
    row[4], row[5], row[9] = "600.0", "1.50", "9.250"
    rows.append(row)
  path.write_text(_csv_text(TRIP_HEADER, rows))


def _odd_parquet(rng, i, path):
  import pyarrow as pa  # noqa: PLC0415
  import pyarrow.parquet as pq  # noqa: PLC0415
  n = rng.randrange(1, 30)

  def pick(*options):
    return rng.choice(options)

  start = pick(
      pa.array([rng.choice(TIMESTAMPS) for _ in range(n)]),
      pa.array([rng.choice([1704621900, 0, -99999999999, 99999999999,
                            2**62, -2**62, None]) for _ in range(n)],
               pa.int64()),
      pa.array([rng.choice([1704621900.5, float("nan"), float("inf"),
                            -1e308, 1e300, None]) for _ in range(n)]),
      pa.array([rng.choice([1704621900, None, 4_000_000_000])
                for _ in range(n)], pa.int64()).cast(pa.timestamp("s")),
      pa.array([1704621900 * 10**6] * n, pa.int64()).cast(
          pa.timestamp("us", tz="UTC")),
      pa.array([19729] * n, pa.int32()).cast(pa.date32()),
      pa.array([True] * n))
  number = lambda: pick(  # noqa: E731
      pa.array([rng.choice([600.0, float("nan"), float("inf"), -1e308,
                            -1.0, None]) for _ in range(n)]),
      pa.array([rng.choice(NUMBERS) for _ in range(n)]),
      pa.array([rng.choice([600, -1, 2**63 - 1, None]) for _ in range(n)],
               pa.int64()),
      pa.array([rng.choice([True, False, None]) for _ in range(n)]),
      pa.array([[1, 2]] * n, pa.list_(pa.int64())))
  columns = {
      "unique_key": pick(pa.array([f"p{i}-{j}" for j in range(n)]),
                         pa.array(list(range(n)), pa.int64()),
                         pa.array([None] * n, pa.string())),
      "trip_start_timestamp": start,
      "trip_seconds": number(), "trip_miles": number(), "fare": number(),
      "pickup_community_area": pick(
          pa.array([rng.choice([8, 0, 78, None]) for _ in range(n)],
                   pa.int64()),
          pa.array([rng.choice([8.0, 8.5, float("nan"), None])
                    for _ in range(n)]),
          pa.array([rng.choice(AREAS) for _ in range(n)])),
      "pickup_latitude": pick(
          pa.array([rng.choice([41.9, float("nan"), None])
                    for _ in range(n)]),
          pa.array([rng.choice(LATS) for _ in range(n)])),
      "pickup_longitude": pa.array([rng.choice([-87.63, float("-inf"), None])
                                    for _ in range(n)]),
      "company": pa.array([{"a": 1}] * n),
  }
  if rng.random() < 0.2:
    del columns[rng.choice(list(columns))]
  pq.write_table(pa.table(columns), path)


def _truth_parquet(rng, i, path):
  """Truth: good (a seeded intensity per area and slot, so files agree),
  conflicting (another intensity for a slot), or broken."""
  import pyarrow as pa  # noqa: PLC0415
  import pyarrow.parquet as pq  # noqa: PLC0415
  slots = [1704621600 + 900 * rng.randrange(8) for _ in range(5)]
  rows = {(a, s): random.Random(a * s).choice([0.5, 1.0, 2.5])
          for a in rng.sample(range(1, 78), 4) for s in slots}
  mode = rng.choice(["good", "good", "conflict", "broken"])
  if mode == "conflict":
    rows[next(iter(rows))] += 1.0
  table = {"community_area": [a for a, _ in rows],
           "slot_start": [s for _, s in rows],
           "intensity": list(rows.values())}
  if mode == "broken":
    column = rng.choice(list(table))
    table[column][0] = rng.choice([None, 0, 2**40, float("nan"), -1.0,
                                   float("inf")])
    if column != "intensity" and isinstance(table[column][0], float):
      table[column][0] = None
  pq.write_table(pa.table(table), path)


KINDS: dict[str, Callable] = {
    "random_bytes": _random_bytes, "empty": _empty,
    "hostile_csv": _hostile_csv, "broken_csv": _broken_csv,
    "bad_header": _bad_header, "header_only": _header_only,
    "probes_csv": _probes_csv, "rewritten_copy": _rewritten_copy,
    "odd_parquet": _odd_parquet, "truth_parquet": _truth_parquet,
}
WEIGHTS = {"hostile_csv": 4, "broken_csv": 3, "odd_parquet": 3}


def generate(folder: Path, files: int, seed: int) -> list[tuple[str, Path]]:
  """(kind, path) of `files` hostile files written under `folder`."""
  rng = random.Random(seed)
  kinds = [k for k in KINDS for _ in range(WEIGHTS.get(k, 1))]
  out = []
  for i in range(files):
    kind = rng.choice(kinds)
    suffix = ".parquet" if kind in ("odd_parquet", "truth_parquet") else \
        rng.choice([".csv", ".csv", ".parquet", ".CSV", ".txt"])
    name = rng.choice(NAMES).format(i=i)
    path = folder / (name.rsplit(".", 1)[0] + suffix)
    KINDS[kind](rng, i, path)
    out.append((kind, path))
  return out


# ---- loading and checking ---------------------------------------------------

def _counts(home: Path) -> dict[str, int]:
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  if not (home / "warehouse.duckdb").exists():
    return {"trips": 0, "probes": 0, "quarantine": 0}
  with Warehouse(home / "warehouse.duckdb", read_only=True) as wh:
    return {t: wh.count(t) for t in ("trips", "probes", "quarantine")}


def _run(argv: list[str]) -> tuple[int, str, str]:
  from taxi_demand import cli  # noqa: PLC0415
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = cli.main(argv)
  return code, out.getvalue(), err.getvalue()


_PREFIX = "taxi-demand load: "


def _reason(line: str, path: Path) -> str:
  """A refusal without its prefix, file name and digits: what to count."""
  from taxi_demand.data.warehouse import shown  # noqa: PLC0415
  text = line.removeprefix(_PREFIX).removeprefix(f"{shown(path)}: ")
  return "".join("#" if c in string.digits else c for c in text)[:70]


def check_load(home: Path, path: Path) -> tuple[str, dict, list[str]]:
  """Loads one file; returns (outcome, report or refusal, problems)."""
  before = _counts(home)
  code, out, err = _run(["load", "--home", str(home), "--json", str(path)])
  after = _counts(home)
  grew = {t: after[t] - before[t] for t in after}
  problems = []
  name = repr(path.name)
  for line in (out + err).splitlines():
    if "unexpected" in line:
      problems.append(f"{name}: says unexpected: {line[:200]}")
  # Besides at most one progress line ("load 1/1: NAME", before the file
  # is read), stderr holds the refusal: one line, or nothing.
  lines = err.splitlines()
  progress = [line for line in lines if line.startswith("load 1/1: ")]
  said = [line for line in lines if line not in progress]
  if len(progress) > 1:
    problems.append(f"{name}: {len(progress)} progress lines: {err[:300]!r}")
  if code == 1:
    if len(said) != 1 or out or not said[0].startswith(_PREFIX):
      problems.append(f"{name}: refusal is {len(said)} lines: {err[:300]!r}")
    if any(grew.values()):
      problems.append(f"{name}: refused, yet tables grew {grew}")
    return "refused", {"reason": _reason(said[0] if said else "?", path)}, \
        problems
  if code != 0:
    return "failed", {}, problems + [f"{name}: exit {code}: {err[:300]!r}"]
  if said:
    problems.append(f"{name}: loaded, yet stderr says {err[:300]!r}")
  report = json.loads(out)
  for prefix in ("", "probes_"):
    read, loaded, quarantined = (report[prefix + k] for k in
                                 ("read", "loaded", "quarantined"))
    if read != loaded + quarantined:
      problems.append(f"{name}: {prefix}read {read} != loaded {loaded} + "
                      f"quarantined {quarantined}")
  expected = {"trips": report["loaded"], "probes": report["probes_loaded"],
              "quarantine": report["quarantined"] +
              report["probes_quarantined"]}
  if grew != expected:
    problems.append(f"{name}: tables grew {grew}, report says {expected}")
  return ("skipped" if report["skipped"] else "loaded"), report, problems


def fuzz(files: int, seed: int, workdir: Path) -> dict:
  """Generates and loads `files` hostile files; the figures and problems."""
  began = time.perf_counter()
  folder = workdir / "files"
  folder.mkdir(parents=True, exist_ok=True)
  home = workdir / "home"
  generated = generate(folder, files, seed)
  outcomes = {"loaded": 0, "refused": 0, "skipped": 0, "failed": 0}
  rows = {"read": 0, "loaded": 0, "quarantined": 0, "probes_read": 0,
          "probes_loaded": 0, "probes_quarantined": 0, "truth_rows": 0}
  per_rule: dict[str, int] = {}
  reasons: dict[str, int] = {}
  kinds: dict[str, dict[str, int]] = {}
  problems: list[str] = []
  for kind, path in generated:
    outcome, report, found = check_load(home, path)
    problems += found
    outcomes[outcome] += 1
    kinds.setdefault(kind, {}).setdefault(outcome, 0)
    kinds[kind][outcome] += 1
    if outcome == "refused":
      reasons[report["reason"]] = reasons.get(report["reason"], 0) + 1
    elif outcome in ("loaded", "skipped"):
      for key in rows:
        rows[key] += report[key]
      for rule_map in (report["per_rule"], report["probes_per_rule"]):
        for rule, n in rule_map.items():
          if n:
            per_rule[rule] = per_rule.get(rule, 0) + n
  final = _counts(home)
  if final["trips"] + final["probes"] + final["quarantine"] != \
      rows["read"] + rows["probes_read"]:
    problems.append(f"tables hold {final}, but {rows['read']} trips and "
                    f"{rows['probes_read']} pings rows were read")
  return {
      "files": files, "seed": seed, "outcomes": outcomes, "rows": rows,
      "tables": final, "per_rule": dict(sorted(per_rule.items())),
      "refusals": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
      "kinds": kinds, "problem_count": len(problems),
      "problems": problems[:20],
      "seconds": round(time.perf_counter() - began, 1),
  }


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--json", action="store_true", help="print JSON")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--files", type=int, default=300)
  parser.add_argument("--workdir", default=None,
                      help="keep the files and home here (default: a "
                      "temporary folder, removed)")
  args = parser.parse_args()
  with contextlib.ExitStack() as stack:
    workdir = Path(args.workdir) if args.workdir else Path(
        stack.enter_context(tempfile.TemporaryDirectory(prefix="fuzz-load-")))
    result = fuzz(args.files, args.seed, workdir)
  if args.json:
    print(json.dumps(result))
  else:
    print(json.dumps(result, indent=2))
  return 1 if result["problem_count"] else 0


if __name__ == "__main__":
  sys.exit(main())
