"""Dump a lake's answers as sorted text, to compare two trees of the product with ``cmp`` (a change must not move them).

    .venv/bin/python -m benchmarks.same_answers findings --lake L --out F   # every finding of a catalog run, as JSON
    .venv/bin/python -m benchmarks.same_answers answers --lake L --out F [-n 60] [--seed 11]
                                                                          # allowed_at + decision_path answers

Run it from each checkout (``PYTHONPATH=<tree>``) on the same lake, then ``cmp`` the two files. Findings are one
JSON line each (keys sorted, evidence included), sorted; answers are the ``repr`` of each ``allowed_at`` and
``decision_path`` for a seeded sample of actions, in sample order. Nothing is written to the lake but its caches.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
from pathlib import Path


def findings(lake: str) -> list[str]:
    from analytics.detect import connect, detect_findings

    return sorted(json.dumps(dataclasses.asdict(f), sort_keys=True, default=str)
                  for f in detect_findings(connect(lake)))


def answers(lake: str, n: int, seed: int) -> list[str]:
    from analytics.allowed import allowed_at
    from analytics.lake import connect
    from analytics.paths import decision_path
    from benchmarks.query_latency import _SAMPLE

    con = connect(lake, cached="memory")
    population = con.execute(_SAMPLE).fetchall()
    out = []
    for actor, t, _action, event_id in random.Random(seed).sample(population, min(n, len(population))):
        out += [repr(allowed_at(con, actor, t)), repr(decision_path(con, event_id))]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.same_answers", description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("findings", "answers"))
    ap.add_argument("--lake", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("-n", type=int, default=60, help="answers: sampled actions (default 60)")
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args(argv)
    lines = findings(a.lake) if a.what == "findings" else answers(a.lake, a.n, a.seed)
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} lines in {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
