"""The audio side as one ONNX Runtime graph: it gives the PyTorch embeddings (float32 graph,
tolerance stated) on a real clip and on clips of several lengths, a saved folder with the graph
routes through it, and VOICE_ROUTER_ONNX=0 switches it off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from voice_router.audio.io import load_audio  # noqa: E402
from voice_router.errors import ModelError  # noqa: E402
from voice_router.model import load_model  # noqa: E402
from voice_router.model.embedder import AudioTextEmbedder, named_config, save_model  # noqa: E402
from voice_router.model.onnx_audio import (  # noqa: E402
    ONNX_FP32,
    ONNX_INT8,
    OnnxAudio,
    export_audio_onnx,
)

torch.set_num_threads(1)
DATA = Path(__file__).parents[2] / "data"


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_whisper_config) -> Path:
    m = AudioTextEmbedder(tiny_whisper_config).eval()
    folder = save_model(m, tmp_path_factory.mktemp("m") / "tiny_whisper")
    files = export_audio_onnx(m, folder, int8=True)
    assert [f.name for f in files] == [ONNX_FP32, ONNX_INT8]
    return folder


def test_onnx_graph_matches_pytorch_on_real_and_varied_clips(saved) -> None:
    torch_model = load_model(str(saved))
    clips = [load_audio(DATA / "rhasspy_what_time_is_it.flac")]
    rng = np.random.default_rng(0)
    clips += [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (4000, 37000)]
    with torch.inference_mode():
        want = torch_model.embedder.encode_audio(clips).numpy()  # (3, D)
    got = OnnxAudio(saved / ONNX_FP32, n_mels=80, threads=1)(clips)
    assert got.shape == want.shape
    # float32 graph: same arithmetic up to kernel order; measured max abs diff ~1e-6
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_saved_folder_routes_audio_through_onnx_unless_switched_off(saved, monkeypatch) -> None:
    clip = load_audio(DATA / "rhasspy_turn_on_the_living_room_lamp.flac")
    (saved / ONNX_INT8).rename(saved / "int8.bak")  # fp32 graph only
    try:
        on = load_model(str(saved))
        assert on.onnx_audio is not None and on.onnx_audio.path.name == ONNX_FP32
        monkeypatch.setenv("VOICE_ROUTER_ONNX", "0")
        off = load_model(str(saved))
        assert off.onnx_audio is None
        a, b = on.embed_audio([clip]), off.embed_audio([clip])
        assert a.shape == (1, on.dim) and abs(np.linalg.norm(a) - 1) < 1e-5
        np.testing.assert_allclose(a, b, atol=1e-4)
    finally:
        (saved / "int8.bak").rename(saved / ONNX_INT8)


def test_export_refuses_other_audio_encoders() -> None:
    with pytest.raises(ModelError, match="whisper_unpadded"):
        export_audio_onnx(AudioTextEmbedder(named_config("tiny")), "/nonexistent")
