"""Every evaluation figure of the README and the model card, in one command.

    python benchmarks/run_all.py [--model default] [--out benchmarks/results] [--cascade-limit 150]

Runs, on the data in ../shared/data (see benchmarks/manifests/):
1. calibrate the ten Speech Commands routes on one half of the speakers;
2. eval those calibrated routes on the other half (clean, and with pink noise at 6 dB SNR);
3. eval the six wake-phrase routes and the five Rhasspy intents (default thresholds);
4. benchmarks/route_vs_cascade.py on the same three sets (--cascade-limit clips each, spread over
   the manifest): voice-router beside two transcription cascades with the same all-MiniLM-L6-v2
   text routing, `cascade` (PocketSphinx, ~0.3-0.5 s a clip here) and `whisper-cascade`
   (Whisper tiny.en through faster-whisper; needs pip install -e '.[bench]');
5. eval-search (text-to-audio retrieval) with the Rhasspy and wake-phrase transcripts as captions;
6. the Home Assistant commands (ha_commands_en, Home Assistant's own intent descriptions) beside
   the others, and Rhasspy / Home Assistant / wake phrases with pink noise at 6 dB SNR;
7. benchmarks/retrieval_vs_cascade.py on the speechocean762 test speakers (--retrieval-limit
   clips): speech<->text retrieval against the Whisper cascade;
8. real non-speech (nonspeech_dev, 203 ESC-50 clips, evaluation only) through routes/home.yaml
   with benchmarks/route_vs_cascade.py: how often each system triggers a route at the routes
   file's thresholds (`--nonspeech-only` runs this step alone).

Each step's exact command is printed, its JSON saved under --out, and a Markdown summary
(`summary.md`) written from those JSON files. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MANIFESTS = REPO / "benchmarks" / "manifests"
# route_vs_cascade.py's systems, named explicitly so the recorded commands say what ran.
BENCH_SYSTEMS = ("voice-router", "cascade", "whisper-cascade")


def _rel(p: Path) -> str:
    """`p` relative to the repository root (also outside it: ../shared/data/...), so the
    recorded commands run from any checkout laid out the same way."""
    return os.path.relpath(p.resolve(), REPO)


def _run(cmd: list[str], out_json: Path, log: list[dict[str, Any]]) -> dict[str, Any]:
    """Run one command from the repository root, save its JSON stdout, record the command."""
    shown = " ".join(shlex.quote(c) for c in cmd).replace(sys.executable, "python")
    print(f"$ {shown}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: step failed (exit {proc.returncode}): {shown}")
    out_json.write_text(proc.stdout)
    log.append({"command": shown, "json": _rel(out_json), "wall_s": round(wall, 1)})
    print(f"  -> {_rel(out_json)} ({wall:.0f} s)", file=sys.stderr, flush=True)
    return json.loads(proc.stdout)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="default", help="model for voice-router [default]")
    p.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument(
        "--cascade-limit", type=int, default=150, help="clips per set in the benchmark (0: all)"
    )
    p.add_argument("--eval-limit", type=int, default=None, help="clips per eval (quick checks)")
    p.add_argument(
        "--retrieval-limit",
        type=int,
        default=500,
        help="speechocean762 test clips in the retrieval benchmark (0: all 2,500) [500]",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads, every step [1]")
    p.add_argument("--exemplar-voices", type=int, default=None, help="TTS voices per route text")
    p.add_argument("--skip-cascade", action="store_true", help="skip route_vs_cascade.py")
    p.add_argument(
        "--nonspeech-only",
        action="store_true",
        help="run only step 8 (false triggers on real non-speech) and its summary",
    )
    args = p.parse_args()

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index"  # one private index: no clash with another process's default folder
    cli = [sys.executable, "-m", "voice_router.cli"]
    common = ["--model", args.model, "--index", _rel(index), "--threads", str(args.threads)]
    common += ["--json"]
    if args.exemplar_voices is not None:
        common += ["--exemplar-voices", str(args.exemplar_voices)]
    lim = ["--limit", str(args.eval_limit)] if args.eval_limit else []
    data = args.data_root.resolve()
    sc_routes = MANIFESTS / "speech_commands.yaml"
    sc_cal = out / "speech_commands.calibrated.yaml"
    sets = {
        "speech_commands_test": (sc_cal, MANIFESTS / "speech_commands_test.csv"),
        "wake_phrases": (MANIFESTS / "wake_phrases.yaml", data / "wake_phrases" / "manifest.csv"),
        "rhasspy_en": (MANIFESTS / "rhasspy_en.yaml", data / "rhasspy_en" / "manifest.csv"),
        "ha_commands_en": (
            MANIFESTS / "ha_commands_en.yaml",
            data / "ha_commands_en" / "manifest.csv",
        ),
    }
    log: list[dict[str, Any]] = []
    res: dict[str, Any] = {}

    if args.nonspeech_only:
        res["nonspeech_home"] = _nonspeech(args, data, index, log, out)
        (out / "commands_nonspeech.json").write_text(json.dumps(log, indent=2))
        (out / "summary_nonspeech.md").write_text(summary(res, log, args))
        print((out / "summary_nonspeech.md").read_text())
        return 0

    res["calibrate"] = _run(
        [
            *cli,
            "calibrate",
            "--routes",
            _rel(sc_routes),
            "--data",
            _rel(MANIFESTS / "speech_commands_calib.csv"),
            "--out",
            _rel(sc_cal),
            *lim,
            *common,
        ],
        out / "calibrate_speech_commands.json",
        log,
    )
    noise6 = ["--noise", "pink", "--snr", "6", "--seed", "0"]

    def evaluate(name: str, routes: Path, manifest: Path, extra: list[str], key: str) -> None:
        cmd = [*cli, "eval", "--routes", _rel(routes), "--data", _rel(manifest), *extra]
        res[key] = _run([*cmd, *lim, *common], out / f"{key}.json", log)

    for name, (routes, manifest) in sets.items():
        evaluate(name, routes, manifest, [], f"eval_{name}")
    for name in ("speech_commands_test", "rhasspy_en", "ha_commands_en", "wake_phrases"):
        evaluate(name, *sets[name], noise6, f"eval_{name}_noise6")
    for name in ("rhasspy_en", "wake_phrases"):
        res[f"search_{name}"] = _run(
            [
                *cli,
                "eval-search",
                "--data",
                _rel(sets[name][1]),
                "--model",
                args.model,
                "--threads",
                str(args.threads),
                *lim,
                "--json",
            ],
            out / f"search_{name}.json",
            log,
        )
    if not args.skip_cascade:
        for name, (routes, manifest) in sets.items():
            cmd = _bench_cmd(args, _rel(routes), _rel(manifest), index)
            if args.cascade_limit:
                cmd += ["--limit", str(args.cascade_limit)]
            res[f"bench_{name}"] = _run(cmd, out / f"bench_{name}.json", log)
        cmd = [
            sys.executable,
            "benchmarks/retrieval_vs_cascade.py",
            "--data",
            _rel(MANIFESTS / "speechocean762_test.csv"),
            "--model",
            args.model,
            "--threads",
            str(args.threads),
            "--json",
        ]
        if args.retrieval_limit:
            cmd += ["--limit", str(args.retrieval_limit)]
        res["retrieval_speechocean762_test"] = _run(cmd, out / "retrieval_so762.json", log)
        res["nonspeech_home"] = _nonspeech(args, data, index, log, out)
    (out / "commands.json").write_text(json.dumps(log, indent=2))
    (out / "summary.md").write_text(summary(res, log, args))
    print((out / "summary.md").read_text())
    return 0


def _nonspeech(
    args: argparse.Namespace, data: Path, index: Path, log: list[dict[str, Any]], out: Path
) -> dict[str, Any]:
    """Step 8: real non-speech through routes/home.yaml, voice-router beside both cascades."""
    cmd = _bench_cmd(args, "routes/home.yaml", _rel(data / "nonspeech_dev" / "manifest.csv"), index)
    return _run(cmd, out / "bench_nonspeech_home.json", log)


def _bench_cmd(args: argparse.Namespace, routes: str, manifest: str, index: Path) -> list[str]:
    """The route_vs_cascade.py command of one routes file and manifest (router and cascades)."""
    cmd = [
        sys.executable,
        "benchmarks/route_vs_cascade.py",
        "--routes",
        routes,
        "--data",
        manifest,
        "--model",
        args.model,
        "--index",
        _rel(index),
        "--threads",
        str(args.threads),
        "--systems",
        ",".join(BENCH_SYSTEMS),
        "--json",
    ]
    if args.exemplar_voices is not None:
        cmd += ["--exemplar-voices", str(args.exemplar_voices)]
    return cmd


def _f(x: Any, nd: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def summary(res: dict[str, Any], log: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown tables from the saved reports."""
    lines = [f"## Evaluation (model: {args.model})", ""]
    if any(k.startswith("eval_") for k in res):
        lines += [
            "| set | clips | top-1 | accuracy | macro acc. | false accepts | "
            "latency p50 / p95 ms |",
            "|---|---|---|---|---|---|---|",
        ]
    rows = [
        ("Speech Commands, 10 words, test speakers (calibrated)", "eval_speech_commands_test"),
        ("same, pink noise at 6 dB SNR", "eval_speech_commands_test_noise6"),
        ("wake phrases (6)", "eval_wake_phrases"),
        ("wake phrases, pink noise at 6 dB SNR", "eval_wake_phrases_noise6"),
        ("Rhasspy intents (5)", "eval_rhasspy_en"),
        ("Rhasspy, pink noise at 6 dB SNR", "eval_rhasspy_en_noise6"),
        ("Home Assistant commands (19 intents, 4 unrelated)", "eval_ha_commands_en"),
        ("Home Assistant, pink noise at 6 dB SNR", "eval_ha_commands_en_noise6"),
    ]
    for title, key in rows:
        r = res.get(key)
        if not r:
            continue
        lines.append(
            f"| {title} | {r['n']} | {_f(r['top1_accuracy'])} | {_f(r['accuracy'])} | "
            f"{_f(r['macro_accuracy'])} | {_f(r['false_accept_rate'])} | "
            f"{_f(r['latency_ms']['p50'], 1)} / {_f(r['latency_ms']['p95'], 1)} |"
        )
    cal = res.get("calibrate")
    if cal:
        lines += [
            "",
            f"Calibration on the other speakers ({cal['n']} clips, false accepts <= "
            f"{cal['max_false_accept']}): accuracy {_f(cal['before']['accuracy'])} -> "
            f"{_f(cal['after']['accuracy'])}, false-accept rate "
            f"{_f(cal['before']['false_accept_rate'])} -> {_f(cal['after']['false_accept_rate'])}.",
        ]
    bench = [(k, v) for k, v in res.items() if k.startswith("bench_")]
    if bench:
        lines += [
            "",
            "### voice-router vs. transcription cascades (PocketSphinx or Whisper tiny.en, "
            "then all-MiniLM-L6-v2)",
            "",
            "| set | system | clips | top-1 | accuracy | false accepts | p50 ms | p95 ms | RTF "
            "| peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for k, v in bench:
            for s in v["systems"]:
                lines.append(
                    f"| {k[len('bench_') :]} | {s['name']} | {s['n']} | {_f(s['top1_accuracy'])} | "
                    f"{_f(s['accuracy'])} | {_f(s['false_accept_rate'])} | "
                    f"{_f(s['latency_ms']['p50'], 1)} | {_f(s['latency_ms']['p95'], 1)} | "
                    f"{_f(s['real_time_factor'], 4)} | {_f(s['peak_rss_mb'], 0)} |"
                )
        models: dict[str, str] = {}
        for _, v in bench:
            for s in v["systems"]:
                if s.get("model"):
                    models.setdefault(s["name"], str(s["model"]))
        if models:
            lines += ["", "Systems: " + "; ".join(f"{n} = {m}" for n, m in models.items()) + "."]
    ret = res.get("retrieval_speechocean762_test")
    if ret:
        lines += [
            "",
            "### Speech <-> text retrieval, speechocean762 test speakers (captions = transcripts)",
            "",
            "| system | clips | captions | a2t R@1 | t2a R@1 | cvR@5 | p50 ms | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in ret["systems"]:
            lines.append(
                f"| {s['name']} | {s['n']} | {s['n_captions']} | {_f(s['a2t_R@1'])} | "
                f"{_f(s['R@1'])} | {_f(s['cvR@5'])} | {_f(s['latency_ms']['p50'], 1)} | "
                f"{_f(s['peak_rss_mb'], 0)} |"
            )
    search = [(k, v) for k, v in res.items() if k.startswith("search_")]
    if search:
        lines += ["", "### Text-to-audio retrieval (captions = transcripts)", ""]
        lines += ["| set | queries | clips | R@1 | cvR@5 | R@10 |", "|---|---|---|---|---|---|"]
        for k, v in search:
            lines.append(
                f"| {k[len('search_') :]} | {v['n_queries']} | {v['n_clips']} | {_f(v['R@1'])} | "
                f"{_f(v['cvR@5'])} | {_f(v['R@10'])} |"
            )
    ns = res.get("nonspeech_home")
    if ns:
        lines += [
            "",
            "### False triggers on real non-speech (nonspeech_dev: 203 ESC-50 recordings, "
            "routes/home.yaml at its own thresholds)",
            "",
            "| system | clips | nothing heard | triggered a route | false-trigger rate |",
            "|---|---|---|---|---|",
        ]
        for s in ns["systems"]:
            fa = s["false_accept_rate_file_thresholds"]
            n_fa = None if fa is None else round(fa * s["n"])
            lines.append(
                f"| {s['name']} | {s['n']} | {s.get('n_nothing_heard', 'n/a')} | "
                f"{'n/a' if n_fa is None else n_fa} | {_f(fa)} |"
            )
        lines += [
            "",
            "nothing heard: voice-router's speech gate found no speech / the cascade's "
            "transcript was empty. The cascades' scores are MiniLM cosines held to home.yaml's "
            "threshold (0.55), which was set for voice-router's scale.",
        ]
    lines += ["", "Commands (from the repository root):", "", "```"]
    lines += [c["command"] for c in log]
    lines += ["```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
