"""Rebuild tests/data/speech_sequence.flac (+ .json): three real spoken commands from Speech
Commands v0.02 (CC BY 4.0, Warden 2018; via /work/shared/data/speech_commands_dev), each trimmed
to its speech +-250 ms, separated by digital silence. The JSON lists where each clip sits.

Also builds speech_sequence_alexa.flac (see build_wake).

Run: .venv/bin/python tests/data/speech_sequence_build.py [SPEECH_COMMANDS_DIR [WAKE_PHRASES_DIR]]
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from voice_router.audio.vad import segment

SR = 16000
WORDS = ("yes", "stop", "left")
GAPS_S = (0.6, 1.2, 1.2, 0.9)  # silence before, between and after the clips
MARGIN = int(0.25 * SR)


def main(data_dir: Path) -> None:
    rows = list(csv.DictReader(open(data_dir / "manifest.csv")))
    out = Path(__file__).with_suffix("").parent
    pieces: list[np.ndarray] = []
    clips = []
    pos = 0
    for i, word in enumerate(WORDS):
        gap = np.zeros(int(GAPS_S[i] * SR), np.float32)
        pieces.append(gap)
        pos += len(gap)
        for r in sorted((r for r in rows if r["label"] == word), key=lambda r: r["path"]):
            a, sr = sf.read(data_dir / r["path"], dtype="float32")
            assert sr == SR
            utts = segment(a)
            if len(utts) == 1 and utts[0].duration_ms >= 300 and np.abs(a).max() > 0.3:
                u = utts[0]
                a = a[max(0, u.start - MARGIN) : u.end + MARGIN]
                break
        else:
            raise SystemExit(f"no clean clip for {word!r}")
        clips.append(
            {
                "word": word,
                "start": pos,
                "end": pos + len(a),
                "source": r["path"],
                "speaker": r["speaker"],
            }
        )
        pieces.append(a)
        pos += len(a)
    pieces.append(np.zeros(int(GAPS_S[-1] * SR), np.float32))
    audio = np.concatenate(pieces)
    sf.write(out / "speech_sequence.flac", audio, SR, subtype="PCM_16")
    meta = {
        "sample_rate": SR,
        "samples": len(audio),
        "clips": clips,
        "licence": "CC BY 4.0, Speech Commands v0.02 (Warden 2018)",
    }
    (out / "speech_sequence.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta, indent=1))


def build_wake(data_dir: Path = Path("/work/shared/data/wake_phrases")) -> None:
    """speech_sequence_alexa.flac (+ .json): "yes" (no wake word), "alexa", pause, "stop",
    then "alexa" + 150 ms + "left" in one breath. The "alexa" clip is from the Picovoice
    wake-word benchmark (Apache-2.0; ../shared/data/wake_phrases); the commands are the clips
    of speech_sequence.flac."""
    from voice_router.wakeword import WakeWordDetector

    out = Path(__file__).parent
    seq, _ = sf.read(out / "speech_sequence.flac", dtype="float32")
    meta = json.loads((out / "speech_sequence.json").read_text())
    words = {c["word"]: seq[c["start"] : c["end"]] for c in meta["clips"]}
    det = WakeWordDetector("alexa")
    rows = list(csv.DictReader(open(data_dir / "manifest.csv")))
    for r in sorted((r for r in rows if r["text"] == "alexa"), key=lambda r: r["path"]):
        a, sr = sf.read(data_dir / r["path"], dtype="float32")
        if sr != SR or a.ndim != 1:
            continue
        utts = segment(a)
        if len(utts) != 1:
            continue
        u = utts[0]
        a = a[max(0, u.start - MARGIN) : u.end + MARGIN]
        if det.scores(a)[0].max() >= 0.9:
            break
    else:
        raise SystemExit("no clean alexa clip")
    z = lambda s: np.zeros(int(s * SR), np.float32)  # noqa: E731
    tight = a[: len(a) - MARGIN + int(0.05 * SR)]  # "alexa" then only 150 ms before "left"
    left = words["left"][MARGIN - int(0.1 * SR) :]
    parts = [
        ("silence", z(0.5)), ("yes", words["yes"]), ("silence", z(1.0)), ("alexa", a),
        ("silence", z(1.0)), ("stop", words["stop"]), ("silence", z(1.0)),
        ("alexa", tight), ("left", left), ("silence", z(0.9)),
    ]  # fmt: skip
    clips, pos = [], 0
    for name, p in parts:
        if name != "silence":
            clips.append({"word": name, "start": pos, "end": pos + len(p)})
        pos += len(p)
    audio = np.concatenate([p for _, p in parts])
    sf.write(out / "speech_sequence_alexa.flac", audio, SR, subtype="PCM_16")
    meta = {
        "sample_rate": SR,
        "samples": len(audio),
        "clips": clips,
        "alexa_source": r["path"],
        "licence": "alexa: Apache-2.0 (Picovoice wake-word benchmark); commands: CC BY 4.0",
    }
    (out / "speech_sequence_alexa.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/speech_commands_dev"))
    build_wake(*(Path(p) for p in sys.argv[2:3]))
