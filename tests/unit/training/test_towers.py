"""Large audio towers and backbones build at tiny size from config, with no download."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from tiny_parts import OMNI_TOWERS

from training import towers
from voice_router.errors import ModelError
from voice_router.model import registry

torch.set_num_threads(1)

TINY_AUDIO = {
    **OMNI_TOWERS,
    "whisper": {
        "d_model": 32,
        "encoder_layers": 2,
        "encoder_attention_heads": 4,
        "encoder_ffn_dim": 64,
        "num_mel_bins": 128,
        "max_source_positions": 100,
    },
}
TINY_BACKBONE = {
    "qwen2": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 64,
    },
    "qwen3": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "intermediate_size": 64,
    },
    "bert": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
    },
}


def _clips() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        (0.1 * rng.standard_normal(16000)).astype(np.float32),
        (0.1 * rng.standard_normal(40000)).astype(np.float32),
    ]


def test_registered_names() -> None:
    assert {"whisper", "qwen2_5_omni", "qwen3_omni"} <= set(registry.audio_encoder_names())
    assert {"qwen2", "qwen3", "bert"} <= set(registry.backbone_names())


@pytest.mark.parametrize("name", sorted(TINY_AUDIO))
def test_audio_tower_shapes_and_batch_independence(name: str) -> None:
    torch.manual_seed(0)
    build = registry.get_audio_encoder_builder(name)
    tower = build({"pretrained": False, "config": TINY_AUDIO[name]})
    clips = _clips()
    feats, lengths = tower.featurize(clips)
    assert feats.shape[:2] == (2, 128)
    hidden, mask = tower(feats, lengths)
    assert hidden.shape[0] == 2 and hidden.shape[2] == tower.output_dim
    # the longer clip has more valid output frames; padding rows are zero-masked
    assert 0 < int(mask[0].sum()) < int(mask[1].sum()) or name == "whisper"
    # a clip embedded alone equals the same clip inside a batch (valid frames), whether it
    # is padded there (clip 0) or the longest (clip 1)
    for i in range(2):
        h1, m1 = tower(*tower.featurize(clips[i : i + 1]))
        n = int(m1[0].sum())
        assert n == int(mask[i].sum())
        torch.testing.assert_close(h1[0, :n], hidden[i, :n], atol=1e-4, rtol=1e-4)


def test_qwen25_omni_unused_token_is_frozen() -> None:
    tower = towers.build_qwen2_5_omni({"config": TINY_AUDIO["qwen2_5_omni"]})
    assert not tower.encoder.audio_bos_eos_token.weight.requires_grad
    hidden, mask = tower(*tower.featurize(_clips()))
    hidden[mask].sum().backward()
    # every trainable parameter received a gradient: DDP without find_unused_parameters works
    missing = [n for n, p in tower.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


@pytest.mark.parametrize("name", sorted(TINY_BACKBONE))
def test_backbone_text_and_embeds(name: str) -> None:
    torch.manual_seed(0)
    bb = registry.get_backbone_builder(name)({"pretrained": False, "config": TINY_BACKBONE[name]})
    ids, mask = bb.tokenize(["hello", "a dog barks loudly"])
    assert ids.shape == mask.shape and mask[0].sum() == len("hello") + 2
    emb = bb.embed_tokens(ids)
    assert emb.shape == (2, ids.shape[1], bb.hidden_size)
    out = bb(emb, mask)
    assert out.shape == emb.shape and torch.isfinite(out).all()


def test_backbone_vocab_too_small_fails() -> None:
    cfg = dict(TINY_BACKBONE["qwen2"], vocab_size=100)
    with pytest.raises(ModelError, match="vocab_size"):
        towers.build_qwen2({"config": cfg})


def test_byte_tokenizer_roundtrip() -> None:
    ids, mask = towers.ByteTokenizer(max_length=8)(["héllo world", "a"])
    assert ids.shape == (2, 8)
    assert ids[1, :3].tolist() == [1, ord("a") + 3, 2] and mask[1].sum() == 3


def test_copy_tensors_strict(tmp_path) -> None:
    torch.manual_seed(0)
    src = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    tensors = {f"thinker.audio_tower.{k}": v for k, v in src.state_dict().items()}
    tensors["thinker.model.other"] = torch.zeros(1)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    dst = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    got = towers.read_prefixed_tensors(tmp_path, "thinker.audio_tower.")
    copied = towers.copy_tensors_strict(dst, got)
    assert copied == sorted(src.state_dict())
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v)
    bad = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2))
    with pytest.raises(ModelError, match="shape mismatch"):
        towers.copy_tensors_strict(bad, got)
