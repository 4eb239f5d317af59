"""`python -m training {train,eval,synth,...}`: the training package's command line.

    python -m training train --config training/configs/tiny.yaml --out runs/tiny [--max-steps N]
        [--resume] [--train-data CSV ...] [--val-data CSV]
    python -m training eval --model DIR --data MANIFEST [--format clotho --split evaluation]
    python -m training synth --out DIR [--per-class N]      (tiny synthetic tones + texts)

Errors that are the user's to fix (a bad config, a missing file) print one line and exit
non-zero, like the voice-router CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch

from voice_router.errors import VoiceRouterError


def _cmd_train(args: argparse.Namespace) -> int:
    from training.train import load_run_config, train

    config, base = load_run_config(args.config)
    result = train(
        config,
        args.out,
        base=base,
        max_steps=args.max_steps,
        resume=args.resume,
        train_data=args.train_data or (),
        val_data=args.val_data,
    )
    print(json.dumps(result, indent=2))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from training.retrieval_eval import run_eval

    result = run_eval(args.model, args.data, args.format, args.split, args.output)
    print(json.dumps(result, indent=2))
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from training.data import make_synthetic_dataset

    print(make_synthetic_dataset(args.out, args.per_class, args.seed))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of `python -m training` (registered extra commands included)."""
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("--config", required=True, help="training/configs/NAME.yaml")
    t.add_argument("--out", required=True, help="output folder (metrics, checkpoint, model)")
    t.add_argument("--max-steps", type=int, default=None, help="stop early after N steps")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    t.add_argument(
        "--train-data", action="append", help="CSV/JSONL audio,text manifest (repeatable)"
    )
    t.add_argument("--val-data", help="CSV/JSONL audio,text manifest for eval.json")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("eval", help="retrieval metrics (cvR@5, R@1, R@10) of a saved model")
    e.add_argument("--model", required=True, help="model folder (or 'tiny')")
    e.add_argument("--data", required=True, help="manifest file, or dataset root with --format")
    e.add_argument("--format", default=None, help="audiocaps, clotho, fsd50k, ... (default: csv)")
    e.add_argument("--split", default=None, help="dataset split for --format readers")
    e.add_argument("--output", default=None, help="also write the metrics JSON here")
    e.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    e.set_defaults(func=_cmd_eval)

    s = sub.add_parser("synth", help="write a tiny synthetic audio,text dataset")
    s.add_argument("--out", required=True)
    s.add_argument("--per-class", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_cmd_synth)

    try:  # the compact model's commands (corpus engineer), when present
        from training import compact

        if hasattr(compact, "register_cli"):
            compact.register_cli(sub)
    except ImportError:
        pass
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        return int(args.func(args))
    except VoiceRouterError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
