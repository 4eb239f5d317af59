"""One step of Whisper tiny.en's decoder, as the slot stage's beam search takes it: the int8
ONNX Runtime graph (the default) against the exact float32 numpy step, per beam width.

    python benchmarks/decoder_step.py [--repeats 50] [--json]

One thread; the step of each row after 8 tokens of cache, against 150 encoder frames (3 s);
prints the median and p95 in ms per (output, beam width).
"""

from __future__ import annotations

import argparse
import json
import os
import time

for var in ("VOICE_ROUTER_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    from voice_router.model.whisper_decoder import WhisperDecoder

    frames = np.random.default_rng(0).standard_normal((150, 384)).astype(np.float32)
    out: dict[str, dict[str, float]] = {}
    for output in ("int8", "float32"):
        dec = WhisperDecoder.load(output=output)
        cross = dec.cross(frames)
        for beam in (1, 5):
            cache = None
            for t in range(8):
                _, cache = dec.next_log_probs(np.full((beam, 1), 383 + t), cross, cache)
            times = []
            for _ in range(a.repeats):
                t0 = time.perf_counter()
                dec.next_log_probs(np.full((beam, 1), 318), cross, cache)
                times.append((time.perf_counter() - t0) * 1e3)
            out[f"{output} beam {beam}"] = {
                "p50": round(float(np.median(times)), 2),
                "p95": round(float(np.percentile(times, 95)), 2),
            }
            if not a.json:
                print(f"{output:>8} beam {beam}: p50 {out[f'{output} beam {beam}']['p50']} ms")
    if a.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
