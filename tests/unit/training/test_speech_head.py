"""The Whisper-tower head trainer and its feature cache: training/speech_cache.py (TTS and short
clip lists, eval texts kept out, chunk files of encoder frames, the cache loader, batched
encoding) and training/speech_head.py (multi-positive InfoNCE, train/resume/--stop-after on a
tiny fake cache, export to a loadable model folder).

Nothing big is loaded: the Whisper encoder is a tiny random one, MiniLM text vectors are
replaced by deterministic random vectors, and the backbone is the tiny random BERT. No test
imports training.augment (torchaudio); where augmentation matters a stand-in module is used.
"""

from __future__ import annotations

import json
import shutil
import sys
import types
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training import speech_cache as sc
from training import speech_head as sh
from training.corpus import HOLDOUT_VARIANTS
from training.losses import info_nce
from training.texts import _WAKE_LIKE, ESSENTIAL_WORDS, normalise
from voice_router.audio.io import load_audio
from voice_router.model.whisper import WhisperAudioEncoder

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[3]
CLIPS = [
    ROOT / "tests" / "data" / "rhasspy_what_time_is_it.flac",
    ROOT / "tests" / "data" / "rhasspy_turn_on_the_living_room_lamp.flac",
]
ENC_DIM = 16  # tiny Whisper encoder width (= cache frame width)
HIDDEN = 32  # the tiny BERT backbone's hidden size (= text vector width)


