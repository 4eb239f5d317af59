"""Rebuild tests/data/speech_sequence.flac (+ .json): three real spoken commands from Speech
Commands v0.02 (CC BY 4.0, Warden 2018; via /work/shared/data/speech_commands_dev), each trimmed
to its speech +-250 ms, separated by digital silence. The JSON lists where each clip sits.

Run: .venv/bin/python tests/data/speech_sequence_build.py [DATA_DIR]
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


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/speech_commands_dev"))
