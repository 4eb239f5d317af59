"""The route stage at scale: query + decision time per utterance (embedding excluded) on the
embedded engine (Qdrant Edge), for route sets of 10 to 10,000 routes.

Each route has one text point and `--exemplars` audio points (random unit vectors from a
deterministic fake model: the stage's cost does not depend on what the vectors mean). The
router is the real one (`voice_router.routing.Router`): two Qdrant queries (text and audio
points, payload-indexed filter on the kind), then per-route aggregation and the decision.
Building the collection is not timed. As `PointBuilder.sync` does, a collection of OPTIMIZE_AT
points or more gets Qdrant's HNSW index built after it (`--optimize`: at every size); smaller
ones are scanned.

    python benchmarks/route_scale.py --routes 10,1000,10000 --json

prints {"results": [{"routes": N, "points": P, "route_ms": {"p50": .., "p95": ..}}, ...]}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voice_router.index import RouteIndex
from voice_router.points import PointBuilder
from voice_router.routes import Route, RouteSet
from voice_router.routing import Router
from voice_router.store import OPTIMIZE_AT, EdgeBackend


class RandomModel:
    """Deterministic random unit vectors for any text or clip (an EmbeddingModel)."""

    name = "random"
    dim = 384
    sample_rate = 16000
    max_seconds = 20.0
    fingerprint = "random0000000000"

    @staticmethod
    def _vec(key: bytes) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(key).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(RandomModel.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vec(t.encode()) for t in texts]) if texts else np.zeros((0, 384))

    def embed_audio(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack([self._vec(np.asarray(a).tobytes()) for a in audios])


def measure(n_routes: int, exemplars: int, queries: int, optimize: bool) -> dict[str, Any]:
    """Build a route set of `n_routes` in a fresh Edge folder; time `queries` decisions."""
    model = RandomModel()
    routes = RouteSet(
        routes=[Route(name=f"r{i}", description=f"command number {i}") for i in range(n_routes)]
    )
    with tempfile.TemporaryDirectory(prefix="vr-scale-") as tmp:
        backend = EdgeBackend(Path(tmp) / "idx")
        index = RouteIndex(backend, dim=model.dim, fingerprint=model.fingerprint, set_id="scale")
        points = PointBuilder(model, exemplar_voices=0)
        points.sync(index, routes)
        t0 = time.perf_counter()
        for i in range(n_routes):  # exemplar points: distinct tiny "clips" per route
            clips = [np.full(4, i * 1000 + j, np.float32) for j in range(exemplars)]
            if clips:
                points.enroll(index, f"r{i}", clips, [f"x{j}" for j in range(exemplars)])
        hnsw = optimize or index.count() >= OPTIMIZE_AT  # as PointBuilder.sync does
        if hnsw:
            index.optimize()
        build_s = time.perf_counter() - t0
        router = Router(routes, model=model, index=index, exemplar_voices=0, dispatch=False)
        rng = np.random.default_rng(0)
        qs = rng.standard_normal((queries, model.dim)).astype(np.float32)
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)
        router.route_vector(qs[0])  # warm-up
        times = []
        for q in qs:
            t = time.perf_counter()
            router.route_vector(q)
            times.append((time.perf_counter() - t) * 1e3)
        points = index.count()
        router.close()
    times.sort()
    return {
        "routes": n_routes,
        "points": points,
        "route_ms": {
            "p50": round(statistics.median(times), 3),
            "p95": round(times[int(0.95 * (len(times) - 1))], 3),
        },
        "hnsw": hnsw,
        "build_s": round(build_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--routes", default="10,1000,10000", help="comma list of route counts")
    ap.add_argument("--exemplars", type=int, default=3, help="audio points per route [3]")
    ap.add_argument("--queries", type=int, default=100, help="timed decisions per size [100]")
    ap.add_argument("--optimize", action="store_true", help="build the HNSW index at every size")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    results = []
    for n in (int(x) for x in a.routes.split(",")):
        r = measure(n, a.exemplars, a.queries, a.optimize)
        results.append(r)
        if not a.json:
            ms = r["route_ms"]
            print(f"{n:>6} routes, {r['points']:>6} points: p50 {ms['p50']:.2f} ms, "
                  f"p95 {ms['p95']:.2f} ms (built in {r['build_s']} s)", flush=True)  # fmt: skip
    if a.json:
        print(json.dumps({"results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
