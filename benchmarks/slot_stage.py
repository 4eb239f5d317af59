"""The route stage with slots: query + decision + slot resolution per utterance (embedding
excluded) on the embedded engine (Qdrant Edge), for a route set whose routes fill slots.

The set has `--routes` routes; each has two templates over three lists (areas, devices, and a
minutes range of `--range` values), so every route has hundreds of phrasings (one slot varied
at a time). Vectors come from a deterministic fake (random unit vectors per text): the stage's
cost does not depend on what they mean. Each timed utterance is the vector of one phrasing of a
random route, so the router matches a route with slots and resolves them.

    python benchmarks/slot_stage.py --json

prints {"routes": N, "points": P, "route_ms": {"p50": .., "p95": ..}, "slot_accuracy": ..}.
Every timed vector is one of the stored phrasings, so `slot_accuracy` checks the plumbing (the
right route and every slot value come back), not recognition of speech.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from route_scale import RandomModel  # noqa: E402

from voice_router.index import RouteIndex  # noqa: E402
from voice_router.routes import RouteSet  # noqa: E402
from voice_router.routing import Router  # noqa: E402
from voice_router.store import EdgeBackend  # noqa: E402
from voice_router.templates import expand_templates  # noqa: E402

AREAS = ["kitchen", "office", "living room", "bedroom", "hallway", "garage", "bathroom", "attic"]
DEVICES = ["lights", "fan", "heater", "speaker", "blinds", "tv"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--routes", type=int, default=20, help="routes, each with slots [20]")
    ap.add_argument("--range", type=int, default=60, help="values of the minutes list [60]")
    ap.add_argument("--queries", type=int, default=200, help="timed utterances [200]")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    lists = {
        "area": {"values": [{"in": x, "out": x.replace(" ", "_")} for x in AREAS]},
        "device": {"values": [{"in": x, "out": x} for x in DEVICES]},
        "minutes": {"range": {"from": 1, "to": a.range, "step": 1}},
    }
    routes = RouteSet(
        lists=lists,
        routes=[
            {
                "name": f"r{i}",
                "description": f"command number {i}",
                "sentences": [
                    f"command {i} [the] {{area}} {{device}} for {{minutes}} minutes",
                    f"(run|do) command {i} on the {{device}} [in the {{area}}]",
                ],
            }
            for i in range(a.routes)
        ],
    )
    model = RandomModel()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="vr-slots-") as tmp:
        index = RouteIndex(EdgeBackend(Path(tmp) / "idx"), dim=model.dim,
                           fingerprint=model.fingerprint, set_id="s")  # fmt: skip
        router = Router(routes, model=model, index=index, exemplar_voices=0, dispatch=False)
        said = []
        for _ in range(a.queries):
            r = routes.routes[int(rng.integers(len(routes.routes)))]
            ph = expand_templates(r.sentences, lists)
            said.append((r.name, ph[int(rng.integers(len(ph)))]))
        router.route_vector(model.embed_text([said[0][1].text])[0])  # warm-up
        times, right = [], 0
        for name, ph in said:
            v = model.embed_text([ph.text])[0]
            t = time.perf_counter()
            m = router.route_vector(v)
            times.append((time.perf_counter() - t) * 1e3)
            right += (
                m.route == name and {k: s["value"] for k, s in (m.slots or {}).items()} == ph.slots
            )
        points = index.count()
        router.close()
    times.sort()
    out = {
        "routes": a.routes,
        "points": points,
        "route_ms": {
            "p50": round(statistics.median(times), 3),
            "p95": round(times[int(0.95 * (len(times) - 1))], 3),
        },
        "slot_accuracy": round(right / len(said), 4),
    }
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        ms = out["route_ms"]
        print(f"{a.routes} routes with slots, {points} points: p50 {ms['p50']:.2f} ms, p95 "
              f"{ms['p95']:.2f} ms; route and every slot right on {out['slot_accuracy']:.1%} of "
              "phrasings")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
