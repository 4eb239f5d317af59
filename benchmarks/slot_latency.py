"""Where an utterance's time goes, stage by stage, through the real router with the slot stage:
decode, speech gate, embedding, Qdrant search, the constrained decoder's read, and in all.

    python benchmarks/slot_latency.py --routes routes/home.yaml --data MANIFEST.csv [--json]

One thread (VOICE_ROUTER_THREADS=1, BLAS too), no tool called, every clip routed `--repeats`
times after one warm-up pass (the grammar's memo and ONNX Runtime's buffers are warm, as in a
long-running `listen`); prints p50/p95 per stage over all runs, the clips' speech length after
the gate, and how many readings were made. "Decision" is gate + embed + search + read: the time
from a finished utterance to the decision, before any tool runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

for var in ("VOICE_ROUTER_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--routes", required=True, type=Path)
    ap.add_argument("--data", required=True, type=Path, nargs="+", help="manifest CSV(s)")
    ap.add_argument("--limit", type=int, default=None, help="clips per manifest")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="default")
    ap.add_argument("--index", default=None, help="Qdrant Edge folder [a temporary one]")
    ap.add_argument("--exemplar-voices", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    from voice_router.audio.io import load_audio
    from voice_router.evaluate import progress_bar, read_manifest, spread_subset
    from voice_router.routes import load_routes
    from voice_router.routing import Router

    rows = [r for d in a.data for r in spread_subset(read_manifest(d), a.limit)]
    clips = [load_audio(r.path, target_rate=16000) for r in rows]
    stages: dict[str, list[float]] = {}
    speech_s, reads = [], 0
    with tempfile.TemporaryDirectory(prefix="vr-slotlat-") as tmp:
        router = Router(load_routes(a.routes), model=a.model, dispatch=False,
                        index=a.index or str(Path(tmp) / "index"),
                        exemplar_voices=a.exemplar_voices)  # fmt: skip
        try:
            for clip in clips:  # warm-up
                router.route(clip)
            for _ in progress_bar(range(a.repeats), True, "repeats"):
                for clip in clips:
                    m = router.route(clip)
                    for k, v in m.latency_ms.items():
                        stages.setdefault(k, []).append(v)
                    lat = m.latency_ms
                    stages.setdefault("decision", []).append(
                        sum(lat.get(k, 0.0) for k in ("gate", "embed", "search", "read"))
                    )
                    reads += m.reading is not None
            for clip in clips:
                speech = router.speech(clip)
                speech_s.append(0.0 if speech is None else len(speech) / 16000)
        finally:
            router.close()
    out = {
        "routes": str(a.routes),
        "data": [str(d) for d in a.data],
        "clips": len(clips),
        "runs": len(clips) * a.repeats,
        "readings": reads,
        "speech_s_median": round(float(np.median(speech_s)), 2),
        "stages_ms": {
            k: {
                "p50": round(float(np.percentile(v, 50)), 2),
                "p95": round(float(np.percentile(v, 95)), 2),
            }  # fmt: skip
            for k, v in stages.items()
        },
    }
    if not a.json:
        for k, v in out["stages_ms"].items():
            print(f"{k:>9}: p50 {v['p50']:8.2f} ms  p95 {v['p95']:8.2f} ms", file=sys.stderr)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
