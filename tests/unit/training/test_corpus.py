"""Tests of the synthetic corpus: texts, specs, batched featurisation (augmentation is in
test_augment.py, which needs the `train` extra)."""

from __future__ import annotations

import numpy as np
import pytest

from training import texts
from training.corpus import HOLDOUT_VARIANTS, ClipSpec, featurize


def test_normalise_and_swap() -> None:
    assert texts.normalise("Turn ON the Lights!  ") == "turn on the lights"
    assert texts.normalise("what's up?") == "what's up"
    assert texts.swap_opposite("turn on the fan") == "turn off the fan"
    assert texts.swap_opposite("move it left now") == "move it right now"
    assert texts.swap_opposite("hello there") is None


def test_ngrams_counts_and_order() -> None:
    got = texts.ngrams(["a b c", "a b d", "x a b"], 2, top=5, min_count=2)
    assert got == ["a b"]
    assert texts.ngrams(["a b", "b a", "a b"], 1, top=1) == ["a"]


def test_minimal_pairs_come_in_groups() -> None:
    pairs = texts.minimal_pair_texts()
    groups: dict[str, list[str]] = {}
    for t, g in pairs:
        groups.setdefault(g, []).append(t)
    assert groups["turn _ the fan"] == ["turn on the fan", "turn off the fan"]
    assert all(len(v) == 2 for v in groups.values())


def test_text_items_deterministic_and_splits_disjoint(tmp_path) -> None:  # noqa: ANN001
    csv = tmp_path / "slurp_text.csv"
    rows = [f"devel,{i},turn on the lamp number {i},iot_on" for i in range(60)]
    rows += [f"devel,{i + 60},what time is it in city {i},time" for i in range(60)]
    csv.write_text("split,slurp_id,text,intent\n" + "\n".join(rows) + "\n")
    a = texts.build_text_items(n_commands=80, data_dir=tmp_path, val_fraction=0.2)
    b = texts.build_text_items(n_commands=80, data_dir=tmp_path, val_fraction=0.2)
    assert a == b
    by_text = {i.text: i for i in a}
    assert len(by_text) == len(a)
    assert all(by_text[w].split == "train" for w in ("yes", "no", "stop"))
    cmds = [i for i in a if i.kind == "command"]
    assert len(cmds) == 80
    assert {i.split for i in cmds} == {"train", "val"}
    # a command's opposite twin shares its split (no val text has a train twin)
    for i in cmds:
        twin = texts.swap_opposite(i.text)
        if twin in by_text and by_text[twin].kind == "pair":
            assert by_text[twin].split == i.split


def test_spec_voice_id() -> None:
    s = ClipSpec("x-0", "yes", "x", "essential", "", "espeak", "en-us+m3", 170, 50, "train")
    assert s.voice_id == "espeak:en-us+m3"
    assert "m3" not in HOLDOUT_VARIANTS


def test_featurize_batched_equals_single() -> None:
    torch = pytest.importorskip("torch")
    from voice_router.model.speech_embedding import load_speech_embedding_frontend

    fe = load_speech_embedding_frontend()
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (9000, 20000, 31000)]
    got = featurize(fe, waves)
    for w, g in zip(waves, got, strict=True):
        with torch.no_grad():
            ref = fe(torch.from_numpy(w)[None])[0].numpy()
        assert g.shape == ref.shape and g.dtype == np.float16
        assert np.abs(g.astype(np.float32) - ref).max() < 0.05


def test_corpus_speaks_the_runtime_accents():
    from training import corpus
    from voice_router import tts

    assert corpus.ESPEAK_ACCENTS == tts.ESPEAK_ACCENTS


def _clean_clips() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    t = np.arange(8000) / 16000
    return {
        f"c{i}": (0.5 * np.sin(2 * np.pi * (150 + 50 * i) * t) + 0.01 * rng.standard_normal(8000))
        .astype(np.float32)
        .clip(-0.9, 0.9)
        for i in range(3)
    }


def test_chunk_frames_follow_the_model_clip_normalisation(tmp_path) -> None:  # noqa: ANN001
    torch = pytest.importorskip("torch")
    from training import corpus
    from voice_router.audio.prep import ClipNormalizer
    from voice_router.model.speech_embedding import load_speech_embedding_frontend

    prep = {"trim_db": -25.0, "trim_pad_s": 0.25, "min_seconds": 1.25, "noise_rms": 3e-4}
    clean = _clean_clips()
    n = corpus.write_chunk("main_00000", ["c0", "c1", "c2"], clean, 0, tmp_path, prep)
    assert n == 3
    ids, back = corpus.read_chunk_clean(tmp_path / "main_00000.npz")
    assert ids == ["c0", "c1", "c2"]
    for k in ids:  # int16 round trip of the stored clean clip
        assert np.abs(back[k] - clean[k]).max() < 1e-4
    z = np.load(tmp_path / "main_00000.npz")
    fe = load_speech_embedding_frontend()
    pad = np.zeros(1600, np.float32)
    wave = ClipNormalizer(**prep)(np.concatenate([pad, clean["c1"], pad]))  # version 0
    with torch.no_grad():
        ref = fe(torch.from_numpy(wave)[None])[0].numpy()  # (T, 96)
    i = 1  # one version per clip
    got = z["frames"][z["f_off"][i] : z["f_off"][i] + z["f_len"][i]].astype(np.float32)
    assert got.shape == ref.shape and np.abs(got - ref).max() < 0.05


def test_corpus_refuses_to_mix_clip_normalisations(tmp_path) -> None:  # noqa: ANN001
    from training import corpus

    prep = {"trim_db": -25.0, "trim_pad_s": 0.25, "min_seconds": 1.25, "noise_rms": 3e-4}
    corpus._claim_prep(tmp_path, prep)
    assert corpus.corpus_prep(tmp_path) == prep
    (tmp_path / "chunks").mkdir()
    (tmp_path / "chunks" / "main_00000.npz").write_bytes(b"")
    corpus._claim_prep(tmp_path, prep)  # same: fine
    with pytest.raises(SystemExit, match="another VR_CACHE"):
        corpus._claim_prep(tmp_path, {})
    cfg = tmp_path / "model.json"
    cfg.write_text('{"audio_prep": {"trim_db": -25.0, "min_seconds": 1.25, "noise_rms": 0.0003}}')
    assert corpus.prep_from_config(cfg) == prep  # defaults filled in
    cfg.write_text("{}")
    assert corpus.prep_from_config(cfg) == {} == corpus.prep_from_config(None)