def _positions(n_samples: int) -> int:
    """Encoder positions of a clip: n // 160 mel frames, then the stride-2 conv."""
    return (max(n_samples // 160, 1) - 1) // 2 + 1


@pytest.fixture
def tiny_encoder(monkeypatch: pytest.MonkeyPatch) -> WhisperAudioEncoder:
    """A tiny random Whisper encoder in place of the bundled tiny.en one."""
    torch.manual_seed(0)
    enc = WhisperAudioEncoder(n_mels=80, dim=ENC_DIM, layers=1, heads=2, ffn=32).eval()
    monkeypatch.setattr(sc, "_ENCODER", enc)
    return enc


# ------------------------------------------------------------------ clip lists

CARRIED = "turn on the lamp"  # every carrier form of it is an eval text
EVAL_TEXT = "what time is it"  # an eval text that is also a command text


def _hashed_val_texts(n: int) -> list[str]:
    """Texts that tts_items holds out by hash (_h < 0.03), whatever their voice."""
    cands = (f"dim the kitchen lights to {i} percent" for i in range(2000))
    return [t for t in cands if sc._h(t) < 0.03][:n]


@pytest.fixture
def command_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A tmp DATA folder with two eval manifests, and a small command list that includes an
    eval text and a text whose every carrier is an eval text. Returns the command texts."""
    carried = [normalise(c.format(t=CARRIED)) for c in sc.CARRIERS]
    ha = tmp_path / "ha_commands_en"
    ha.mkdir()
    rows = ["path,text,label,speaker"] + [
        f"wavs/c{i}.flac,{t.upper()},X,s1" for i, t in enumerate(carried)
    ]
    (ha / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    rh = tmp_path / "rhasspy_en"
    rh.mkdir()
    (rh / "manifest.csv").write_text(
        "path,text,label,speaker\nwav/en/t.flac,What time is it?,GetTime,\n"
        "wav/en/e.flac,,Empty,\nwav/en/p.flac,Pause,HassMediaPause,\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(sc, "DATA", tmp_path)
    texts = [f"play song number {i} from my list" for i in range(80)]
    texts += [CARRIED, EVAL_TEXT, "stop", *_hashed_val_texts(3)]
    monkeypatch.setattr(sc, "read_command_texts", lambda: [(t, "x:intent") for t in sorted(texts)])
    return texts


def _bare_texts(texts: list[str]) -> dict[str, str]:
    """Spoken text -> the command text it was made from (plain or with a carrier)."""
    by_said: dict[str, str] = {}
    for t in texts:
        for s in [t, *(normalise(c.format(t=t)) for c in sc.CARRIERS)]:
            assert by_said.setdefault(s, t) == t, f"ambiguous spoken text {s!r}"
    return by_said


def test_eval_texts_are_normalised_and_read_from_both_sets(command_world: list[str]) -> None:
    got = sc.eval_texts()
    assert EVAL_TEXT in got and "please turn on the lamp" in got
    assert "" not in got and len(got) == len(set(sc.CARRIERS)) + 2


def test_tts_items_keep_eval_texts_out(command_world: list[str]) -> None:
    banned = sc.eval_texts()
    bare_of = _bare_texts(command_world)
    for p_carrier in (0.0, 0.35, 1.0):
        items = sc.tts_items(1000, seed=0, p_carrier=p_carrier)
        said = [it.text for it in items]
        assert not set(said) & banned
        assert all(it.spec is not None and it.spec["text"] == it.text for it in items)
        # the eval text is dropped; the one-word command too (>= 2 words)
        bare = {bare_of[s] for s in said}
        assert bare == set(command_world) - {EVAL_TEXT, "stop"}
    # with a carrier always drawn, CARRIED can only be said bare: every carrier form is banned
    items = sc.tts_items(1000, seed=0, p_carrier=1.0)
    assert CARRIED in {it.text for it in items}
    assert sum(it.text != bare_of[it.text] for it in items) == len(items) - 1


def test_tts_items_deterministic_ids_and_splits(command_world: list[str]) -> None:
    bare_of = _bare_texts(command_world)
    a = sc.tts_items(1000, seed=0)
    assert a == sc.tts_items(1000, seed=0)
    assert [it.text for it in a] != [it.text for it in sc.tts_items(1000, seed=1)]
    assert len(sc.tts_items(5, seed=0)) == 5
    ids = [it.clip_id for it in a]
    assert len(set(ids)) == len(ids)
    assert not any("/" in i for i in ids)  # flite writes files named by clip id
    why = Counter()
    for it in a:
        assert it.source == "tts" and it.spec is not None and it.spec["clip_id"] == it.clip_id
        assert (
            it.spec["split"] == it.split and it.speaker == f"{it.spec['engine']}:{it.spec['voice']}"
        )
        voice_out = it.spec["voice"].split("+")[-1] in HOLDOUT_VARIANTS
        text_out = sc._h(bare_of[it.text]) < 0.03
        assert it.split == ("val" if voice_out or text_out else "train"), it
        why.update({"voice": voice_out, "text": text_out, "train": not (voice_out or text_out)})
    assert why["voice"] >= 1 and why["text"] >= 3 and why["train"] > len(a) // 2
    split_of = {bare_of[it.text]: it.split for it in a}
    assert all(split_of[t] == "val" for t in _hashed_val_texts(3))


def test_short_items_every_text_by_every_voice() -> None:
    texts = (set(ESSENTIAL_WORDS) | set(_WAKE_LIKE)) - sc.eval_texts()
    for voices in (3, 8):
        items = sc.short_items(voices=voices)
        counts = Counter(it.text for it in items)
        assert set(counts) == texts and set(counts.values()) == {voices}
        ids = [it.clip_id for it in items]
        assert len(set(ids)) == len(ids) and not any("/" in i for i in ids)
        for it in items:
            assert it.source == "tts-short" and it.spec is not None
            assert it.spec["clip_id"] == it.clip_id and it.spec["text"] == it.text
            held = it.spec["voice"].split("+")[-1] in HOLDOUT_VARIANTS
            assert it.split == ("val" if held else "train")
    assert sc.short_items(voices=3) == sc.short_items(voices=3)


def test_short_items_keep_eval_texts_out(command_world: list[str]) -> None:
    assert {"what time is it", "pause"} <= sc.eval_texts()
    assert not {it.text for it in sc.short_items(voices=1)} & sc.eval_texts()


@pytest.fixture
def phrase_world(command_world: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """command_world plus wake-phrase and Speech Commands manifests, over a word list that
    holds a wake word ("mirror"), a command word ("left") and stopwords."""
    sets = {"wake_phrases": ["Smart Mirror", "Snowboy"], "speech_commands_dev": ["left", ""]}
    for name, texts in sets.items():
        d = sc.DATA / name
        d.mkdir()
        rows = ["path,text,label,speaker"] + [f"a{i}.flac,{t},L,s" for i, t in enumerate(texts)]
        (d / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    words = """mirror left the please pear plum window tulip garden lamp candle river stone
    cloud maple copper violet harbour""".split()
    rows = [(f"{a} {b} {c}", "x:y") for a in words for b in words for c in words[:3]]
    monkeypatch.setattr(sc, "read_command_texts", lambda: rows)
    return {"words": words}


def test_phrase_vocabulary_drops_stopwords_and_rare_words(phrase_world: dict) -> None:
    vocab = sc.phrase_vocabulary()
    assert vocab == sorted(set(phrase_world["words"]) - {"the", "please"})
    assert sc.phrase_vocabulary(min_count=10**6) == []


def test_phrase_items_never_say_an_evaluation_phrase_or_wake_word(phrase_world: dict) -> None:
    items = sc.phrase_items(n_texts=300, voices=2, seed=0)
    texts = [it.text for it in items]
    assert len(items) == 600 and Counter(Counter(texts).values()) == {2: 300}
    assert not any({"mirror", "smart", "snowboy"} & set(t.split()) for t in texts)
    assert "left" not in texts and not set(texts) & sc.eval_texts()
    assert "left" in {w for t in texts for w in t.split()}  # a command word may be part of one
    sizes = Counter(len(t.split()) for t in texts)
    assert sizes[1] and sizes[2] and sizes[3]
    assert any(t.split()[0] in ("hey", "okay") for t in texts)
    vocab = set(sc.phrase_vocabulary())
    assert any(len(t.split()) == 1 and t not in vocab for t in texts)  # made-up names
    ids = [it.clip_id for it in items]
    assert len(set(ids)) == len(ids) and not any("/" in i for i in ids)
    for it in items:
        assert it.source == "tts-phrases" and it.spec is not None and it.spec["text"] == it.text
        held = it.spec["voice"].split("+")[-1] in HOLDOUT_VARIANTS
        assert it.split == ("val" if held else "train")
    assert items == sc.phrase_items(n_texts=300, voices=2, seed=0)


def test_phrase_items_stop_when_the_vocabulary_runs_out(
    phrase_world: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    few = [("pear plum", "x:y")] * 3 + [("window", "x:y")] * 3
    monkeypatch.setattr(sc, "read_command_texts", lambda: few)
    texts = {it.text for it in sc.phrase_items(n_texts=1000, voices=1)}
    assert 0 < len(texts) < 1000 and {"pear", "plum", "window"} <= texts
    monkeypatch.setattr(sc, "read_command_texts", lambda: few[:3])
    with pytest.raises(SystemExit, match="vocabulary too small"):
        sc.phrase_items(n_texts=10)


# ------------------------------------------------------------------ chunks and the loader


def _real_items() -> list[sc.Item]:
    a, b = (str(p) for p in CLIPS)
    return [
        sc.Item("so762/a.flac", "what time is it", "so762-train", "so762:1", "train", a),
        sc.Item("so762/b.flac", "turn on the living room lamp", "so762-test", "so762:2", "test", b),
    ]


def _fake_augment_module() -> types.ModuleType:
    """Stands in for training.augment (torchaudio): a shorter, quieter copy of the clip."""
    mod = types.ModuleType("training.augment")

    def augment(a: np.ndarray, rng: np.random.Generator, others: list[np.ndarray]) -> np.ndarray:
        assert isinstance(rng, np.random.Generator) and len(others) == 2
        return (a[: len(a) - 1600 - int(rng.integers(0, 320))] * 0.5).astype(np.float32)

    mod.augment = augment  # type: ignore[attr-defined]
    return mod


def test_process_chunk_writes_frames_meta_and_loads(
    tiny_encoder: WhisperAudioEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "speech"
    out.mkdir()
    with pytest.raises(SystemExit, match="no cache chunks"):
        sc.load_cache(out)
    items = _real_items()
    waves = [load_audio(p) for p in CLIPS]
    name, n, secs = sc.process_chunk("so762-train-0000", items, 0, out)
    assert (name, n) == ("so762-train-0000", 2) and secs >= 0
    assert sorted(p.name for p in out.iterdir()) == ["so762-train-0000.npz"]  # no tmp left
    z = np.load(out / "so762-train-0000.npz")
    assert z["frames"].dtype == np.float16 and z["frames"].shape[1] == ENC_DIM
    assert z["f_len"].tolist() == [_positions(len(w)) for w in waves]
    assert z["frames"].shape[0] == sum(z["f_len"])
    meta = json.loads(str(z["meta"]))
    assert meta == [
        {
            "clip_id": it.clip_id,
            "version": 0,
            "text": it.text,
            "source": it.source,
            "speaker": it.speaker,
            "split": it.split,
        }
        for it in items
    ]
    alone = [sc.encode([w])[0] for w in waves]
    for i, off in ((0, 0), (1, z["f_len"][0])):  # each clip's rows: its frames, as if alone
        got = z["frames"][off : off + z["f_len"][i]].astype(np.float32)
        np.testing.assert_allclose(got, alone[i].astype(np.float32), atol=4e-3)

    # with augmentation: the train clip gets n_aug more versions, the test clip none
    monkeypatch.setitem(sys.modules, "training.augment", _fake_augment_module())
    sc.process_chunk("so762-train-0001", items, 2, out)
    z2 = np.load(out / "so762-train-0001.npz")
    meta2 = json.loads(str(z2["meta"]))
    assert [(m["clip_id"], m["version"]) for m in meta2] == [
        ("so762/a.flac", 0),
        ("so762/a.flac", 1),
        ("so762/a.flac", 2),
        ("so762/b.flac", 0),
    ]
    assert z2["f_len"][0] == z["f_len"][0] and z2["f_len"][3] == z["f_len"][1]
    assert all(z2["f_len"][v] < z2["f_len"][0] for v in (1, 2))  # the shorter augmented copies

    # leftovers the loader must skip: an unfinished chunk and a file of no known source
    (out / "so762-train-0002.tmp.npz").write_bytes(b"partial")
    (out / "notes-0000.npz").write_bytes(b"not a chunk")
    cache = sc.load_cache(out)
    assert len(cache.meta) == len(cache.f_len) == len(cache.f_off) == 6
    assert [m["version"] for m in cache.meta] == [0, 0, 0, 1, 2, 0]
    assert cache.f_off[0] == 0 and cache.f_off[-1] + cache.f_len[-1] == cache.frames.shape[0]
    for i in range(6):
        assert cache.sample(i).shape == (cache.f_len[i], ENC_DIM)
    clean = {0: alone[0], 1: alone[1], 2: alone[0], 5: alone[1]}  # version-0 samples
    for i, ref in clean.items():
        got = cache.sample(i).astype(np.float32)
        np.testing.assert_allclose(got, ref.astype(np.float32), atol=4e-3)
    with pytest.raises(SystemExit, match="no cache chunks"):
        sc.load_cache(out, sources=("tts",))


def test_encode_batched_equals_alone(tiny_encoder: WhisperAudioEncoder) -> None:
    rng = np.random.default_rng(0)
    lengths = (20237, 300, 8000, 12345, 4161)
    waves = [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in lengths]
    alone = [sc.encode([w])[0] for w in waves]
    for batch in (8, 2):
        got = sc.encode(waves, batch=batch)
        for n, a, g in zip(lengths, alone, got, strict=True):
            assert g.dtype == np.float16 and g.shape == a.shape == (_positions(n), ENC_DIM)
            np.testing.assert_allclose(g.astype(np.float32), a.astype(np.float32), atol=4e-3)


def test_load_cache_takes_only_the_named_sources(tmp_path: Path) -> None:
    for name in ("tts-0000", "tts-short-0000"):
        meta = [{"clip_id": name, "version": 0, "text": "x", "source": name[:-5]}]
        frames = np.zeros((3, ENC_DIM), np.float16)
        f_len = np.array([3], np.int32)
        np.savez(tmp_path / f"{name}.npz", frames=frames, f_len=f_len, meta=json.dumps(meta))
    assert len(sc.load_cache(tmp_path).meta) == 2
    assert [m["source"] for m in sc.load_cache(tmp_path, sources=("tts",)).meta] == ["tts"]


def test_cache_summary_counts_samples_and_frames_without_loading_frames(tmp_path: Path) -> None:
    chunks = {"vocab-0000": (2, "train", [3, 5]), "vocab-test-unseen-0000": (1, "test", [4])}
    for name, (n, split, lens) in chunks.items():
        src = name.rsplit("-", 1)[0]
        meta = [{"clip_id": f"{name}/{i}", "source": src, "split": split} for i in range(n)]
        frames = np.zeros((sum(lens), ENC_DIM), np.float16)
        f_len = np.array(lens, np.int32)
        np.savez(tmp_path / f"{name}.npz", frames=frames, f_len=f_len, meta=json.dumps(meta))
    (tmp_path / "vocab-0001.tmp.npz").write_bytes(b"partial")  # an unfinished chunk is skipped
    by, n_frames = sc.cache_summary(tmp_path)
    assert by == {("vocab", "train"): 2, ("vocab-test-unseen", "test"): 1}
    assert n_frames == 12
    assert sc.cache_summary(tmp_path, sources=("vocab",)) == ({("vocab", "train"): 2}, 8)


# ------------------------------------------------------------------ the loss


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


def test_multi_positive_nce() -> None:
    g = torch.Generator().manual_seed(0)
    a, t = _unit(torch.randn(6, 8, generator=g)), _unit(torch.randn(6, 8, generator=g))
    scale = torch.tensor(10.0)
    got = sh.multi_positive_nce(a, t, torch.arange(6), scale)
    torch.testing.assert_close(got, info_nce(a, t, temperature=1 / scale), rtol=1e-5, atol=1e-6)

    tid = torch.tensor([0, 1, 2, 0, 3, 4])  # rows 0 and 3 say the same text
    swapped = t[[3, 1, 2, 0, 4, 5]]
    base = sh.multi_positive_nce(a, t, tid, scale)
    torch.testing.assert_close(sh.multi_positive_nce(a, swapped, tid, scale), base)
    # plain InfoNCE would tell the two apart: the swap is a real change
    assert not torch.isclose(info_nce(a, swapped, 0.1), info_nce(a, t, 0.1))

    for ids in (torch.arange(6), tid):
        losses = [
            float(sh.multi_positive_nce(_unit((1 - k) * a + k * t), t, ids, scale))
            for k in (0.0, 0.3, 0.6, 1.0)
        ]
        assert all(x > y for x, y in zip(losses, losses[1:], strict=False)), losses


# ------------------------------------------------------------------ training on a fake cache


def _fake_text_vectors(texts: list[str]) -> np.ndarray:
    return np.stack(
        [
            np.random.default_rng(zlib.crc32(t.encode())).standard_normal(HIDDEN).astype(np.float32)
            for t in texts
        ]
    )


def _write_fake_cache(out: Path) -> list[dict]:
    """Three chunk files in process_chunk's format; returns the meta rows in load order."""
    rng = np.random.default_rng(0)
    plan = {
        "so762-test-0000": [("so762-test", "test", f"sentence {i % 4}", i // 5) for i in range(6)],
        "so762-train-0000": [
            ("so762-train", "train", f"sentence {i % 5}", i % 2) for i in range(8)
        ],
        "tts-0000": [("tts", "train", f"command {i}", 0) for i in range(6)]
        + [("tts", "val", "held out command", 0)],
        "tts-short-0000": [("tts-short", "train", f"word {i % 3}", 0) for i in range(6)],
    }
    out.mkdir(parents=True)
    every = []
    for name, rows in plan.items():
        lens = rng.integers(4, 40, len(rows)).astype(np.int32)
        meta = [
            {
                "clip_id": f"{name}-{k}",
                "version": v,
                "text": text,
                "source": src,
                "speaker": f"spk{k % 3}",
                "split": split,
            }
            for k, (src, split, text, v) in enumerate(rows)
        ]
        frames = rng.standard_normal((int(lens.sum()), ENC_DIM)).astype(np.float16)
        np.savez(out / f"{name}.npz", frames=frames, f_len=lens, meta=np.array(json.dumps(meta)))
        every += meta
    return every


def _lengths_cache(lengths: list[int]) -> sc.SpeechCache:
    """A cache whose sample i has rows i*1000 + 0, 1, 2... in every column (2 columns)."""
    f_len = np.array(lengths, np.int32)
    f_off = np.concatenate([[0], np.cumsum(f_len)[:-1]]).astype(np.int64)
    rows = np.concatenate([i * 1000 + np.arange(n) for i, n in enumerate(lengths)])
    frames = np.repeat(rows[:, None], 2, axis=1).astype(np.float32)
    return sc.SpeechCache(frames, f_off, f_len, [{} for _ in lengths])


def test_pad_zero_pads_and_crops() -> None:
    cache = _lengths_cache([5, 12, 3])
    x, n = sh.pad(cache, np.array([2, 0]), 8)
    assert x.dtype == torch.float32 and x.shape == (2, 5, 2) and n.tolist() == [3, 5]
    assert x[0, :3, 0].tolist() == [2000, 2001, 2002] and not x[0, 3:].any()
    x, n = sh.pad(cache, np.array([1, 2]), 8)  # sample 1 is cropped to 8 rows
    assert x.shape == (2, 8, 2) and n.tolist() == [8, 3]
    rows = x[0, :, 0] - 1000
    assert (rows[1:] - rows[:-1] == 1).all() and 0 <= rows[0] <= 12 - 8  # 8 consecutive rows


def _tiny_config(path: Path) -> Path:
    cfg = json.loads((ROOT / "training" / "configs" / "whisper_tiny_attn.json").read_text())
    tiny = json.loads((ROOT / "voice_router" / "configs" / "tiny.json").read_text())
    cfg["audio_encoder"] = {
        "name": "whisper_unpadded",
        "pretrained": None,
        "config": {"dim": ENC_DIM, "layers": 1, "heads": 2, "ffn": 32},
    }
    # dropout 0: two runs of one schedule must be comparable step for step
    cfg["prenet"].update(dim=16, heads=2, transformer_layers=1, input_pool=2, dropout=0.0)
    cfg["backbone"] = tiny["backbone"]
    cfg["train"] = {"distill_weight": 1.0}
    path.write_text(json.dumps(cfg))
    return path


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _ckpts(run: Path) -> list[str]:
    return sorted(p.name for p in run.glob("step*.pt"))


def _train(run: Path, world: dict, *extra: str) -> int:
    args = ["train", "--run", str(run), "--config", str(world["config"])]
    args += ["--cache", str(world["cache"]), "--batch", "4", *extra]
    return sh.main(args)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a dict of paths
    """A fake cache, a tiny config, fake text vectors, and one 4-step run (pad calls logged)."""
    root = tmp_path_factory.mktemp("speech_head")
    meta = _write_fake_cache(root / "cache")
    w = {"root": root, "cache": root / "cache", "config": _tiny_config(root / "tiny.json")}
    w["meta"] = meta
    calls: list[tuple[list[int], int]] = []
    real_pad = sh.pad

    def logging_pad(cache, idx, max_frames):  # noqa: ANN001, ANN202
        calls.append((list(map(int, idx)), max_frames))
        return real_pad(cache, idx, max_frames)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sh, "text_vectors", _fake_text_vectors)
        mp.setattr(sh, "pad", logging_pad)
        run = root / "run"
        extra = ("--steps", "4", "--eval-every", "2", "--ckpt-every", "2")
        assert _train(run, w, *extra) == 0
        w["run"], w["pad_calls"] = run, list(calls)
        mp.setattr(sh, "pad", real_pad)
        yield w


def test_train_logs_evaluates_and_checkpoints(world: dict) -> None:
    run = world["run"]
    rows = _rows(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert all(np.isfinite(r[k]) for k in ("loss", "nce", "distill", "scale"))
        assert r["loss"] == pytest.approx(r["nce"] + r["distill"], rel=1e-5)
    assert [("cvR@5" in r) for r in rows] == [False, True, False, True]
    assert all(0 <= rows[k][m] <= 1 for k in (1, 3) for m in ("cvR@5", "R@1", "a2t_R@1"))
    assert _ckpts(run) == ["step000002.pt", "step000004.pt"]
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"] == {"distill_weight": 1.0} and saved["prenet"]["dim"] == 16

    meta = world["meta"]
    steps = [idx for idx, mf in world["pad_calls"] if mf == 400]
    evals = [idx for idx, mf in world["pad_calls"] if mf != 400]
    assert len(steps) == 4 and all(len(idx) == 4 == len(set(idx)) for idx in steps)
    for idx in steps:  # only training clips of the mixed sources are ever drawn
        for i in idx:
            assert meta[i]["split"] == "train" and meta[i]["source"] in sh.DEFAULT_MIX
    want = [i for i, m in enumerate(meta) if m["source"] == "so762-test" and m["version"] == 0]
    assert evals == [want, want]


def test_train_resumes_from_last_checkpoint(world: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sh, "text_vectors", _fake_text_vectors)
    run = world["root"] / "resumed"
    shutil.copytree(world["run"], run)
    before = _rows(run)
    # mark the checkpoint: the resumed model must start from it (its logit scale is logged)
    state = torch.load(run / "step000004.pt", map_location="cpu")
    state["model"]["logit_scale"] = torch.tensor(np.log(7.0), dtype=torch.float32)
    torch.save(state, run / "step000004.pt")
    assert _train(run, world, "--steps", "6", "--eval-every", "2", "--ckpt-every", "2") == 0
    rows = _rows(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[:4] == before
    assert rows[4]["scale"] == pytest.approx(7.0, rel=1e-5)
    assert _ckpts(run) == ["step000002.pt", "step000004.pt", "step000006.pt"]
    state = torch.load(run / "step000006.pt", map_location="cpu")
    assert state["step"] == 6
    # the optimiser went on from step 4: Adam has taken 6 steps, not 2
    assert {int(s["step"]) for s in state["opt"]["state"].values()} == {6}


def test_stop_after_keeps_the_schedule(world: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sh, "text_vectors", _fake_text_vectors)
    common = ("--warmup", "1", "--eval-every", "100", "--ckpt-every", "3")
    full, stopped, short = (world["root"] / n for n in ("full", "stopped", "short"))
    assert _train(full, world, "--steps", "6", *common) == 0
    assert _train(stopped, world, "--steps", "6", "--stop-after", "3", *common) == 0
    assert _train(short, world, "--steps", "3", *common) == 0
    assert [r["step"] for r in _rows(stopped)] == [1, 2, 3]
    assert _ckpts(stopped) == ["step000003.pt"] and _ckpts(full) == [
        "step000003.pt",
        "step000006.pt",
    ]
    assert "cvR@5" in _rows(stopped)[-1]  # the last step is evaluated
    for a, b in zip(_rows(stopped), _rows(full)[:3], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)

    def weights(run: Path) -> dict[str, torch.Tensor]:
        return torch.load(run / "step000003.pt", map_location="cpu")["model"]

    ws, wf, wshort = weights(stopped), weights(full), weights(short)
    for k in ws:
        torch.testing.assert_close(ws[k], wf[k])
    # a 3-step schedule decays the lr sooner: its weights differ, so the check above can fail
    assert any(not torch.allclose(ws[k], wshort[k]) for k in ws if ws[k].is_floating_point())


def test_export_writes_a_loadable_model(world: dict) -> None:
    from voice_router.model import load_embedder, load_model

    out = world["root"] / "exported"
    args = ["export", "--run", str(world["run"]), "--out", str(out), "--no-onnx"]
    with pytest.raises(SystemExit, match="--fusion: unknown fusion 'mean'"):
        sh.main([*args, "--fusion", "mean"])  # refused before anything is written
    assert not out.exists()
    assert sh.main([*args, "--fusion", "weighted:0.3,0.7", "--fusion-note", "dev"]) == 0
    assert load_model(str(out)).fusion == "weighted:0.3,0.7"
    ckpt = torch.load(world["run"] / "step000004.pt", map_location="cpu")["model"]
    loaded = load_embedder(out).trainable_state_dict()
    assert set(loaded) == set(ckpt)
    for k, v in ckpt.items():  # the last checkpoint, float16-rounded
        torch.testing.assert_close(loaded[k], v.to(torch.float16).to(v.dtype), rtol=0, atol=0)
    model = load_model(str(out))
    emb = model.embed_audio([load_audio(CLIPS[0])])
    assert emb.shape == (1, HIDDEN) and np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_one_word_negatives_swap_exactly_one_opposite_word() -> None:
    from training.speech_head import one_word_negatives

    assert one_word_negatives("turn on the lamp") == ["turn off the lamp"]
    assert one_word_negatives("Open the door, then lock it.") == [
        "close the door, then lock it.",
        "Open the door, then unlock it.",
    ]
    assert one_word_negatives("what time is it") == []
    assert len(one_word_negatives("up up up up", limit=2)) == 2


def test_hard_negatives_only_add_to_the_audio_to_text_side() -> None:
    import torch

    from training.speech_head import multi_positive_nce

    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    ids, scale = torch.arange(4), torch.tensor(10.0)
    base = multi_positive_nce(a, t, ids, scale)
    assert torch.allclose(multi_positive_nce(a, t, ids, scale, t[:0]), base)
    # a negative equal to clip 0's own text is the hardest one: the loss must rise
    assert multi_positive_nce(a, t, ids, scale, t[:1]) > base


def test_text_negatives_come_from_the_pool_and_never_from_the_batch() -> None:
    rng = np.random.default_rng(0)
    pool = np.arange(10, 30)
    for _ in range(20):
        batch = rng.choice(np.arange(0, 40), size=8)
        got = sh.draw_text_negatives(rng, pool, batch, 12)
        assert len(set(got.tolist())) == len(got) <= 12
        assert set(got.tolist()) <= set(pool.tolist())
        assert not set(got.tolist()) & set(batch.tolist())
    assert len(sh.draw_text_negatives(rng, pool, np.array([]), 100)) == 20  # capped at the pool


def test_train_with_text_negatives(world: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """--text-negatives adds the drawn texts to the audio->text side of the InfoNCE."""
    monkeypatch.setattr(sh, "text_vectors", _fake_text_vectors)
    seen: list[int] = []
    real = sh.multi_positive_nce

    def spy(a, t, tid, scale, hard=None):  # noqa: ANN001, ANN202
        seen.append(0 if hard is None else len(hard))
        return real(a, t, tid, scale, hard)

    monkeypatch.setattr(sh, "multi_positive_nce", spy)
    run = world["root"] / "textneg"
    assert _train(run, world, "--steps", "2", "--eval-every", "2", "--text-negatives", "3") == 0
    assert len(seen) == 2 and all(n >= 1 for n in seen)
    assert all(np.isfinite(r["loss"]) for r in _rows(run))


def test_parse_mix_reads_weights_and_rejects_bad_specs() -> None:
    assert sh.parse_mix(None) == sh.DEFAULT_MIX
    assert sh.parse_mix("tts=2, tts-short=1") == {"tts": 2.0, "tts-short": 1.0}
    for bad, said in [
        ("tts", "SOURCE=WEIGHT"),
        ("speech=1", "SOURCE=WEIGHT"),
        ("tts=lots", "not a number"),
        ("tts=-1", "negative"),
        ("tts=0", "sum to zero"),
    ]:
        with pytest.raises(SystemExit, match=said):
            sh.parse_mix(bad)


def test_train_draws_only_the_mixed_sources(world: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """--mix so762-train=1 draws every training clip from speechocean762 and records itself."""
    monkeypatch.setattr(sh, "text_vectors", _fake_text_vectors)
    drawn: list[int] = []
    real_pad = sh.pad

    def logging_pad(cache, idx, max_frames):  # noqa: ANN001, ANN202
        if max_frames == 400:
            drawn.extend(map(int, idx))
        return real_pad(cache, idx, max_frames)

    monkeypatch.setattr(sh, "pad", logging_pad)
    run = world["root"] / "mixed"
    assert _train(run, world, "--steps", "2", "--eval-every", "2", "--mix", "so762-train=1") == 0
    assert len(drawn) == 8
    assert {world["meta"][i]["source"] for i in drawn} == {"so762-train"}
    assert json.loads((run / "args.json").read_text())["mix"] == {"so762-train": 1.0}
    # a mix of sources the cache does not hold says so instead of training on nothing
    with pytest.raises(SystemExit, match="no training clips of these sources"):
        _train(world["root"] / "nothing", world, "--steps", "2", "--mix", "tts-phrases=1")


def test_average_interpolates_two_checkpoints(world: dict, tmp_path: Path) -> None:
    a, b = world["run"] / "step000002.pt", world["run"] / "step000004.pt"
    args = ["average", "--a", str(a), "--b", str(b), "--weight", "0.25", "--run", str(tmp_path)]
    assert sh.main(args) == 0
    got = torch.load(tmp_path / "step000004.pt", map_location="cpu")
    sa, sb = (torch.load(p, map_location="cpu")["model"] for p in (a, b))
    assert set(got["model"]) == set(sa)
    for k, v in got["model"].items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.25 * sb[k] + 0.75 * sa[k])
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)  # the two differ: a real mix
    assert (tmp_path / "config.json").read_text() == (world["run"] / "config.json").read_text()
