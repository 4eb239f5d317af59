"""Weight copying into shells: exact on tiny saved Omni-style checkpoints, loud on mismatch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_parts import OMNI_TOWERS

from training import shells, towers
from voice_router.errors import ModelError
from voice_router.model import registry

torch.set_num_threads(1)

AUDIO = OMNI_TOWERS
LM = {
    "hidden_size": 24,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 48,
}


def _save_omni(
    tmp: Path, kind: str, sharded: bool = True
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A tiny Omni-style checkpoint: audio tower under thinker.audio_tower., LM under
    thinker.model., plus a talker tensor; split in two shards with an index, like the hub's."""
    torch.manual_seed(1)
    audio = registry.get_audio_encoder_builder(kind)({"config": AUDIO[kind]}).encoder
    lm = towers.build_qwen2({"config": LM}).model
    tensors = {f"thinker.audio_tower.{k}": v.clone() for k, v in audio.state_dict().items()}
    tensors |= {f"thinker.model.{k}": v.clone() for k, v in lm.state_dict().items()}
    tensors["talker.codec_head.weight"] = torch.randn(3, 3)
    names = sorted(tensors)
    half = len(names) // 2
    tmp.mkdir(parents=True, exist_ok=True)
    if sharded:
        shards = {
            "model-00001-of-00002.safetensors": names[:half],
            "model-00002-of-00002.safetensors": names[half:],
        }
        for fname, keys in shards.items():
            save_file({k: tensors[k].contiguous() for k in keys}, str(tmp / fname))
        index = {"weight_map": {k: f for f, keys in shards.items() for k in keys}}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index))
    else:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "model.safetensors"))
    conf = {
        "model_type": "x",
        "thinker_config": {"audio_config": {**AUDIO[kind], "model_type": kind}},
    }
    (tmp / "config.json").write_text(json.dumps(conf))
    return audio, lm


@pytest.mark.parametrize("kind", sorted(AUDIO))
def test_omni_audio_shell_is_exact(tmp_path: Path, kind: str) -> None:
    audio, _ = _save_omni(tmp_path, kind)
    shell = shells.omni_audio_shell(kind, tmp_path)
    assert type(shell) is type(audio)
    ref = audio.state_dict()
    got = shell.state_dict()
    assert set(got) == set(ref)
    for k in ref:
        assert torch.equal(got[k], ref[k]), k
    # same function, not just same tensors
    feats = torch.randn(128, 150)
    lens = torch.tensor([150])
    torch.testing.assert_close(
        shell(input_features=feats, feature_lens=lens).last_hidden_state,
        audio(input_features=feats, feature_lens=lens).last_hidden_state,
        rtol=0,
        atol=0,
    )


def test_shell_fails_on_missing_unexpected_and_misshaped(tmp_path: Path) -> None:
    _save_omni(tmp_path / "ok", "qwen2_5_omni", sharded=False)
    src = towers.read_prefixed_tensors(tmp_path / "ok", "thinker.audio_tower.")
    shell = towers.build_qwen2_5_omni({"config": AUDIO["qwen2_5_omni"]}).encoder
    before = {k: v.clone() for k, v in shell.state_dict().items()}

    missing = dict(src)
    missing.pop("ln_post.weight")
    with pytest.raises(ModelError, match=r"missing from checkpoint.*ln_post\.weight"):
        towers.copy_tensors_strict(shell, missing)
    unexpected = dict(src, **{"extra.bias": torch.zeros(2)})
    with pytest.raises(ModelError, match=r"unexpected in checkpoint.*extra\.bias"):
        towers.copy_tensors_strict(shell, unexpected)
    misshaped = dict(src, **{"proj.weight": torch.zeros(5, 32)})
    with pytest.raises(ModelError, match=r"shape mismatch.*proj\.weight"):
        towers.copy_tensors_strict(shell, misshaped)
    # a failed copy leaves the shell untouched
    for k, v in shell.state_dict().items():
        assert torch.equal(v, before[k])
    # a shell of the wrong dimensions fails on the real checkpoint too
    wrong = towers.build_qwen2_5_omni({"config": dict(AUDIO["qwen2_5_omni"], output_dim=16)})
    with pytest.raises(ModelError, match="shape mismatch"):
        shells.copy_into_shell(wrong.encoder, tmp_path / "ok", "thinker.audio_tower.")
    with pytest.raises(ModelError, match="no tensors under"):
        shells.copy_into_shell(wrong.encoder, tmp_path / "ok", "nothing.here.")


