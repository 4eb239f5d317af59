"""Tests of the compact trainer's model paths and batch construction (tiny random model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training import compact
from training.features import CorpusData
from voice_router.model.config import CONFIGS_DIR


@pytest.fixture(scope="module")
def tiny_frozen():  # noqa: ANN201
    cfg = json.loads((CONFIGS_DIR / "tiny.json").read_text())
    cfg["backbone"] = dict(cfg["backbone"], trainable=False, lora=None)
    cfg["audio_path"] = "pool"
    return compact.build_model(cfg).eval()


@pytest.mark.slow  # builds the tiny model (imports transformers): ~10 s here
def test_cached_text_path_equals_encode_text(tiny_frozen) -> None:  # noqa: ANN001
    m = tiny_frozen
    texts = ["turn on the lights", "yes", "what time is it"]
    tok = m.tokenize(texts)
    with torch.no_grad():
        hidden = m.backbone(m.backbone.embed_tokens(tok["input_ids"]), tok["attention_mask"])
        mask = tok["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)  # what the text cache stores
        got = compact.embed_pooled_text(m, pooled)
        ref = m.encode_text(texts)
    assert torch.allclose(got, ref, atol=1e-5)


@pytest.mark.slow
def test_pool_path_ignores_padding_and_normalises(tiny_frozen) -> None:  # noqa: ANN001
    m = tiny_frozen
    torch.manual_seed(0)
    d = m.audio_dim
    short = torch.randn(1, 7, d)
    padded = torch.cat([short, torch.randn(1, 5, d)], dim=1)  # garbage after the valid frames
    with torch.no_grad():
        a = compact.embed_frames(m, short, torch.tensor([7]), "pool")
        b = compact.embed_frames(m, padded, torch.tensor([7]), "pool")
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a.norm(dim=-1), torch.ones(1), atol=1e-5)


def _fake_corpus() -> CorpusData:
    texts = ["turn on the fan", "turn off the fan", "yes", "no", "play music", "start music"]
    intents = [
        "pair:turn _ the fan",
        "pair:turn _ the fan",
        "pair:_ (yes/no)",
        "pair:_ (yes/no)",
        "hwu64:play_music",
        "hwu64:play_music",
    ]
    n_per = 4
    rng = np.random.default_rng(0)
    lens = rng.integers(3, 9, size=len(texts) * n_per).astype(np.int32)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    return CorpusData(
        frames=rng.standard_normal((int(lens.sum()), 96)).astype(np.float16),
        f_off=offs,
        f_len=lens,
        version=np.zeros(lens.size, np.int8),
        clip=np.arange(lens.size, dtype=np.int32),
        text=np.repeat(np.arange(len(texts)), n_per).astype(np.int32),
        voice=np.tile(np.arange(n_per), len(texts)).astype(np.int32),
        split=np.tile(np.array([True, True, True, False]), len(texts)),
        clip_ids=[str(i) for i in range(lens.size)],
        texts=texts,
        text_kind=["pair"] * 4 + ["command"] * 2,
        text_intent=intents,
        voices=[f"v{i}" for i in range(n_per)],
    )


def test_trainset_groups_and_batches() -> None:
    data = _fake_corpus()
    ts = compact.make_trainset(data)
    assert sorted(map(sorted, ts.pair_groups)) == [[0, 1], [2, 3]]
    assert set(ts.intent_texts) == {"hwu64:play_music"}
    assert all(data.split[ts.by_text[t]].all() for t in ts.by_text)  # no val sample
    rng = np.random.default_rng(1)
    texts, v1, v2 = compact.draw_batch(ts, rng, n_texts=4, n_pair_groups=2)
    assert sorted(texts) == [0, 1, 2, 3]  # both minimal pairs, whole
    for t, a, b in zip(texts, v1, v2, strict=True):
        assert data.text[a] == t and data.text[b] == t and a != b
    frames, lens = compact.pad_frames(data, v1)
    assert frames.shape == (4, int(lens.max()), 96)
    assert np.array_equal(
        frames[0, : lens[0]].numpy(), data.sample_frames(v1[0]).astype(np.float32)
    )
    a, b, labels = compact.draw_paraphrases(ts, rng, 3)
    assert len(a) == 1 and a[0] != b[0] and labels == ["hwu64:play_music"]


def test_lr_schedule() -> None:
    assert compact._lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert compact._lr_at(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert compact._lr_at(100, 100, 10, 1.0) == pytest.approx(0.05)


@pytest.mark.slow  # builds the tiny model (imports transformers): ~10 s here
def test_cached_text_path_pads_the_acoustic_part() -> None:
    cfg = json.loads((CONFIGS_DIR / "tiny.json").read_text())
    cfg["backbone"] = dict(cfg["backbone"], trainable=False, lora=None)
    cfg |= {"audio_path": "pool", "acoustic_weight": 0.5}
    m = compact.build_model(cfg).eval()
    texts = ["stop", "go"]
    tok = m.tokenize(texts)
    with torch.no_grad():
        hidden = m.backbone(m.backbone.embed_tokens(tok["input_ids"]), tok["attention_mask"])
        mask = tok["attention_mask"].unsqueeze(-1).float()
        got = compact.embed_pooled_text(m, (hidden * mask).sum(1) / mask.sum(1))
        ref = m.encode_text(texts)
    assert got.shape == (2, m.dim) == (2, 32 + 16)
    assert torch.allclose(got, ref, atol=1e-5)
