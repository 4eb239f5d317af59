"""One query for both point kinds against one filtered query per kind, on one collection.

Large route sets are routed with ONE Qdrant query without a filter (the best TEXT_HITS +
AUDIO_HITS points of either kind, `voice_router.routing.Router._query`); before, they took one
query per point kind, each filtered on the kind. This builds one Qdrant Edge collection of
`--routes` routes (one text and three exemplar points each, random vectors, as
benchmarks/route_scale.py does), then, in one process and interleaved over `--rounds`:

- times the route stage (query + decision) of both strategies on random unit queries;
- counts, over utterances NEAR a route (its text and mean exemplar vector plus Gaussian noise
  of `--noise` per dimension), how often each strategy's nearest route is the exact one (the
  numpy oracle, `Router.score_matrix`, which reads every vector).

    python benchmarks/route_query_ab.py --routes 10000 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from route_scale import RandomModel  # noqa: E402

from voice_router import scoring  # noqa: E402
from voice_router.index import RouteIndex  # noqa: E402
from voice_router.point_schema import KIND_AUDIO, KIND_TEXT  # noqa: E402
from voice_router.points import PointBuilder  # noqa: E402
from voice_router.routes import Route, RouteSet  # noqa: E402
from voice_router.routing import Router  # noqa: E402
from voice_router.store import EdgeBackend  # noqa: E402


class PerKindScorer(scoring.RouteScorer):
    """The former strategy: one query per point kind, each filtered on the kind."""

    def _query(self, q: np.ndarray, with_audio: bool) -> Any:
        text, t_floor = self.hits(q, KIND_TEXT, scoring.EXACT_TEXT_POINTS, scoring.TEXT_HITS)
        audio, a_floor = self.hits(q, KIND_AUDIO, scoring.EXACT_AUDIO_POINTS, scoring.AUDIO_HITS)
        return text, t_floor, audio, a_floor


def _p50(router: Router, queries: np.ndarray) -> float:
    times = []
    for q in queries:
        t = time.perf_counter()
        router.route_vector(q)
        times.append((time.perf_counter() - t) * 1e3)
    return round(statistics.median(times), 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--routes", type=int, default=10000, help="routes in the set [10000]")
    ap.add_argument("--queries", type=int, default=200, help="timed random queries [200]")
    ap.add_argument("--near", type=int, default=100, help="utterances near a route [100]")
    ap.add_argument("--noise", type=float, default=0.05, help="noise per dimension [0.05]")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds [3]")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)

    model = RandomModel()
    n = a.routes
    routes = RouteSet(
        routes=[Route(name=f"r{i}", description=f"command number {i}") for i in range(n)]
    )
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="vr-ab-") as tmp:
        index = RouteIndex(EdgeBackend(Path(tmp) / "idx"), dim=model.dim,
                           fingerprint=model.fingerprint, set_id="ab")  # fmt: skip
        points = PointBuilder(model, exemplar_voices=0)
        points.sync(index, routes)
        exemplar = {}
        for i in range(n):
            clips = [np.full(4, i * 1000 + j, np.float32) for j in range(3)]
            exemplar[i] = clips
            points.enroll(index, f"r{i}", clips, [f"x{j}" for j in range(3)])
        index.optimize()
        one = Router(routes, model=model, index=index, exemplar_voices=0, dispatch=False)
        per_kind = Router(routes, model=model, index=index, exemplar_voices=0, dispatch=False)
        per_kind.scorer = PerKindScorer(index, routes.names, per_kind.fusion)
        qs = rng.standard_normal((a.queries, model.dim)).astype(np.float32)
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)
        near = []
        for i in rng.choice(n, a.near, replace=False):
            v = model.embed_text([f"command number {i}"])[0]
            v = v + model.embed_audio(exemplar[int(i)]).mean(0)
            v = v + a.noise * rng.standard_normal(model.dim).astype(np.float32)
            near.append(v / np.linalg.norm(v))
        near_q = np.asarray(near, np.float32)  # (near, D)
        names, oracle = one.score_matrix(near_q)  # (near, R) every stored vector
        truth = [names[int(k)] for k in oracle.argmax(1)]
        one.route_vector(qs[0])
        per_kind.route_vector(qs[0])  # warm-up
        rounds = []
        for _ in range(a.rounds):
            rounds.append({"per_kind_ms": _p50(per_kind, qs), "one_query_ms": _p50(one, qs)})
        agree = {
            name: sum(r.route_vector(q).nearest == t for q, t in zip(near_q, truth, strict=True))
            for name, r in (("per_kind", per_kind), ("one_query", one))
        }
        points = index.count()
        one.close()
    out = {
        "routes": n,
        "points": points,
        "route_ms_p50_rounds": rounds,
        "near_utterances": a.near,
        "noise": a.noise,
        "nearest_agrees_with_oracle": agree,
    }
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        for r in rounds:
            print(f"p50 per-kind {r['per_kind_ms']:.2f} ms, one query {r['one_query_ms']:.2f} ms")
        print(f"nearest route = exact on {agree['one_query']} (one query) vs "
              f"{agree['per_kind']} (per kind) of {a.near} utterances near a route")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