def test_lm_copy_with_layer_pruning(tmp_path: Path) -> None:
    _, lm = _save_omni(tmp_path, "qwen2_5_omni")
    full = towers.build_qwen2({"config": LM}).model
    shells.copy_into_shell(full, tmp_path, shells.OMNI_LM_PREFIX)
    for k, v in lm.state_dict().items():
        assert torch.equal(full.state_dict()[k], v)

    pruned = towers.build_qwen2({"config": dict(LM, num_hidden_layers=2)}).model
    shells.copy_into_shell(pruned, tmp_path, shells.OMNI_LM_PREFIX, keep_layers=[0, 3])
    ref = lm.state_dict()
    got = pruned.state_dict()
    assert torch.equal(got["layers.1.mlp.up_proj.weight"], ref["layers.3.mlp.up_proj.weight"])
    assert torch.equal(got["layers.0.self_attn.q_proj.bias"], ref["layers.0.self_attn.q_proj.bias"])
    assert torch.equal(got["embed_tokens.weight"], ref["embed_tokens.weight"])
    # keeping 2 layers in a 2-layer shell without pruning the source fails (unexpected layers)
    with pytest.raises(ModelError, match="unexpected"):
        shells.copy_into_shell(pruned, tmp_path, shells.OMNI_LM_PREFIX)
    with pytest.raises(ModelError, match="cannot keep layers"):
        shells.prune_layers(towers.read_prefixed_tensors(tmp_path, "thinker.model."), [0, 9])


def test_apply_init_by_module_path(tmp_path: Path) -> None:
    _, lm = _save_omni(tmp_path, "qwen2_5_omni")
    holder = torch.nn.Module()
    holder.backbone = towers.build_qwen2({"config": dict(LM, num_hidden_layers=1)})
    report = shells.apply_init(
        holder,
        [
            {
                "module": "backbone.model",
                "checkpoint": str(tmp_path),
                "prefix": "thinker.model.",
                "keep_layers": 1,
            }
        ],
    )
    assert report == {"backbone.model": len(holder.backbone.model.state_dict())}
    assert torch.equal(holder.backbone.model.norm.weight, lm.state_dict()["norm.weight"])
    with pytest.raises(ModelError, match="no module"):
        shells.apply_init(holder, [{"module": "nope", "checkpoint": str(tmp_path)}])


def _save_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[PAD]": 1, "a": 2, "dog": 3, "barks": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    fast.save_pretrained(str(folder))


def test_omni_thinker_backbone_pruned_from_checkpoint(tmp_path: Path) -> None:
    _, lm = _save_omni(tmp_path, "qwen2_5_omni")
    conf = json.loads((tmp_path / "config.json").read_text())
    conf["thinker_config"]["text_config"] = {**LM, "vocab_size": 259, "rope_theta": 10000.0}
    (tmp_path / "config.json").write_text(json.dumps(conf))
    _save_tokenizer(tmp_path)
    bb = towers.build_qwen2_5_omni_thinker(
        {"pretrained": str(tmp_path), "config": {"num_hidden_layers": 2}}
    )
    ref = lm.state_dict()
    got = bb.model.state_dict()
    assert bb.model.config.num_hidden_layers == 2 and bb.hidden_size == LM["hidden_size"]
    assert torch.equal(
        got["layers.1.self_attn.k_proj.weight"], ref["layers.1.self_attn.k_proj.weight"]
    )
    ids, mask = bb.tokenize(["a dog barks", "dog"])
    assert ids[0].tolist() == [2, 3, 4] and mask[1].tolist() == [1, 0, 0]
    # keep_layers picks and renumbers
    bb2 = towers.build_qwen2_5_omni_thinker(
        {"pretrained": str(tmp_path), "config": {"keep_layers": [3]}}
    )
    assert torch.equal(
        bb2.model.state_dict()["layers.0.mlp.down_proj.weight"],
        ref["layers.3.mlp.down_proj.weight"],
    )


def test_hub_id_downloads_only_the_shards_under_the_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub id fetches JSON files first, then only the shards holding the tower (no network:
    snapshot_download is replaced by a copy from a local 'hub')."""
    import fnmatch
    import shutil

    import huggingface_hub

    hub = tmp_path / "hub"
    audio, _ = _save_omni(tmp_path / "src", "qwen3_omni", sharded=False)
    tensors = towers.read_prefixed_tensors(tmp_path / "src", "")
    hub.mkdir()
    groups = {
        "a.safetensors": "thinker.audio_tower.",
        "b.safetensors": "thinker.model.",
        "c.safetensors": "talker.",
    }
    weight_map = {}
    for fname, pre in groups.items():
        part = {k: v for k, v in tensors.items() if k.startswith(pre)}
        save_file(part, str(hub / fname))
        weight_map |= {k: fname for k in part}
    (hub / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    shutil.copy(tmp_path / "src" / "config.json", hub / "config.json")
    local = tmp_path / "snapshot"
    calls: list[list[str]] = []

    def fake_snapshot_download(repo_id: str, allow_patterns: list[str] | None = None) -> str:
        assert repo_id == "Qwen/Fake-Omni"
        calls.append(list(allow_patterns or ["*"]))
        local.mkdir(exist_ok=True)
        for f in hub.iterdir():
            if any(fnmatch.fnmatch(f.name, pat) for pat in allow_patterns or ["*"]):
                shutil.copy(f, local / f.name)
        return str(local)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    shell = shells.omni_audio_shell("qwen3_omni", "Qwen/Fake-Omni")
    assert calls[1] == ["a.safetensors"]
    assert sorted(p.name for p in local.glob("*.safetensors")) == ["a.safetensors"]
    for k, v in audio.state_dict().items():
        assert torch.equal(shell.state_dict()[k], v)
