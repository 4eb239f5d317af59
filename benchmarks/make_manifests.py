"""Write the benchmark manifests that are not in the shared data as is.

    python benchmarks/make_manifests.py [--data-root ../shared/data] [--out benchmarks/manifests]

speech_commands_calib.csv / speech_commands_test.csv: the Speech Commands dev clips split into
two SPEAKER-DISJOINT halves (by CRC32 of the speaker id, so the split is stable and needs no
random seed): fit thresholds with `voice-router calibrate` on one half, measure on the other.
speechocean762_test.csv: the corpus's own speaker-disjoint TEST split of speechocean762 (2,500
transcribed clips, 125 speakers), path,text,label,speaker with label = the transcript, for
audio<->text retrieval (benchmarks/retrieval_vs_cascade.py); the train split is for training.
Paths in the written CSVs are relative to the output folder, so with the repository checked out
beside `shared/` (the layout here: /work/main and /work/shared) they resolve from anywhere.

The shared folders' own manifest.csv files (path,text,label,speaker) are used directly for the
full sets: their labels are the route names of the routes files in benchmarks/manifests/.
"""

from __future__ import annotations

import argparse
import csv
import os
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def split_speech_commands(data_root: Path, out: Path) -> dict[str, int]:
    """Write the two speaker-disjoint halves; return the row count of each file."""
    src = data_root / "speech_commands_dev" / "manifest.csv"
    with src.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    halves: dict[str, list[dict[str, str]]] = {"calib": [], "test": []}
    for r in rows:
        half = "calib" if zlib.crc32(r["speaker"].encode()) % 2 == 0 else "test"
        clip = (src.parent / r["path"]).resolve()
        halves[half].append({**r, "path": Path(os.path.relpath(clip, out)).as_posix()})
    counts = {}
    for half, items in halves.items():
        dest = out / f"speech_commands_{half}.csv"
        with dest.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
            w.writeheader()
            w.writerows(items)
        counts[dest.name] = len(items)
    return counts


def speechocean_test(data_root: Path, out: Path) -> dict[str, int]:
    """Write speechocean762's test split (path,text,label,speaker; label = the transcript, so
    label-based tools see one class per sentence); return {file name: row count}."""
    src = data_root / "speechocean762" / "manifest.csv"
    with src.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    dest = out / "speechocean762_test.csv"
    with dest.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "text", "label", "speaker"], lineterminator="\n")
        w.writeheader()
        for r in rows:
            clip = (src.parent / r["path"]).resolve()
            rel = Path(os.path.relpath(clip, out)).as_posix()
            w.writerow(
                {"path": rel, "text": r["text"], "label": r["text"], "speaker": r["speaker"]}
            )
    return {dest.name: len(rows)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "manifests")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    root, out = args.data_root.resolve(), args.out.resolve()
    for name, n in {**split_speech_commands(root, out), **speechocean_test(root, out)}.items():
        print(f"wrote {args.out / name}: {n} rows")


if __name__ == "__main__":
    main()
