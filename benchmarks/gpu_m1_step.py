"""One real-size M1 training step on a GPU (random weights): step time and peak memory.

M1 = Qwen3-Omni audio tower (0.65B) + Qwen2.5-0.5B backbone (0.49B) + 4.6M projector, built
from training/configs/m1.yaml with `pretrained: false` (nothing is downloaded), trained with
the trainer's own step module (bf16 autocast, gradient checkpointing, AdamW, InfoNCE), on
random 16 kHz noise clips of `--seconds` length paired with short texts.

    python benchmarks/gpu_m1_step.py --batch 16 --seconds 10 --steps 5 --out m1_step.json
    python benchmarks/gpu_m1_step.py --tiny --device cpu --steps 1     (plumbing check on CPU)

Prints (and writes with --out) a JSON object: device, params, batch, seconds, step times
(the first step includes CUDA warm-up and is reported separately), peak memory.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from training import train as T  # noqa: E402
from training.losses import info_nce  # noqa: E402

TEXTS = [
    "a dog barks twice",
    "rain falls on a tin roof",
    "a car passes by quickly",
    "birds sing in the morning",
    "someone types on a keyboard",
    "a door slams shut",
    "people talk in a busy cafe",
    "a train horn in the distance",
]


def tiny(model: dict[str, Any]) -> dict[str, Any]:
    """M1's architecture at toy size (CPU check of this script)."""
    m = json.loads(json.dumps(model))
    m["audio_encoder"]["config"] = {
        "d_model": 16,
        "encoder_layers": 1,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 32,
        "output_dim": 16,
        "n_window": 50,
        "downsample_hidden_size": 4,
    }
    m["backbone"]["config"] = {
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 32,
    }
    m["prenet"] = {
        "dim": 16,
        "conv_layers": 0,
        "stride": 1,
        "transformer_layers": 0,
        "heads": 2,
        "dropout": 0.0,
        "max_frames": 1500,
    }
    return m


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build M1 (random), run `args.steps` optimizer steps, return timings and memory."""
    from voice_router.model.embedder import AudioTextEmbedder

    device = torch.device(
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    cfg, _ = T.load_run_config(ROOT / "training" / "configs" / "m1.yaml")
    model_cfg = json.loads(json.dumps(cfg.model))
    model_cfg["audio_encoder"]["pretrained"] = False
    model_cfg["backbone"]["pretrained"] = False  # random weights, byte tokenizer
    model_cfg["backbone"]["config"]["vocab_size"] = 151936  # real embedding-table size
    if args.tiny:
        model_cfg = tiny(model_cfg)
    t0 = time.perf_counter()
    model = AudioTextEmbedder(model_cfg)
    build_s = time.perf_counter() - t0
    if args.checkpointing:
        T.set_gradient_checkpointing(model, True)
    model.to(device).train()
    step = T.ContrastiveStep(model, "audio")
    params = [p for p in step.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=device.type == "cuda")
    rng = np.random.default_rng(0)
    n = int(args.seconds * 16000)
    batch = {
        "audio": [(0.1 * rng.standard_normal(n)).astype(np.float32) for _ in range(args.batch)],
        "text": [TEXTS[i % len(TEXTS)] for i in range(args.batch)],
    }
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=not args.fp32)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for _ in range(args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        inputs = T._prepare(model, batch, "audio", device)  # features on CPU, then moved
        with autocast:
            left, right, scale = step(**inputs)
        loss = info_nce(left.float(), right.float(), torch.exp(-scale.float()))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        losses.append(float(loss.detach()))
    result: dict[str, Any] = {
        "config": "m1 (tiny)" if args.tiny else "m1",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "params_total": sum(p.numel() for p in model.parameters()),
        "params_trainable": sum(p.numel() for p in params),
        "batch": args.batch,
        "seconds_per_clip": args.seconds,
        "precision": "fp32" if args.fp32 else "bf16 autocast (fp32 master weights)",
        "gradient_checkpointing": bool(args.checkpointing),
        "build_s": round(build_s, 2),
        "first_step_s": round(times[0], 3),
        "step_s_median_after_first": round(float(np.median(times[1:])), 3)
        if len(times) > 1
        else None,
        "losses": losses,
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        result["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved(device) / 2**30, 2)
    if not all(math.isfinite(x) for x in losses):
        result["error"] = "non-finite loss"
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print JSON; exit 1 on a non-finite loss."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=16, help="clips per step")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    p.add_argument("--no-checkpointing", dest="checkpointing", action="store_false")
    p.add_argument("--tiny", action="store_true", help="toy dimensions (CPU check)")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
