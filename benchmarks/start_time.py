"""Wall time of one `voice-router route CLIP` call, process start to JSON printed, on a warm
index: the ONNX runtime beside the PyTorch one, in the same run.

Each runtime first builds its index once (not timed: exemplar synthesis and text embedding,
and the first start also writes Python's bytecode and the ONNX Runtime graph cache), then the
command is run `--runs` times; the median, min and max wall seconds are printed. The machine
is shared: compare the two medians of one run, not figures across runs.

    python benchmarks/start_time.py                      # this interpreter, both runtimes
    python benchmarks/start_time.py --python .venv-lite/bin/python --runtimes onnx --json

`--python` runs the CLI of another venv (e.g. one with only `pip install -e '.[listen]'`,
which has no PyTorch: the torch runtime is then reported as unavailable, not run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CLIP = REPO / "tests" / "data" / "rhasspy_what_time_is_it.flac"
ROUTES = REPO / "routes" / "home.yaml"


def _cmd(python: str, index: Path, clip: Path, routes: Path) -> list[str]:
    return [python, "-m", "voice_router.cli", "route", str(clip), "--routes", str(routes),
            "--index", str(index), "--json"]  # fmt: skip


def _has(python: str, module: str) -> bool:
    code = f"import importlib.util,sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([python, "-c", code]).returncode == 0


def measure(python: str, runtime: str, runs: int, clip: Path, routes: Path) -> dict[str, Any]:
    """Warm the index once, then time `runs` calls; {"runtime", "wall_s", "route", ...}."""
    env = {**os.environ, "VOICE_ROUTER_RUNTIME": runtime}
    # As on a user's machine, Python caches compiled modules (this sandbox sets
    # PYTHONDONTWRITEBYTECODE, which makes every start recompile ~750 modules: +0.1 s)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if runtime == "torch" and not _has(python, "torch"):
        return {"runtime": runtime, "available": False, "why": "torch is not installed"}
    with tempfile.TemporaryDirectory(prefix="vr-start-") as tmp:
        cmd = _cmd(python, Path(tmp) / "index", clip, routes)
        warm = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if warm.returncode != 0:
            return {"runtime": runtime, "available": False, "why": warm.stderr.strip()[-500:]}
        walls, route = [], None
        for _ in range(runs):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            walls.append(time.perf_counter() - t0)
            route = json.loads(out.stdout.splitlines()[0])["route"]
    return {
        "runtime": runtime,
        "available": True,
        "runs": runs,
        "route": route,
        "wall_s": {
            "median": round(statistics.median(walls), 3),
            "min": round(min(walls), 3),
            "max": round(max(walls), 3),
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="interpreter whose CLI to time")
    ap.add_argument("--runtimes", default="onnx,torch", help="comma list of onnx, torch")
    ap.add_argument("--runs", type=int, default=10, help="timed calls per runtime [10]")
    ap.add_argument("--clip", type=Path, default=CLIP, help="audio file [README's clip]")
    ap.add_argument("--routes", type=Path, default=ROUTES, help="routes file [routes/home.yaml]")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    results = [
        measure(a.python, r.strip(), a.runs, a.clip, a.routes) for r in a.runtimes.split(",")
    ]
    report = {"python": a.python, "clip": str(a.clip.name), "results": results}
    if a.json:
        print(json.dumps(report, indent=2))
    else:
        for r in results:
            if r["available"]:
                w = r["wall_s"]
                print(f"{r['runtime']:>5}: median {w['median']:.3f} s (min {w['min']:.3f}, "
                      f"max {w['max']:.3f}) over {r['runs']} runs -> {r['route']}")  # fmt: skip
            else:
                print(f"{r['runtime']:>5}: not run ({r['why']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
