"""Embedding speed on CPU: median milliseconds for one 3 s clip, torch threads = 2.

Measures the frozen speech_embedding front-end alone and, where available, the whole
audio -> embedding path of a model (`--model`, default: the compact config with its
trainable parts at their initial values, so no trained weights are needed).

Run: .venv/bin/python benchmarks/embed_speed.py [--model compact|tiny|PATH] [--repeats 50]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 5) -> float:
    """Median wall time of fn() in milliseconds after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="compact", help="config name or model folder")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from voice_router.model.speech_embedding import load_speech_embedding_frontend

    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal(int(16000 * args.seconds))).astype(np.float32)
    wave = torch.from_numpy(clip)[None]  # (1, S)
    fe = load_speech_embedding_frontend()
    with torch.inference_mode():
        ms_mel = median_ms(lambda: fe.melspec(wave), args.repeats)
        ms_fe = median_ms(lambda: fe(wave), args.repeats)
    print(f"threads={args.threads} clip={args.seconds:g}s repeats={args.repeats}")
    print(f"front-end melspec only:          {ms_mel:7.2f} ms median")
    print(f"front-end melspec + embedding:   {ms_fe:7.2f} ms median")

    try:
        from voice_router.model.embedder import build_embedding_model
    except ImportError:
        print("whole model: voice_router.model.embedder not available yet")
        return
    model = build_embedding_model(args.model)
    ms_all = median_ms(lambda: model.embed_audio([clip]), args.repeats)
    print(f"whole model ({model.name}) embed_audio: {ms_all:7.2f} ms median")


if __name__ == "__main__":
    main()
