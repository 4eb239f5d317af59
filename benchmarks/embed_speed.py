"""Embedding speed on CPU: milliseconds for one 3 s clip, torch threads = 2 (by default).

Measures each stage of a whole model (`--model`: "default" = the bundled model; a config name
such as "compact" or "tiny" with its trainable parts at their initial values; or a saved model
folder), then the whole `embed_audio` path (numpy in, normalised vector out) through torch and,
where the folder has them, through its ONNX Runtime audio graphs (`--frontend`: also the
speech_embedding front-end alone). Prints the median and the minimum:
on a shared machine the minimum is the better estimate of the uncontended cost, and the
load average is printed so a reader can judge the medians.

Run: .venv/bin/python benchmarks/embed_speed.py [--model default|compact|tiny|PATH] [--repeats 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def timings_ms(fn: Callable[[], object], repeats: int, warmup: int = 5) -> tuple[float, float]:
    """(median, min) wall time of fn() in milliseconds after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default="default",
        help="default (bundled), a config name (compact, tiny) or a saved model folder",
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--frontend", action="store_true", help="also time the speech_embedding front-end alone"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from voice_router.model.config import named_config
    from voice_router.model.embedder import AudioTextEmbedder, load_embedder
    from voice_router.model.speech_embedding import load_speech_embedding_frontend
    from voice_router.model.torch_runtime import TorchEmbeddingModel

    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal(int(16000 * args.seconds))).astype(np.float32)
    wave = torch.from_numpy(clip)[None]  # (1, S)
    print(
        f"threads={args.threads} clip={args.seconds:g}s repeats={args.repeats} "
        f"cpus={os.cpu_count()} load average={os.getloadavg()[0]:.2f}"
    )

    def show(label: str, fn: Callable[[], object]) -> None:
        med, best = timings_ms(fn, args.repeats)
        print(f"{label:<44} median {med:8.2f} ms   min {best:8.2f} ms")

    if args.frontend:
        fe = load_speech_embedding_frontend()
        with torch.inference_mode():
            show("front-end: melspec", lambda: fe.melspec(wave))
            show("front-end: melspec + embedding", lambda: fe(wave))

    from voice_router.model.catalog import DEFAULT_WEIGHTS

    if args.model == "default":  # the bundled, trained model
        model = load_embedder(DEFAULT_WEIGHTS)
    elif Path(args.model).is_dir():
        model = load_embedder(args.model)
    else:
        model = AudioTextEmbedder(named_config(args.model)).eval()
    wrapped = TorchEmbeddingModel(model)
    with torch.inference_mode():
        frames, lengths = model.audio_frames([clip])  # (1, T, Da)
        h, hl = model.prenet(frames, lengths)
        x, mask = model._wrap_audio(model.projector(h), hl)  # backbone path only
        print(f"model {model.config.name}: audio_path={model.config.audio_path}")
        show(f"{model.config.name}: audio encoder", lambda: model.audio_frames([clip]))
        show(
            f"{model.config.name}: prenet + projector",
            lambda: model.projector(model.prenet(frames, lengths)[0]),
        )
        if model.config.audio_path == "backbone":
            show(
                f"{model.config.name}: backbone ({x.shape[1]} positions)",
                lambda: model.backbone(inputs_embeds=x, attention_mask=mask),
            )
        show(f"{model.config.name}: encode_frames", lambda: model.encode_frames(frames, lengths))
    show(
        f"{model.config.name}: whole embed_audio, torch (numpy in/out)",
        lambda: wrapped.embed_audio([clip]),
    )
    folder = DEFAULT_WEIGHTS if args.model == "default" else Path(args.model)
    from voice_router.model.loader import load_model
    from voice_router.model.onnx_model import has_onnx

    if folder.is_dir() and has_onnx(folder):  # the default runtime: ONNX Runtime, no PyTorch
        os.environ["VOICE_ROUTER_THREADS"] = str(args.threads)
        onnx = load_model(str(folder), runtime="onnx")
        show(
            f"{model.config.name}: whole embed_audio, ONNX Runtime (the default runtime)",
            lambda: onnx.embed_audio([clip]),
        )


if __name__ == "__main__":
    main()
