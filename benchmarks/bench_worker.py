"""Running one benchmarked system in its own process (shared by the *_vs_cascade scripts).

Each system runs in a fresh interpreter, so its peak memory is its own; a failure ends the
benchmark with the worker's own last error line instead of a traceback from the parent.
"""

from __future__ import annotations

import os
import subprocess

THREAD_VARS = ("VOICE_ROUTER_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """This environment with every thread pool a worker may start capped at `threads`:
    ONNX Runtime (voice-router's default runtime reads VOICE_ROUTER_THREADS, else
    OMP_NUM_THREADS; unset, it takes every core) and OpenMP / MKL pools. Torch's and
    CTranslate2's threads are set in the worker itself."""
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    return env


def run_worker(
    name: str, cmd: list[str], env: dict[str, str] | None = None, show_stderr: bool = False
) -> None:
    """Run `cmd` (a script's --worker invocation for system `name`); SystemExit naming the
    system and the worker's last stderr line when it fails. `show_stderr` lets the worker's
    stderr (progress bars) through instead of capturing it."""
    proc = subprocess.run(cmd, stderr=None if show_stderr else subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        err = (proc.stderr or "").strip().splitlines()
        last = err[-1].removeprefix("error: ") if err else proc.returncode
        raise SystemExit(f"error: the {name} run failed: {last}")
