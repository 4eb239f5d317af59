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

`--allow-import` times the README's one-liner (the routes' example tools imported and the
matched one called). `--compare DIR` also times the checkout in DIR (another worktree, e.g.
before a change) in the same run, the two interleaved call by call so that the load of a
shared machine falls on both alike; each call runs with its checkout as the working folder,
so `python -m voice_router.cli` imports that checkout. Each result also gives the peak RSS
of the calls (max resident set, from wait4):

    python benchmarks/start_time.py --runtimes onnx --allow-import --runs 5 --compare ../main
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CLIP = REPO / "tests" / "data" / "rhasspy_what_time_is_it.flac"
ROUTES = REPO / "routes" / "home.yaml"


def _cmd(python: str, index: Path, clip: Path, routes: Path, allow_import: bool) -> list[str]:
    extra = ["--allow-import"] if allow_import else []
    return [python, "-m", "voice_router.cli", "route", str(clip), "--routes", str(routes),
            "--index", str(index), "--json", *extra]  # fmt: skip


def _has(python: str, module: str) -> bool:
    code = f"import importlib.util,sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([python, "-c", code]).returncode == 0


def _timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, str, float]:
    """(wall seconds, peak RSS in bytes, stdout, CPU seconds (user + system)) of one call;
    raises if it fails. CPU time moves less than wall time with the load of a shared
    machine."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err.read()[-500:]}")
        cpu = usage.ru_utime + usage.ru_stime
        return wall, usage.ru_maxrss * 1024, out.read(), cpu  # ru_maxrss: KiB on Linux


def measure(
    python: str,
    runtime: str,
    runs: int,
    clip: Path,
    routes: Path,
    allow_import: bool = False,
    repos: Sequence[Path] = (REPO,),
    index_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Warm each checkout's index once, then time `runs` calls of each, interleaved; one
    result per checkout: {"runtime", "repo", "wall_s", "peak_rss_mb", "route", ...}."""
    env = {**os.environ, "VOICE_ROUTER_RUNTIME": runtime}
    # As on a user's machine, Python caches compiled modules (this sandbox sets
    # PYTHONDONTWRITEBYTECODE, which makes every start recompile ~750 modules: +0.1 s)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPATH", None)  # the working folder decides which checkout is imported
    if runtime == "torch" and not _has(python, "torch"):
        return [{"runtime": runtime, "available": False, "why": "torch is not installed"}]
    with contextlib.ExitStack() as stack:
        if index_dir is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="vr-start-"))
        else:  # kept: a later run finds its indexes warm (only the warm-up call is saved)
            tmp = str(index_dir / runtime)
        cmds, results = [], []
        for k, repo in enumerate(repos):
            # the checkout's own routes file and clip when they are the defaults
            r = repo / routes.relative_to(REPO) if routes.is_relative_to(REPO) else routes
            c = repo / clip.relative_to(REPO) if clip.is_relative_to(REPO) else clip
            cmd = _cmd(python, Path(tmp) / f"index{k}", c, r, allow_import)
            warm = subprocess.run(cmd, env=env, cwd=repo, capture_output=True, text=True)
            if warm.returncode != 0:
                results.append({"runtime": runtime, "repo": str(repo), "available": False,
                                "why": warm.stderr.strip()[-500:]})  # fmt: skip
                continue
            cmds.append((repo, cmd, len(results)))
            results.append({"runtime": runtime, "repo": str(repo), "available": True,
                            "allow_import": allow_import, "runs": runs, "_walls": [],
                            "_rss": [], "_cpu": []})  # fmt: skip
        for _ in range(runs):
            for repo, cmd, i in cmds:
                wall, rss, out, cpu = _timed(cmd, env, repo)
                results[i]["_walls"].append(wall)
                results[i]["_cpu"].append(cpu)
                results[i]["_rss"].append(rss)
                results[i]["route"] = json.loads(out.splitlines()[0])["route"]
    for r in results:
        if r.get("available"):
            walls, rss, cpu = r.pop("_walls"), r.pop("_rss"), r.pop("_cpu")
            r["cpu_s"] = {"median": round(statistics.median(cpu), 3), "min": round(min(cpu), 3)}
            r["wall_s"] = {
                "median": round(statistics.median(walls), 3),
                "min": round(min(walls), 3),
                "max": round(max(walls), 3),
            }
            r["peak_rss_mb"] = {"median": round(statistics.median(rss) / 2**20),
                                "max": round(max(rss) / 2**20)}  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="interpreter whose CLI to time")
    ap.add_argument("--runtimes", default="onnx,torch", help="comma list of onnx, torch")
    ap.add_argument("--runs", type=int, default=10, help="timed calls per runtime [10]")
    ap.add_argument("--clip", type=Path, default=CLIP, help="audio file [README's clip]")
    ap.add_argument("--routes", type=Path, default=ROUTES, help="routes file [routes/home.yaml]")
    ap.add_argument("--allow-import", action="store_true",
                    help="pass --allow-import (the README's one-liner: tools run)")  # fmt: skip
    ap.add_argument("--compare", type=Path, action="append", default=[], metavar="DIR",
                    help="also time the checkout in DIR, interleaved with this one")  # fmt: skip
    ap.add_argument("--index-dir", type=Path, default=None, metavar="DIR",
                    help="keep the indexes here between runs [a temporary folder]")  # fmt: skip
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    repos = [REPO, *(d.resolve() for d in a.compare)]
    results = [
        res
        for r in a.runtimes.split(",")
        for res in measure(
            a.python, r.strip(), a.runs, a.clip, a.routes, a.allow_import, repos, a.index_dir
        )  # fmt: skip
    ]
    report = {"python": a.python, "clip": str(a.clip.name), "results": results}
    if a.json:
        print(json.dumps(report, indent=2))
    else:
        for r in results:
            if r["available"]:
                w, m = r["wall_s"], r["peak_rss_mb"]
                print(f"{r['runtime']:>5} {r['repo']}: median {w['median']:.3f} s (min "
                      f"{w['min']:.3f}, max {w['max']:.3f}) over {r['runs']} runs, peak RSS "
                      f"{m['median']} MB (max {m['max']}), CPU {r['cpu_s']['median']:.3f} s "
                      f"-> {r['route']}")  # fmt: skip
            else:
                print(f"{r['runtime']:>5} {r.get('repo', '')}: not run ({r['why']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
