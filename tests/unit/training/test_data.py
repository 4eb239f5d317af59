"""Manifest readers on tiny synthetic layouts; mixing; bad and missing files are skipped."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training import data as D


def _wav(path: Path, seconds: float = 0.2, freq: float = 440.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)


def _csv(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)


def test_generic_csv_and_jsonl_missing_counted(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav")
    _wav(tmp_path / "sub" / "b.flac")
    _csv(
        tmp_path / "m.csv",
        ["audio", "text"],
        [["a.wav", "tone"], ["sub/b.flac", "b"], ["gone.wav", "x"], ["a.wav", ""]],
    )
    pairs, st = D.read_source({"format": "csv", "path": "m.csv"}, base=tmp_path)
    assert [p.text for p in pairs] == ["tone", "b"]
    assert st.missing == 1 and st.filtered == 1 and st.kept == 2
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"path": "a.wav", "text": "t", "id": "g1"}) + "\n", encoding="utf-8"
    )
    pairs, st = D.read_source({"format": "jsonl", "path": str(tmp_path / "m.jsonl")})
    assert pairs[0].group == "g1" and pairs[0].audio == str(tmp_path / "a.wav")


def test_audiocaps(tmp_path: Path) -> None:
    _wav(tmp_path / "audio" / "test" / "abc.wav")
    _wav(tmp_path / "audio" / "test" / "Ydef_30.flac")
    _csv(
        tmp_path / "test.csv",
        ["audiocap_id", "youtube_id", "start_time", "caption"],
        [
            [1, "abc", 0, "a dog"],
            [2, "abc", 0, "dog barks"],
            [3, "def", 30, "rain"],
            [4, "zzz", 0, "missing"],
        ],
    )
    pairs, st = D.read_source({"format": "audiocaps", "path": str(tmp_path), "split": "test"})
    assert [p.text for p in pairs] == ["a dog", "dog barks", "rain"]
    assert pairs[2].audio.endswith("Ydef_30.flac") and st.missing == 1
    clips, texts, rel = D.relevance(pairs)
    assert len(clips) == 2 and rel == [{0}, {0}, {1}]


def test_clotho(tmp_path: Path) -> None:
    _wav(tmp_path / "evaluation" / "x.wav")
    header = ["file_name"] + [f"caption_{k}" for k in range(1, 6)]
    _csv(
        tmp_path / "clotho_captions_evaluation.csv",
        header,
        [["x.wav", "c1", "c2", "c3", "c4", "c5"], ["y.wav", "d1", "", "", "", ""]],
    )
    pairs, st = D.read_source({"format": "clotho", "path": str(tmp_path), "split": "evaluation"})
    assert [p.text for p in pairs] == ["c1", "c2", "c3", "c4", "c5"]
    assert {p.group for p in pairs} == {"x.wav"} and st.missing == 1


def test_audioset_strong_orders_events(tmp_path: Path) -> None:
    _wav(tmp_path / "audio" / "eval" / "seg1_30000.wav")
    (tmp_path / "mid_to_display_name.tsv").write_text("/m/dog\tDog\n/m/sp\tSpeech\n")
    _csv(
        tmp_path / "audioset_eval_strong.tsv",
        ["segment_id", "start_time_seconds", "end_time_seconds", "label"],
        [
            ["seg1_30000", 4.0, 5.0, "/m/sp"],
            ["seg1_30000", 1.0, 2.0, "/m/dog"],
            ["seg1_30000", 6.0, 7.0, "/m/dog"],
            ["seg2_0", 0, 1, "/m/dog"],
        ],
        delimiter="\t",
    )
    pairs, st = D.read_source({"format": "audioset_strong", "path": tmp_path, "split": "eval"})
    assert [p.text for p in pairs] == ["Dog, then Speech"] and st.missing == 1


def test_fsd50k_splits(tmp_path: Path) -> None:
    for f in ("1", "2"):
        _wav(tmp_path / "FSD50K.dev_audio" / f"{f}.wav")
    _wav(tmp_path / "FSD50K.eval_audio" / "9.wav")
    _csv(
        tmp_path / "FSD50K.ground_truth" / "dev.csv",
        ["fname", "labels", "mids", "split"],
        [[1, "Bark,Dog", "/m/a,/m/b", "train"], [2, "Rain_and_thunder", "/m/c", "val"]],
    )
    _csv(
        tmp_path / "FSD50K.ground_truth" / "eval.csv",
        ["fname", "labels", "mids"],
        [[9, "Speech", "/m/s"]],
    )
    tr, _ = D.read_source({"format": "fsd50k", "path": tmp_path, "split": "train"})
    va, _ = D.read_source({"format": "fsd50k", "path": tmp_path, "split": "val"})
    ev, _ = D.read_source({"format": "fsd50k", "path": tmp_path, "split": "eval"})
    assert [p.text for p in tr] == ["Bark, Dog"]
    assert [p.text for p in va] == ["Rain and thunder"]
    assert [p.text for p in ev] == ["Speech"]


def test_urbansound8k_folds(tmp_path: Path) -> None:
    _wav(tmp_path / "audio" / "fold1" / "a.wav")
    _wav(tmp_path / "audio" / "fold2" / "b.wav")
    hdr = ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]
    _csv(
        tmp_path / "metadata" / "UrbanSound8K.csv",
        hdr,
        [["a.wav", 1, 0, 1, 1, 1, 3, "dog_bark"], ["b.wav", 2, 0, 1, 1, 2, 8, "siren"]],
    )
    pairs, st = D.read_source({"format": "urbansound8k", "path": tmp_path, "folds": [1]})
    assert [p.text for p in pairs] == ["the sound of dog bark"] and st.filtered == 1


def test_macs(tmp_path: Path) -> None:
    _wav(tmp_path / "audio" / "street.wav")
    doc = {
        "files": [
            {
                "filename": "street.wav",
                "annotations": [
                    {"sentence": "cars pass by", "tags": ["car"]},
                    {"sentence": "people talk"},
                ],
            }
        ]
    }
    (tmp_path / "MACS.yaml").write_text(json.dumps(doc))  # JSON is valid YAML
    pairs, _ = D.read_source({"format": "macs", "path": tmp_path})
    assert [p.text for p in pairs] == ["cars pass by", "people talk"]


def test_text_pair_readers(tmp_path: Path) -> None:
    nli = [
        {"sentence1": "A man runs.", "sentence2": "A person moves.", "gold_label": "entailment"},
        {"sentence1": "A", "sentence2": "B", "gold_label": "contradiction"},
    ]
    (tmp_path / "nli.jsonl").write_text("\n".join(json.dumps(r) for r in nli))
    pairs, st = D.read_source({"format": "nli", "path": tmp_path / "nli.jsonl"})
    assert [(p.text, p.text2) for p in pairs] == [("A man runs.", "A person moves.")]
    assert st.filtered == 1 and pairs[0].audio is None
    fever = [
        {"claim": "Paris is in France.", "label": "SUPPORTS", "evidence": ["Paris, France."]},
        {"claim": "x", "label": "REFUTES", "evidence": ["y"]},
    ]
    (tmp_path / "fever.jsonl").write_text("\n".join(json.dumps(r) for r in fever))
    pairs, _ = D.read_source({"format": "fever", "path": tmp_path / "fever.jsonl"})
    assert [(p.text, p.text2) for p in pairs] == [("Paris is in France.", "Paris, France.")]
    corpus = {"doc_id": 7, "title": "T", "abstract": ["s0.", "s1.", "s2."]}
    claim = {"id": 1, "claim": "C.", "evidence": {"7": [{"sentences": [0, 2], "label": "SUPPORT"}]}}
    (tmp_path / "corpus.jsonl").write_text(json.dumps(corpus))
    (tmp_path / "claims_train.jsonl").write_text(json.dumps(claim))
    pairs, _ = D.read_source({"format": "scifact", "path": tmp_path})
    assert [(p.text, p.text2) for p in pairs] == [("C.", "s0. s2.")]


def test_unknown_format_and_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(D.DataError, match="unknown data format"):
        D.read_source({"format": "nope", "path": "x"})
    with pytest.raises(D.DataError, match="not found"):
        D.read_source({"format": "clotho", "path": tmp_path})


def test_weighted_mix_sampler_proportions() -> None:
    s = D.WeightedMixSampler([10, 1000], [3.0, 1.0], seed=1)
    it = iter(s)
    draws = [next(it) for _ in range(4000)]
    share_small = sum(d < 10 for d in draws) / len(draws)
    assert abs(share_small - 0.75) < 0.03  # 3:1 by weight, regardless of size
    assert max(draws) < 1010 and min(draws) >= 0
    again = iter(D.WeightedMixSampler([10, 1000], [3.0, 1.0], seed=1))
    assert [next(again) for _ in range(50)] == draws[:50]
    other = iter(D.WeightedMixSampler([10, 1000], [3.0, 1.0], seed=1, rank=1))
    assert [next(other) for _ in range(50)] != draws[:50]
    with pytest.raises(D.DataError):
        D.WeightedMixSampler([0, 0], [1.0, 1.0])


def test_pair_dataset_skips_bad_files(tmp_path: Path) -> None:
    _wav(tmp_path / "good.wav", seconds=31.0)
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really a wav")
    pairs = [
        D.Pair(text="good", audio=str(tmp_path / "good.wav")),
        D.Pair(text="bad", audio=str(tmp_path / "bad.wav")),
    ]
    ds = D.PairDataset(pairs)
    batch = D.collate([ds[0], ds[1]])
    assert batch["n_bad"] == 1 and ds.bad == 1 and batch["text"] == ["good"]
    assert len(batch["audio"][0]) == 30 * 16000  # cut to 30 s
    assert Counter(type(a) for a in batch["audio"]) == Counter({np.ndarray: 1})
