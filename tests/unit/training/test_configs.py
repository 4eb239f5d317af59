"""Every shipped training config builds at tiny size from config (no download) and trains one
step; every audio tower x backbone combination trains one step."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny_parts import TINY_PRENET

from training import train as T
from training.losses import info_nce
from voice_router.model.config import validate_config
from voice_router.model.embedder import AudioTextEmbedder

torch.set_num_threads(1)
CONFIGS = Path(__file__).resolve().parents[3] / "training" / "configs"
FILES = sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("compact"))

TINY_AUDIO: dict[str, dict[str, Any]] = {
    "qwen2_5_omni": {
        "d_model": 16,
        "encoder_layers": 1,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 32,
        "output_dim": 16,
        "n_window": 50,
    },
    "qwen3_omni": {
        "d_model": 16,
        "encoder_layers": 1,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 32,
        "output_dim": 16,
        "n_window": 50,
        "downsample_hidden_size": 4,
    },
    "whisper": {
        "d_model": 16,
        "encoder_layers": 1,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 32,
        "num_mel_bins": 128,
        "max_source_positions": 100,
    },
}
_QWEN = {
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 32,
}
TINY_BACKBONE: dict[str, dict[str, Any]] = {
    "qwen2": _QWEN,
    "qwen3": {**_QWEN, "head_dim": 8},
    "bert": {
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
    },
    "qwen2_5_omni_thinker": _QWEN,
}


def tiny_model_config(model: dict[str, Any]) -> dict[str, Any]:
    """The same architecture (tower and backbone kinds, head, tokens) at toy size, random."""
    m = copy.deepcopy(model)
    a, b = m["audio_encoder"], m["backbone"]
    a.update(pretrained=False, config=dict(TINY_AUDIO[a["name"]]))
    b.update(pretrained=False, config=dict(TINY_BACKBONE[b["name"]]))
    m["prenet"] = dict(TINY_PRENET)
    m["max_seconds"] = 10.0
    return m


def one_step(model_cfg: dict[str, Any], mode: str = "audio") -> tuple[float, float]:
    """Build, run one AdamW step on 4 synthetic pairs; returns (loss, max parameter change)."""
    torch.manual_seed(0)
    model = AudioTextEmbedder(model_cfg).train()
    if mode == "text_pairs":
        for part in (model.audio_encoder, model.prenet, model.projector):
            part.requires_grad_(False)
    step = T.ContrastiveStep(model, mode)
    params = [p for p in step.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=1e-2)
    rng = np.random.default_rng(0)
    batch = {
        "text": ["a dog barks", "rain on a roof", "a car passes", "birds sing"],
        "text2": ["barking", "rainfall", "traffic", "birdsong"],
        "audio": [
            (0.1 * rng.standard_normal(n)).astype(np.float32) for n in (8000, 12000, 16000, 9000)
        ],
    }
    left, right, scale = step(**T._prepare(model, batch, mode, torch.device("cpu")))
    loss = info_nce(left, right, torch.exp(-scale))
    loss.backward()
    opt.step()
    change = max(float((p.detach() - b).abs().max()) for p, b in zip(params, before, strict=True))
    return float(loss.detach()), change


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_config_file_builds_tiny_and_steps(path: Path) -> None:
    cfg, _ = T.load_run_config(path)
    validate_config(cfg.model)  # the real-size model section is a valid model config
    for spec in [*cfg.data.train, *([cfg.data.val] if cfg.data.val else [])]:
        from training.data import READERS

        assert spec["format"] in READERS
    ref = cfg.reference.get("backbone", {})
    if "hidden_size" in ref:  # documented published dimensions == the ones the model uses
        assert cfg.model["backbone"]["config"]["hidden_size"] == ref["hidden_size"]
    if "output_dim" in cfg.reference.get("audio_tower", {}):
        assert (
            cfg.model["audio_encoder"]["config"]["output_dim"]
            == cfg.reference["audio_tower"]["output_dim"]
        )
    loss, change = one_step(tiny_model_config(cfg.model), cfg.train.mode)
    assert math.isfinite(loss) and change > 0


@pytest.mark.parametrize("backbone", sorted(TINY_BACKBONE))
@pytest.mark.parametrize("tower", sorted(TINY_AUDIO))
def test_every_tower_backbone_combination_steps(tower: str, backbone: str) -> None:
    model = {
        "name": f"{tower}+{backbone}",
        "audio_encoder": {"name": tower, "trainable": True},
        "backbone": {"name": backbone, "trainable": True},
    }
    loss, change = one_step(tiny_model_config(model))
    assert math.isfinite(loss) and loss > 0 and change > 0


def test_m1_real_size_parameter_counts_on_meta_device() -> None:
    """M1 at its published dimensions, built without memory (meta device): ~1.1B."""
    from training import towers
    from voice_router.model.config import PrenetConfig
    from voice_router.model.parts import Prenet

    cfg, _ = T.load_run_config(CONFIGS / "m1.yaml")
    m = cfg.model
    with torch.device("meta"):
        tower = towers.build_qwen3_omni({"config": m["audio_encoder"]["config"]})
        lm = towers.build_qwen2({"config": m["backbone"]["config"]})
        prenet = Prenet(tower.output_dim, PrenetConfig(**m["prenet"]))
        proj = torch.nn.Linear(m["prenet"]["dim"], lm.hidden_size)

    def n(mod: torch.nn.Module) -> int:
        return sum(p.numel() for p in mod.parameters())

    assert 0.6e9 < n(tower) < 0.7e9  # measured 0.648B
    assert 0.45e9 < n(lm) < 0.55e9  # measured 0.494B (Qwen2.5-0.5B without LM head)
    assert 4.0e6 < n(prenet) + n(proj) < 5.0e6  # measured 4.56M: "about 4.5M"
