"""The PyTorch speech_embedding front-end against the TFLite runtime's own outputs.

tests/data/frontend_reference.npz was computed once by ai-edge-litert from the two .tflite
files of pyopen-wakeword (see tests/data/make_frontend_reference.py). Measured when written:
max abs diff 1.7e-4 dB on the mel (values -17..+75 dB) and 5.7e-5 on the embeddings (values up
to |65|); the tolerances below leave ~5x headroom for BLAS/FFT differences between machines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from voice_router.model.speech_embedding import (
    MIN_SAMPLES,
    SpeechEmbeddingFrontend,
    load_speech_embedding_frontend,
)

DATA = Path(__file__).parents[2] / "data"
MEL_ATOL = 1e-3  # dB
EMB_ATOL = 3e-4

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def frontend() -> SpeechEmbeddingFrontend:
    return load_speech_embedding_frontend()


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    clip, sr = sf.read(DATA / "frontend_yes.flac", dtype="float32")
    assert sr == 16000
    # Same construction as make_frontend_reference.py.
    return {"yes": clip, "long": np.concatenate([clip, 0.5 * clip, clip[::-1]])}


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(DATA / "frontend_reference.npz") as z:
        return {k: z[k] for k in z.files}


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]  # (1, S)


def test_melspec_matches_tflite(frontend, clips, ref) -> None:
    with torch.inference_mode():
        mel = frontend.melspec(_t(clips["yes"]))[0].numpy()  # (F, 32)
    assert mel.shape == ref["yes_mel"].shape == (97, 32)
    np.testing.assert_allclose(mel, ref["yes_mel"], rtol=0, atol=MEL_ATOL)


@pytest.mark.parametrize("name", ["yes", "long"])
def test_embeddings_match_tflite_windows(frontend, clips, ref, name) -> None:
    """Fully convolutional over the clip == TFLite run on each 76-frame window, step 8."""
    with torch.inference_mode():
        emb = frontend(_t(clips[name]))[0].numpy()  # (T, 96)
    want = ref[f"{name}_emb"]
    assert emb.shape == want.shape
    assert emb.shape[0] == frontend.frames_for(len(clips[name]))
    np.testing.assert_allclose(emb, want, rtol=0, atol=EMB_ATOL)


def test_frames_for_counts() -> None:
    fe = SpeechEmbeddingFrontend.frames_for
    assert MIN_SAMPLES == 12512
    assert fe(1) == 1  # padded to one window
    assert fe(MIN_SAMPLES) == 1
    assert fe(MIN_SAMPLES + 8 * 160 - 1) == 1
    assert fe(MIN_SAMPLES + 8 * 160) == 2
    assert fe(48000) == 28  # 3 s -> (297 - 76) // 8 + 1


def test_short_clip_is_zero_padded_to_one_frame(frontend, clips) -> None:
    short = clips["yes"][4000:8000]  # 0.25 s
    with torch.inference_mode():
        a = frontend(_t(short))  # (1, 1, 96)
        b = frontend(_t(np.pad(short, (0, MIN_SAMPLES - len(short)))))
    assert a.shape == (1, 1, 96)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_batch_padding_does_not_change_valid_frames(frontend, clips) -> None:
    """Per-clip dB floor: a clip padded inside a batch equals the clip alone."""
    yes, long = clips["yes"], clips["long"]
    batch = np.zeros((2, len(long)), np.float32)
    batch[0, : len(yes)] = yes
    batch[1] = long
    with torch.inference_mode():
        both = frontend(torch.from_numpy(batch))  # (2, 28, 96)
        alone = frontend(_t(yes))  # (1, 3, 96)
    n = frontend.frames_for(len(yes))
    torch.testing.assert_close(both[0, :n], alone[0], rtol=0, atol=1e-4)


def test_loader_is_cached_frozen_eval() -> None:
    a = load_speech_embedding_frontend()
    assert a is load_speech_embedding_frontend()
    assert not a.training
    assert all(not p.requires_grad for p in a.parameters())
    assert sum(p.numel() for p in a.parameters()) > 300_000  # the real weights were read
