"""The generic trainer on the tiny config: metrics, eval, loadable model, resume, LoRA, freeze."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_parts import TINY_PRENET

from training import train as T
from training.__main__ import main
from training.data import make_synthetic_dataset
from voice_router.errors import ModelError

torch.set_num_threads(1)
TINY = Path(__file__).resolve().parents[3] / "training" / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"), n_per_class=8, seed=0)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _short_config(steps: int = 3, **train: object) -> T.RunConfig:
    cfg, _ = T.load_run_config(TINY)
    cfg.train = cfg.train.model_copy(update={"batch_size": 6, "log_every": 1, **train})
    return cfg


# Not marked slow on purpose: this is the package's acceptance test. ~4.6 s inside the suite
# (imports shared), ~12 s alone, on this shared 2-core machine.
def test_tiny_trains_40_steps_loss_falls(synth: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--config",
            str(TINY),
            "--out",
            str(out),
            "--train-data",
            str(synth),
            "--val-data",
            str(synth),
        ]
    )
    assert rc == 0
    rows = _rows(out)
    assert [r["step"] for r in rows] == list(range(1, 41))
    losses = np.array([r["loss"] for r in rows])
    assert np.isfinite(losses).all()
    # measured on this machine: first 5 steps ~2.9 mean, last 5 ~1.3 mean
    assert losses[-5:].mean() < losses[:5].mean() - 0.5
    ev = json.loads((out / "eval.json").read_text())
    assert {"cvR@5", "R@1", "R@10"} <= set(ev) and ev["n_clips"] == 40
    assert ev["cvR@5"] > 5 / 40  # chance level for 5 of 40 clips
    from voice_router import load_model

    model = load_model(str(out))
    assert model.dim == 32
    # the saved model is the trained one: `eval` on the folder reproduces eval.json
    ev2_path = tmp_path / "ev2.json"
    assert main(["eval", "--model", str(out), "--data", str(synth), "--output", str(ev2_path)]) == 0
    ev2 = json.loads(ev2_path.read_text())
    for k in ("cvR@5", "R@1", "R@10", "a2t_R@1"):
        assert ev2[k] == pytest.approx(ev[k])


def test_short_run_writes_model_and_resume_matches(synth: Path, tmp_path: Path) -> None:
    straight = T.train(_short_config(), tmp_path / "a", max_steps=4, train_data=[str(synth)])
    T.train(_short_config(), tmp_path / "b", max_steps=2, train_data=[str(synth)])
    resumed = T.train(
        _short_config(), tmp_path / "b", max_steps=4, resume=True, train_data=[str(synth)]
    )
    assert [r["step"] for r in _rows(tmp_path / "b")] == [1, 2, 3, 4]
    la = [r["loss"] for r in _rows(tmp_path / "a")]
    lb = [r["loss"] for r in _rows(tmp_path / "b")]
    np.testing.assert_allclose(lb, la, rtol=1e-5, atol=1e-6)
    assert resumed["loss"] == pytest.approx(straight["loss"], rel=1e-5)
    for f in ("config.json", "model.safetensors", "checkpoint/train_state.pt"):
        assert (tmp_path / "a" / f).is_file()
    with pytest.raises(ModelError, match="no checkpoint"):
        T.train(_short_config(), tmp_path / "c", resume=True, train_data=[str(synth)])


def test_grad_accum_bf16_checkpointing_lora_run_and_load(synth: Path, tmp_path: Path) -> None:
    lora = T.LoraSpec(rank=2, alpha=4.0, targets=["backbone.*q_proj", "backbone.*v_proj"])
    cfg = _short_config(
        grad_accum=2,
        precision="bf16",
        gradient_checkpointing=True,
        lora=lora,
        freeze=["backbone.*"],
        unfreeze=["backbone.model.norm.*"],
    )
    out = tmp_path / "lora"
    res = T.train(cfg, out, max_steps=2, train_data=[str(synth)], val_data=str(synth))
    assert np.isfinite(res["loss"]) and (out / "eval.json").is_file()
    from voice_router import load_model

    loaded = load_model(str(out))
    emb = loaded.embed_text(["a deep tone", "static hiss"])
    assert emb.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_lora_merge_is_exact_and_freeze_patterns() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential()
    net.add_module("backbone", torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)))
    names = T.add_lora(net, T.LoraSpec(rank=2, targets=["backbone.0"]))
    assert names == ["backbone.0"]
    with torch.no_grad():
        net.backbone[0].lora_B.normal_()
    x = torch.randn(3, 4)
    before = net(x)
    T.merge_lora(net, names)
    assert isinstance(net.backbone[0], torch.nn.Linear)
    torch.testing.assert_close(net(x), before, rtol=1e-5, atol=1e-6)
    n = T.apply_freeze(net, ["backbone.*"], ["backbone.1.bias"])
    assert (
        n == 2 and net.backbone[1].bias.requires_grad and not net.backbone[0].weight.requires_grad
    )
    with pytest.raises(ModelError, match="match no nn.Linear"):
        T.add_lora(net, T.LoraSpec(targets=["nothing"]))


def test_lr_schedule_and_global_batches() -> None:
    tc = T.TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1, lr=1.0)
    f = [T.lr_factor(s, tc) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))  # cosine never rises
    assert f[-1] == pytest.approx(0.1, abs=0.01)
    from training.data import WeightedMixSampler

    one = iter(T.GlobalBatchSampler(WeightedMixSampler([50], [1.0], seed=3), 8, 0, 1))
    r0 = iter(T.GlobalBatchSampler(WeightedMixSampler([50], [1.0], seed=3), 8, 0, 2))
    r1 = iter(T.GlobalBatchSampler(WeightedMixSampler([50], [1.0], seed=3), 8, 1, 2))
    for _ in range(3):
        assert next(r0) + next(r1) == next(one)
    skipped = iter(T.GlobalBatchSampler(WeightedMixSampler([50], [1.0], seed=3), 8, 0, 1, skip=2))
    fresh = iter(T.GlobalBatchSampler(WeightedMixSampler([50], [1.0], seed=3), 8, 0, 1))
    for _ in range(2):
        next(fresh)
    assert next(skipped) == next(fresh)
    with pytest.raises(ModelError, match="divisible"):
        T.GlobalBatchSampler(WeightedMixSampler([50], [1.0]), 7, 0, 2)


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("model: {}\ntrain: {stepz: 3}\n")
    with pytest.raises(ModelError, match=r"train\.stepz"):
        T.load_run_config(p)
    assert main(["train", "--config", str(p), "--out", str(tmp_path / "o")]) != 0


@pytest.mark.slow  # ~9 s here, mostly the first import of the Qwen3-Omni modelling code
def test_gpu_m1_step_script_runs_tiny_on_cpu(tmp_path: Path) -> None:
    """benchmarks/gpu_m1_step.py is ready for a GPU: its toy-size variant runs here."""
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu_m1_step.py"
    spec = importlib.util.spec_from_file_location("gpu_m1_step", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "r.json"
    rc = mod.main(
        [
            "--tiny",
            "--device",
            "cpu",
            "--steps",
            "2",
            "--batch",
            "2",
            "--seconds",
            "1",
            "--fp32",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["config"] == "m1 (tiny)" and len(r["losses"]) == 2 and r["params_total"] > 0


def test_text_pairs_mode_trains_backbone_only(synth: Path, tmp_path: Path) -> None:
    """Text-only transfer: NLI pairs train the shared backbone; the audio side is untouched."""
    rows = [
        {"sentence1": f"a dog barks {i}", "sentence2": f"barking {i}", "gold_label": "entailment"}
        for i in range(12)
    ] + [{"sentence1": "x", "sentence2": "y", "gold_label": "neutral"}]
    nli = tmp_path / "nli.jsonl"
    nli.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = _short_config(mode="text_pairs")
    cfg.data = T.DataConfig(
        train=[{"format": "nli", "path": str(nli)}], val={"format": "csv", "path": str(synth)}
    )
    out = tmp_path / "tp"
    res = T.train(cfg, out, max_steps=2)
    assert np.isfinite(res["loss"]) and res["eval"]["n_clips"] == 40  # transfer judged on audio
    from safetensors.torch import load_file

    from voice_router.model.embedder import AudioTextEmbedder

    saved = load_file(str(out / "model.safetensors"))
    fresh = AudioTextEmbedder(cfg.model).state_dict()
    assert torch.equal(saved["projector.weight"], fresh["projector.weight"])  # audio side kept
    assert not torch.equal(
        saved["backbone.model.layers.0.mlp.up_proj.weight"],
        fresh["backbone.model.layers.0.mlp.up_proj.weight"],
    )  # the shared backbone learned from text


def test_pretrained_parts_partly_trained_save_and_reload(synth: Path, tmp_path: Path) -> None:
    """Pretrained (local tiny Omni checkpoint) tower + pruned thinker backbone, both frozen by
    config; LoRA on the backbone and its final norm unfrozen: the saved folder holds what was
    trained, and load_model rebuilds the same model (its eval equals eval.json)."""
    from test_shells import _save_omni, _save_tokenizer

    ckpt = tmp_path / "omni"
    _save_omni(ckpt, "qwen2_5_omni")
    conf = json.loads((ckpt / "config.json").read_text())
    conf["thinker_config"]["text_config"] = {
        "vocab_size": 259,
        "hidden_size": 24,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 48,
        "rope_theta": 10000.0,
    }
    (ckpt / "config.json").write_text(json.dumps(conf))
    _save_tokenizer(ckpt)
    cfg = _short_config(
        lora=T.LoraSpec(rank=2, targets=["backbone.*q_proj"]), unfreeze=["backbone.model.norm.*"]
    )
    cfg.model = {
        "name": "tiny-pruned-omni",
        "audio_encoder": {"name": "qwen2_5_omni", "pretrained": str(ckpt), "trainable": False},
        "backbone": {
            "name": "qwen2_5_omni_thinker",
            "pretrained": str(ckpt),
            "trainable": False,
            "config": {"num_hidden_layers": 2},
        },
        "prenet": dict(TINY_PRENET),
    }
    out = tmp_path / "run"
    T.train(cfg, out, max_steps=2, train_data=[str(synth)], val_data=str(synth))
    saved = json.loads((out / "config.json").read_text())
    assert saved["backbone"]["trainable"] is True  # LoRA merged into pretrained weights
    assert saved["audio_encoder"]["trainable"] is False  # tower untouched: not saved
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert not any(k.startswith("audio_encoder.") for k in keys)
    assert "backbone.model.layers.1.self_attn.q_proj.weight" in keys
    assert not any("lora_" in k for k in keys)
    ev = json.loads((out / "eval.json").read_text())
    from training.retrieval_eval import run_eval

    again = run_eval(str(out), str(synth))
    for k in ("cvR@5", "R@1", "R@10"):
        assert again[k] == pytest.approx(ev[k])


def test_init_from_a_saved_model_folder(synth: Path, tmp_path: Path) -> None:
    """`init: [{module: "", checkpoint: <saved run>, allow_missing: true}]` starts a stage from a
    previous run (e.g. text-only transfer after an audio-text stage)."""
    from safetensors.torch import load_file

    from training.shells import apply_init
    from voice_router.model.embedder import AudioTextEmbedder

    first = tmp_path / "stage1"
    T.train(_short_config(), first, max_steps=1, train_data=[str(synth)])
    cfg = _short_config()
    model = AudioTextEmbedder(cfg.model)
    saved = load_file(str(first / "model.safetensors"))
    report = apply_init(model, [{"module": "", "checkpoint": str(first), "allow_missing": True}])
    assert report == {"": len(saved)}
    state = model.state_dict()
    for k, v in saved.items():
        assert torch.equal(state[k], v), k
    with pytest.raises(ModelError, match="no module"):
        apply_init(model, [{"module": "nope", "checkpoint": str(first), "allow_missing": True}])
