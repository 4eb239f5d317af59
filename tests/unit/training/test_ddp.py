"""DDP: 2 CPU processes (gloo) under torchrun give the same losses as 1 process on the same
global batch. Uses the Qwen2.5-Omni tower, whose unused `audio_bos_eos_token` would make DDP
fail from the second step on if it were trainable (no find_unused_parameters here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from training import train as T
from training.data import make_synthetic_dataset

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[3]
TINY = ROOT / "training" / "configs" / "tiny.yaml"
STEPS = 3


def _config(tmp: Path) -> Path:
    cfg = yaml.safe_load(TINY.read_text())
    cfg["model"]["audio_encoder"] = {
        "name": "qwen2_5_omni",
        "pretrained": False,
        "trainable": True,
        "config": {
            "d_model": 32,
            "encoder_layers": 1,
            "encoder_attention_heads": 4,
            "encoder_ffn_dim": 64,
            "output_dim": 32,
            "n_window": 50,
            "initializer_range": 0.2,
        },
    }
    cfg["train"].update(
        {"steps": STEPS, "batch_size": 6, "distributed": "ddp", "find_unused_parameters": False}
    )
    path = tmp / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _losses(out: Path) -> list[float]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def _torchrun(
    config: Path, out: Path, data: Path, port: int, *extra: str, val: bool, timeout: int
) -> None:
    """`python -m training train` under torchrun with 2 gloo processes (one thread each)."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(port),
        "-m",
        "training",
        "train",
        "--config",
        str(config),
        "--out",
        str(out),
        "--train-data",
        str(data),
        *(["--val-data", str(data)] if val else []),
        "--threads",
        "1",
        *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow  # two torchrun processes: ~15-40 s on this shared 2-core machine
def test_two_gloo_processes_match_one(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "synth", n_per_class=3, seed=1)
    cfg_path = _config(tmp_path)
    cfg, base = T.load_run_config(cfg_path)
    T.train(cfg, tmp_path / "one", base=base, train_data=[str(data)])

    _torchrun(cfg_path, tmp_path / "two", data, 29517, val=False, timeout=120)

    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == STEPS
    rows = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["world"] == 2
    # Same global batch, same gradients: equal up to float summation order and the different
    # padding of a 3-clip vs a 6-clip batch (embedding differences ~1.5e-8 measured).
    np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-5)
    assert len(set(np.round(one, 4))) > 1  # the parameters really moved between steps


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_fsdp_wraps_in_a_single_process_group(tmp_path: Path) -> None:
    """FSDP (for the 3B+ configs) builds around the step module: one gloo process."""
    import torch.distributed as dist

    from training import distributed as D
    from voice_router.model.embedder import AudioTextEmbedder

    cfg, _ = T.load_run_config(TINY)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        info = D.DistInfo(rank=0, world=1, local_rank=0)
        model = AudioTextEmbedder(cfg.model)
        classes = D.transformer_layer_classes(model)
        assert any("DecoderLayer" in c.__name__ for c in classes)
        wrapped = D.fsdp_wrap(T.ContrastiveStep(model, "audio"), info, classes)
        ids, mask = model.backbone.tokenize(["a", "bb"])
        feats, lens = model.audio_encoder.featurize([np.ones(8000, np.float32) * 0.1] * 2)
        left, right, _ = wrapped(ids=ids, mask=mask, features=feats, lengths=lens)
        assert left.shape == right.shape == (2, 32)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # three torchrun launches
def test_fsdp_two_processes_train_save_resume(tmp_path: Path) -> None:
    """FSDP2 over 2 gloo processes: same losses as 1 process, a loadable model, and resume."""
    data = make_synthetic_dataset(tmp_path / "synth", n_per_class=3, seed=1)
    cfg = yaml.safe_load(_config(tmp_path).read_text())
    cfg["train"]["distributed"] = "fsdp"
    path = tmp_path / "fsdp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, base = T.load_run_config(path)
    T.train(rc, tmp_path / "one", base=base, train_data=[str(data)])

    def launch(out: str, *extra: str) -> None:
        _torchrun(path, tmp_path / out, data, 29518, *extra, val=True, timeout=300)

    launch("two")
    np.testing.assert_allclose(_losses(tmp_path / "two"), _losses(tmp_path / "one"), rtol=1e-4)
    from voice_router import load_model

    m = load_model(str(tmp_path / "two"))
    assert m.embed_text(["a deep tone"]).shape == (1, 32)
    assert json.loads((tmp_path / "two" / "eval.json").read_text())["n_clips"] == 15

    launch("res", "--max-steps", "2")
    launch("res", "--resume")
    np.testing.assert_allclose(_losses(tmp_path / "res"), _losses(tmp_path / "one"), rtol=1e-4)
