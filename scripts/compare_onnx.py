"""ONNX Runtime against PyTorch for a model's audio side, on real clips: agreement and speed.

Copies the model folder to a temporary one, exports its audio graph there (int8 or fp32,
voice_router/model/onnx_audio.py), then embeds the same real clips both ways and prints the
per-clip cosine, top-1 against the route texts of two benchmark sets, and the median time to
embed a 3 s clip on one thread. The model card's ONNX figures come from:

    python scripts/compare_onnx.py --model voice_router/weights/whisper_tiny --onnx int8
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
SETS = (
    (DATA / "rhasspy_en" / "manifest.csv", REPO / "benchmarks/manifests/rhasspy_en.yaml"),
    (
        REPO / "benchmarks/manifests/speech_commands_test.csv",
        REPO / "benchmarks/manifests/speech_commands.yaml",
    ),
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default=str(REPO / "voice_router/weights/whisper_tiny"))
    ap.add_argument("--onnx", choices=["int8", "fp32"], default="int8")
    ap.add_argument("--clips", type=int, default=300, help="clips per set at most")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from voice_router.audio.io import load_audio
    from voice_router.model import load_embedder, load_model
    from voice_router.model.onnx_audio import export_audio_onnx
    from voice_router.routes import load_routes

    with tempfile.TemporaryDirectory() as td:
        folder = Path(td) / "model"
        shutil.copytree(args.model, folder)
        export_audio_onnx(load_embedder(folder), folder, int8=args.onnx == "int8")
        if args.onnx == "int8":
            (folder / "audio.onnx").unlink()
        on = load_model(str(folder))
        os.environ["VOICE_ROUTER_ONNX"] = "0"
        off = load_model(str(folder))
        print(f"ONNX graph: {on.onnx_audio.path.name}")
        for manifest, routes_yaml in SETS:
            with manifest.open(newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if r["label"] != "unknown"][: args.clips]
            clips = [load_audio(manifest.parent / r["path"]) for r in rows]
            routes = load_routes(routes_yaml).routes
            names = np.array([r.name for r in routes])
            text = off.embed_text([r.description for r in routes])  # (R, D)
            a_on, a_off = on.embed_audio(clips), off.embed_audio(clips)  # (N, D)
            cos = (a_on * a_off).sum(1)
            labels = np.array([r["label"] for r in rows])
            t_off = float((names[(a_off @ text.T).argmax(1)] == labels).mean())
            t_on = float((names[(a_on @ text.T).argmax(1)] == labels).mean())
            print(
                f"{manifest.parent.name}/{manifest.name}: {len(rows)} clips, cosine ONNX vs "
                f"torch min {cos.min():.4f} mean {cos.mean():.4f}; top-1 (route text) torch "
                f"{t_off:.3f}, ONNX {t_on:.3f}"
            )
        x = (np.random.default_rng(0).standard_normal(48000) * 0.1).astype(np.float32)
        for m, name in ((off, "torch"), (on, f"ONNX {args.onnx}")):
            times = []
            for _ in range(30):
                t0 = time.perf_counter()
                m.embed_audio([x])
                times.append(time.perf_counter() - t0)
            print(f"{name}: 3 s clip, 1 thread, median {np.median(times[5:]) * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
