"""Manifest readers, weighted mixing and the audio/text pair dataset of the trainer.

Every reader turns one public dataset's on-disk layout into a list of `Pair`s. Paths are checked
at read time: a row whose audio file does not exist is counted in `ReadStats.missing` and
skipped; a file that exists but fails to decode is counted by `PairDataset` (`bad`) and skipped
at batch time. A run never crashes on a bad file; the counts are logged to metrics.jsonl.

Layouts (ROOT is the folder given as `path:` in a config's data section):

- generic (`csv` / `jsonl`): a file with columns `audio,text` (or `path,text`, the layout of
  ../shared/data manifests); audio paths relative to the file's folder. Optional `id` column:
  rows with the same id are one clip with several captions.
- audiocaps: ROOT/{split}.csv with `audiocap_id,youtube_id,start_time,caption` (the official
  CSVs); audio at ROOT/audio/{split}/{youtube_id}.{wav,flac,...} (a `Y` prefix or a
  `_{start_time}` suffix, as common downloaders write, is also found).
- clotho: ROOT/clotho_captions_{split}.csv with `file_name,caption_1..caption_5`;
  audio at ROOT/{split}/{file_name}. Splits: development, validation, evaluation.
- audioset_strong: ROOT/audioset_{split}_strong.tsv with
  `segment_id,start_time_seconds,end_time_seconds,label` (label = MID) and
  ROOT/mid_to_display_name.tsv (`mid<TAB>name`, no header); audio at
  ROOT/audio/{split}/{segment_id}.{ext}. The caption lists the events in onset order
  ("Dog, then Speech and Car"), so the temporal labels become text.
- fsd50k: ROOT/FSD50K.ground_truth/{dev,eval}.csv with `fname,labels,mids[,split]`
  (labels comma-separated, e.g. `Bark,Dog,Animal`); audio at ROOT/FSD50K.{dev,eval}_audio/
  {fname}.wav. split "train"/"val" select rows of dev.csv by its split column; "eval" is eval.csv.
- urbansound8k: ROOT/metadata/UrbanSound8K.csv with
  `slice_file_name,fsID,start,end,salience,fold,classID,class`; audio at
  ROOT/audio/fold{fold}/{slice_file_name}. `folds:` selects folds (default all).
- macs: ROOT/MACS.yaml (`files: [{filename, annotations: [{sentence, ...}]}]`); audio (TAU
  Urban Acoustic Scenes 2019 development) at ROOT/audio/{filename}.
- Text pairs (text-only modality transfer; `text2` is the positive of `text`):
  - nli (MultiNLI / SNLI jsonl): `sentence1,sentence2,gold_label`; entailment rows kept.
  - fever: jsonl with `claim`, `label`, `evidence` (a list of evidence sentence strings, i.e.
    FEVER with the wiki sentences already joined in); SUPPORTS rows kept.
  - scifact: ROOT/claims_{split}.jsonl (`id,claim,evidence{doc_id:[{sentences,label}]}`) and
    ROOT/corpus.jsonl (`doc_id,title,abstract[list of sentences]`); SUPPORT evidence kept.

Audio is decoded by voice_router.audio.io.load_audio (16 kHz mono float32) and cut to 30 s.
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from voice_router.errors import AudioError, VoiceRouterError

SAMPLE_RATE = 16000
MAX_SECONDS = 30.0
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a")


class DataError(VoiceRouterError):
    """A manifest or dataset layout is unusable (missing file, missing columns)."""

    exit_code = 2


@dataclass
class Pair:
    """One training/eval example: an audio clip (or None for text pairs) and its text.

    `group` identifies the clip: captions sharing a group are all correct for that clip.
    """

    text: str
    audio: str | None = None
    text2: str | None = None
    group: str = ""
    source: str = ""


@dataclass
class ReadStats:
    """What a reader kept and skipped."""

    rows: int = 0
    kept: int = 0
    missing: int = 0
    filtered: int = 0
    missing_examples: list[str] = field(default_factory=list)

    def miss(self, what: str) -> None:
        self.missing += 1
        if len(self.missing_examples) < 5:
            self.missing_examples.append(what)


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{what} not found: {path}. Check the dataset root and its layout.")
    return path


def _read_csv(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    with open(_need(path, "manifest"), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(_need(path, "manifest"), encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{i}: invalid JSON ({e.msg}).") from e
    return rows


def _find_audio(folder: Path, stems: Sequence[str]) -> Path | None:
    for stem in stems:
        p = folder / stem
        if p.suffix.lower() in AUDIO_EXTS and p.exists():
            return p
        for ext in AUDIO_EXTS:
            q = folder / f"{stem}{ext}"
            if q.exists():
                return q
    return None


def _add(out: list[Pair], stats: ReadStats, audio: Path | None, want: str, **kw: Any) -> None:
    stats.rows += 1
    if audio is None or not audio.exists():
        stats.miss(want)
        return
    stats.kept += 1
    out.append(Pair(audio=str(audio), **kw))


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


def read_generic(path: str | Path, stats: ReadStats) -> list[Pair]:
    """CSV or JSONL with `audio` (or `path`) and `text`; audio relative to the file's folder."""
    path = Path(path)
    rows = _read_jsonl(path) if path.suffix == ".jsonl" else _read_csv(path)
    out: list[Pair] = []
    for i, r in enumerate(rows):
        rel = r.get("audio") or r.get("path")
        text = r.get("text")
        if not rel or not text:
            stats.rows += 1
            stats.filtered += 1
            continue
        audio = Path(rel) if Path(rel).is_absolute() else path.parent / rel
        gid = str(r.get("id") or rel or i)
        _add(out, stats, audio, str(audio), text=str(text), group=gid, source=path.stem)
    return out


