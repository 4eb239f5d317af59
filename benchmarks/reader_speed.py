"""Inference time of the readers of training/readers.py on one 3 s clip, one thread.

    python benchmarks/reader_speed.py [--repeats 30] [--seconds 3] [--json]

Rows: the frozen Whisper tiny.en encoder (log-mel + encoder, the part every reader shares), then
each reader on its 150 frames (PyTorch, untrained weights: the cost does not depend on their
values), and the vocab reader with its full 50,256-way softmax instead of the top-64 tokens.
Prints the median and p95 in ms. A reader's embedding time is encoder + reader.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # training/ is not installed: import it from this checkout
    sys.path.insert(0, str(ROOT))


def _times(fn, repeats: int) -> dict[str, float]:  # noqa: ANN001 - a no-argument callable
    fn()  # warm-up
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return {"p50": round(float(np.median(ts)), 2), "p95": round(float(np.percentile(ts, 95)), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--readers", default="head,decoder,decoder-lora,vocab,vocab-lora")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from training.readers import build_reader
    from voice_router.model.whisper import load_bundled_whisper, log_mel

    wave = (0.1 * np.random.default_rng(0).standard_normal(int(16000 * a.seconds))).astype(
        np.float32
    )
    enc = load_bundled_whisper().eval()
    out: dict[str, dict[str, float]] = {}

    def encode() -> torch.Tensor:
        mel, n = log_mel([wave])  # (1, 80, T)
        return enc(mel, n)[0]  # (1, T', 384)

    with torch.inference_mode():
        out["encoder"] = _times(encode, a.repeats)
        frames = encode()
        mask = torch.ones(frames.shape[:2], dtype=torch.bool)  # (1, T')
        rows = [(k, {}) for k in a.readers.split(",")]
        if "vocab" in a.readers.split(","):
            rows.append(("vocab", {"top_k": 0}))
        for kind, kw in rows:
            reader = build_reader(kind, 0, **kw).eval()
            name = kind + (" (full softmax)" if kw.get("top_k") == 0 else "")
            out[name] = _times(lambda r=reader: r(frames, mask), a.repeats)
            out[name]["frames"] = int(frames.shape[1])
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        for name, t in out.items():
            print(f"{name:>24}: p50 {t['p50']:7.2f} ms  p95 {t['p95']:7.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