def read_audiocaps(root: str | Path, split: str, stats: ReadStats) -> list[Pair]:
    """AudioCaps (Kim et al. 2019): see the module docstring for the layout."""
    root = Path(root)
    folder = root / "audio" / split
    out: list[Pair] = []
    for r in _read_csv(root / f"{split}.csv"):
        yt, start = r["youtube_id"], str(r.get("start_time", "")).split(".")[0]
        audio = _find_audio(folder, [yt, f"Y{yt}", f"{yt}_{start}", f"Y{yt}_{start}"])
        _add(out, stats, audio, f"{folder}/{yt}", text=r["caption"], group=yt, source="audiocaps")
    return out


def read_clotho(root: str | Path, split: str, stats: ReadStats) -> list[Pair]:
    """Clotho v2 (Drossos et al. 2020): five captions per clip."""
    root = Path(root)
    out: list[Pair] = []
    for r in _read_csv(root / f"clotho_captions_{split}.csv"):
        audio = root / split / r["file_name"]
        for k in range(1, 6):
            cap = r.get(f"caption_{k}")
            if cap:
                _add(out, stats, audio, str(audio), text=cap, group=r["file_name"], source="clotho")
    return out


def read_audioset_strong(root: str | Path, split: str, stats: ReadStats) -> list[Pair]:
    """AudioSet strong labels (Hershey et al. 2021): events in onset order become the caption."""
    root = Path(root)
    names: dict[str, str] = {}
    with open(_need(root / "mid_to_display_name.tsv", "label map"), encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2:
                names[parts[0]] = parts[1]
    events: dict[str, list[tuple[float, str]]] = {}
    for r in _read_csv(root / f"audioset_{split}_strong.tsv", delimiter="\t"):
        name = names.get(r["label"], r["label"])
        events.setdefault(r["segment_id"], []).append((float(r["start_time_seconds"]), name))
    folder = root / "audio" / split
    out: list[Pair] = []
    for seg, evs in events.items():
        ordered: list[str] = []
        for _, name in sorted(evs):
            if name not in ordered:
                ordered.append(name)
        text = ordered[0] if len(ordered) == 1 else ", then ".join(ordered)
        audio = _find_audio(folder, [seg, f"Y{seg}"])
        _add(out, stats, audio, f"{folder}/{seg}", text=text, group=seg, source="audioset_strong")
    return out


def _label_text(labels: str) -> str:
    parts = [p.replace("_and_", " and ").replace("_", " ") for p in labels.split(",") if p]
    return ", ".join(parts)


def read_fsd50k(root: str | Path, split: str, stats: ReadStats) -> list[Pair]:
    """FSD50K (Fonseca et al. 2022): label lists become the text ("Bark, Dog, Animal")."""
    root = Path(root)
    part = "eval" if split == "eval" else "dev"
    folder = root / f"FSD50K.{part}_audio"
    out: list[Pair] = []
    for r in _read_csv(root / "FSD50K.ground_truth" / f"{part}.csv"):
        if part == "dev" and split in ("train", "val") and r.get("split", split) != split:
            stats.filtered += 1
            continue
        audio = folder / f"{r['fname']}.wav"
        _add(out, stats, audio, str(audio), text=_label_text(r["labels"]), group=r["fname"],
             source="fsd50k")  # fmt: skip
    return out


def read_urbansound8k(
    root: str | Path, folds: Sequence[int] | None, stats: ReadStats
) -> list[Pair]:
    """UrbanSound8K (Salamon et al. 2014): "the sound of {class}" per clip."""
    root = Path(root)
    out: list[Pair] = []
    for r in _read_csv(root / "metadata" / "UrbanSound8K.csv"):
        if folds and int(r["fold"]) not in set(folds):
            stats.filtered += 1
            continue
        audio = root / "audio" / f"fold{r['fold']}" / r["slice_file_name"]
        text = "the sound of " + r["class"].replace("_", " ")
        _add(out, stats, audio, str(audio), text=text, group=r["slice_file_name"],
             source="urbansound8k")  # fmt: skip
    return out


def read_macs(root: str | Path, stats: ReadStats) -> list[Pair]:
    """MACS (Martin Morato & Mesaros 2021): several annotators' sentences per clip."""
    root = Path(root)
    with open(_need(root / "MACS.yaml", "MACS.yaml"), encoding="utf-8") as f:
        doc = yaml.safe_load(f) or {}
    out: list[Pair] = []
    for item in doc.get("files", []):
        audio = root / "audio" / item["filename"]
        for ann in item.get("annotations", []):
            if ann.get("sentence"):
                _add(out, stats, audio, str(audio), text=ann["sentence"], group=item["filename"],
                     source="macs")  # fmt: skip
    return out


def read_nli(path: str | Path, stats: ReadStats) -> list[Pair]:
    """MultiNLI / SNLI jsonl: entailment pairs (premise -> hypothesis) are positives."""
    out: list[Pair] = []
    for i, r in enumerate(_read_jsonl(Path(path))):
        stats.rows += 1
        if r.get("gold_label") != "entailment":
            stats.filtered += 1
            continue
        stats.kept += 1
        out.append(Pair(text=r["sentence1"], text2=r["sentence2"], group=str(i), source="nli"))
    return out


def read_fever(path: str | Path, stats: ReadStats) -> list[Pair]:
    """FEVER jsonl with evidence text: SUPPORTS claims paired with their evidence."""
    out: list[Pair] = []
    for i, r in enumerate(_read_jsonl(Path(path))):
        stats.rows += 1
        ev = [e for e in r.get("evidence", []) if isinstance(e, str) and e]
        if r.get("label") != "SUPPORTS" or not ev:
            stats.filtered += 1
            continue
        stats.kept += 1
        out.append(Pair(text=r["claim"], text2=" ".join(ev), group=str(i), source="fever"))
    return out


def read_scifact(root: str | Path, split: str, stats: ReadStats) -> list[Pair]:
    """SciFact (Wadden et al. 2020): claims paired with their SUPPORT rationale sentences."""
    root = Path(root)
    corpus = {str(d["doc_id"]): d for d in _read_jsonl(root / "corpus.jsonl")}
    out: list[Pair] = []
    for c in _read_jsonl(root / f"claims_{split}.jsonl"):
        stats.rows += 1
        kept = False
        for doc_id, evs in (c.get("evidence") or {}).items():
            doc = corpus.get(str(doc_id))
            if doc is None:
                stats.miss(f"corpus doc {doc_id}")
                continue
            for ev in evs:
                if ev.get("label") != "SUPPORT":
                    continue
                sents = " ".join(doc["abstract"][j] for j in ev["sentences"])
                out.append(Pair(text=c["claim"], text2=sents, group=str(c["id"]), source="scifact"))
                kept = True
        stats.kept += int(kept)
        stats.filtered += int(not kept)
    return out


READERS: dict[str, Callable[..., list[Pair]]] = {
    "csv": lambda spec, st: read_generic(spec["path"], st),
    "jsonl": lambda spec, st: read_generic(spec["path"], st),
    "audiocaps": lambda spec, st: read_audiocaps(spec["path"], spec.get("split", "train"), st),
    "clotho": lambda spec, st: read_clotho(spec["path"], spec.get("split", "development"), st),
    "audioset_strong": lambda spec, st: read_audioset_strong(
        spec["path"], spec.get("split", "train"), st
    ),
    "fsd50k": lambda spec, st: read_fsd50k(spec["path"], spec.get("split", "train"), st),
    "urbansound8k": lambda spec, st: read_urbansound8k(spec["path"], spec.get("folds"), st),
    "macs": lambda spec, st: read_macs(spec["path"], st),
    "nli": lambda spec, st: read_nli(spec["path"], st),
    "fever": lambda spec, st: read_fever(spec["path"], st),
    "scifact": lambda spec, st: read_scifact(spec["path"], spec.get("split", "train"), st),
}


def read_source(spec: dict[str, Any], base: Path | None = None) -> tuple[list[Pair], ReadStats]:
    """Read one data source described by a config entry {format, path, split?, weight?, ...}.

    `path` is resolved relative to `base` (the config file's folder) when relative.
    """
    fmt = spec.get("format")
    if fmt not in READERS:
        raise DataError(f"unknown data format {fmt!r}; use one of {sorted(READERS)}.")
    spec = dict(spec)
    p = Path(os.path.expandvars(str(spec.get("path", ""))))  # e.g. $VR_DATA/clotho
    if base is not None and not p.is_absolute():
        p = base / p
    spec["path"] = p
    stats = ReadStats()
    pairs = READERS[fmt](spec, stats)
    limit = spec.get("limit")
    if limit:
        pairs = pairs[: int(limit)]
    return pairs, stats


# --------------------------------------------------------------------------------------------
# Mixing, decoding, batching
# --------------------------------------------------------------------------------------------


class WeightedMixSampler(torch.utils.data.Sampler[int]):
    """Infinite stream of indices into the concatenation of several sources.

    Each draw picks source d with probability weight_d / sum(weights), then a uniformly random
    example of it, so a small dataset with a large weight is revisited more often. Seeded, and
    `rank`/`world` give each DDP process its own reproducible stream.
    """

    def __init__(
        self, sizes: Sequence[int], weights: Sequence[float], seed: int = 0, rank: int = 0
    ) -> None:
        if len(sizes) != len(weights) or not sizes:
            raise DataError("need one weight per data source and at least one source.")
        keep = [(n, w) for n, w in zip(sizes, weights, strict=True) if n > 0 and w > 0]
        if not keep:
            raise DataError("every data source is empty (or weighted 0): nothing to train on.")
        self.sizes = list(sizes)
        self.offsets = np.cumsum([0, *sizes[:-1]]).tolist()
        w = np.array([wt if n > 0 else 0.0 for n, wt in zip(sizes, weights, strict=True)])
        self.probs = w / w.sum()
        self.seed = seed + 1000003 * rank

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng(self.seed)
        while True:
            d = int(rng.choice(len(self.sizes), p=self.probs))
            yield self.offsets[d] + int(rng.integers(self.sizes[d]))


def _decode(path: str) -> np.ndarray:
    from voice_router.audio.io import load_audio

    return load_audio(path, target_rate=SAMPLE_RATE)


class PairDataset(torch.utils.data.Dataset):
    """Decodes the audio of `Pair`s; a file that fails to decode yields None and is counted.

    Args:
        pairs: the examples.
        transform: optional waveform augmentation `(audio, rng) -> audio` (training/augment.py).
        random_crop: cut clips over 30 s at a random offset (training) instead of the start.
        decode: the decoder (default voice_router.audio.io.load_audio at 16 kHz).
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        random_crop: bool = False,
        seed: int = 0,
        decode: Callable[[str], np.ndarray] | None = None,
    ) -> None:
        self.pairs = list(pairs)
        self.transform = transform
        self.random_crop = random_crop
        self.rng = np.random.default_rng(seed)
        self.decode = decode or _decode
        self.bad = 0
        self.bad_examples: list[str] = []

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        p = self.pairs[i]
        item: dict[str, Any] = {"text": p.text, "text2": p.text2, "group": p.group, "index": i}
        if p.audio is None:
            return item
        try:
            audio = self.decode(p.audio)
        except (AudioError, OSError, ValueError, RuntimeError) as e:
            self.bad += 1
            if len(self.bad_examples) < 5:
                self.bad_examples.append(f"{p.audio}: {e}")
            return None
        max_n = int(MAX_SECONDS * SAMPLE_RATE)
        if len(audio) > max_n:
            start = int(self.rng.integers(len(audio) - max_n + 1)) if self.random_crop else 0
            audio = audio[start : start + max_n]
        if self.transform is not None:
            audio = self.transform(audio, self.rng)
        item["audio"] = np.asarray(audio, dtype=np.float32)
        return item


def collate(items: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Drop undecodable items (None) and gather lists; `n_bad` counts the dropped ones."""
    good = [it for it in items if it is not None]
    out: dict[str, Any] = {
        "n_bad": len(items) - len(good),
        "text": [it["text"] for it in good],
        "group": [it["group"] for it in good],
        "index": [it["index"] for it in good],
    }
    if good and "audio" in good[0]:
        out["audio"] = [it["audio"] for it in good]
    if good and good[0].get("text2") is not None:
        out["text2"] = [it["text2"] for it in good]
    return out


def relevance(pairs: Sequence[Pair]) -> tuple[list[str], list[str], list[set[int]]]:
    """Evaluation view of pairs: unique clips, all captions, and caption -> correct clip indices.

    Returns:
        (clip paths, caption texts, for each caption the set of indices of its clips).
    """
    clip_index: dict[str, int] = {}
    clips: list[str] = []
    texts: list[str] = []
    rel: list[set[int]] = []
    for p in pairs:
        if p.audio is None:
            continue
        key = p.group or p.audio
        if key not in clip_index:
            clip_index[key] = len(clips)
            clips.append(p.audio)
        texts.append(p.text)
        rel.append({clip_index[key]})
    return clips, texts, rel


def shuffled(pairs: Sequence[Pair], seed: int) -> list[Pair]:
    """A seeded shuffled copy (deterministic subsets for quick evaluation)."""
    out = list(pairs)
    random.Random(seed).shuffle(out)
    return out


# --------------------------------------------------------------------------------------------
# Synthetic data (tests, smoke runs): sounds with texts that describe them
# --------------------------------------------------------------------------------------------

SYNTH_CLASSES: dict[str, list[str]] = {
    "low": ["a low steady hum", "a deep tone", "low humming"],
    "high": ["a high pitched beep", "a shrill tone", "high beeping"],
    "noise": ["static hiss", "white noise", "a hissing sound"],
    "chirp": ["a rising whistle", "a sweep going up", "an upward chirp"],
    "clicks": ["rapid clicking", "a series of clicks", "fast ticking"],
}


def _synth_sound(kind: str, rng: np.random.Generator, seconds: float) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    if kind == "low":
        x = np.sin(2 * np.pi * rng.uniform(150, 250) * t)
    elif kind == "high":
        x = np.sin(2 * np.pi * rng.uniform(2000, 3000) * t)
    elif kind == "noise":
        x = rng.standard_normal(n)
    elif kind == "chirp":
        f0, f1 = rng.uniform(300, 600), rng.uniform(2500, 4000)
        x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))
    else:
        x = np.zeros(n)
        step = int(SAMPLE_RATE / rng.uniform(15, 25))
        x[::step] = 1.0
        x = np.convolve(x, np.hanning(32), mode="same")
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.2, 0.6)
    return (x + 0.005 * rng.standard_normal(n)).astype(np.float32)


def make_synthetic_dataset(
    out: str | Path, n_per_class: int = 8, seed: int = 0, seconds: tuple[float, float] = (0.5, 1.5)
) -> Path:
    """Write tones / noise / chirps / clicks as WAV + manifest.csv (`audio,text,id`).

    Five sound classes with three describing texts each: enough structure for a tiny model's
    loss to fall within tens of steps. Returns the manifest path.
    """
    import soundfile as sf

    out = Path(out)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for kind, texts in SYNTH_CLASSES.items():
        for i in range(n_per_class):
            audio = _synth_sound(kind, rng, float(rng.uniform(*seconds)))
            name = f"wav/{kind}_{i:03d}.wav"
            sf.write(str(out / name), audio, SAMPLE_RATE)
            rows.append({"audio": name, "text": texts[i % len(texts)], "id": f"{kind}_{i}"})
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["audio", "text", "id"])
        w.writeheader()
        w.writerows(rows)
    return manifest
