"""`voice-router eval`, `calibrate` and `eval-search`: the command-line face of
`voice_router.evaluate` (options, threads, the router wiring, text or JSON reports)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

from voice_router.calibration import (
    calibrated_routes,
    calibration_report,
    fit_calibration,
    format_calibration,
)
from voice_router.decision import route_thresholds
from voice_router.errors import ManifestError, VoiceRouterError
from voice_router.evaluate import (
    SAMPLE_RATE,
    ClipScore,
    ScoreTable,
    evaluation_report,
    format_eval,
    read_manifest,
    score_clips,
)
from voice_router.routes import RouteSet
from voice_router.search_eval import search_report


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        metavar="MANIFEST",
        help="manifest CSV with a header: path (absolute or relative to the CSV), label "
        "(route name; empty or not a route = nothing should match), optionally args (a JSON "
        'object of the tool arguments expected, e.g. {"minutes": 5}: adds command accuracy)',
    )
    p.add_argument("--limit", type=int, default=None, help="use N rows spread over the file")
    p.add_argument(
        "--noise",
        default=None,
        metavar="FILE",
        help="mix this noise file (or built-in 'white' / 'pink') into every clip",
    )
    p.add_argument("--snr", type=float, default=10.0, help="SNR in dB for --noise [10]")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise offsets [0]")
    _add_threads(p)


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads of the model (ONNX Runtime or torch) [1 on the CLI]; 1 gives "
        "steadier latencies on a busy machine",
    )


def _set_threads(args: argparse.Namespace) -> None:
    n = getattr(args, "threads", None)
    if n is not None:
        if n < 1:
            raise VoiceRouterError(f"--threads must be at least 1, not {n}")
        os.environ["VOICE_ROUTER_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(n)
        torch = sys.modules.get("torch")  # read at import otherwise
        if torch is not None:
            torch.set_num_threads(n)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the `eval`, `calibrate` and `eval-search` subcommands to the voice-router CLI."""
    from voice_router.cli import add_common_args, add_router_args

    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "eval",
        help="accuracy, false accepts and latency of a route set on labelled clips",
        description="Route every clip of a manifest (no tool is called) and report accuracy, "
        "macro accuracy, false-accept rate, latency, per-route recall and a confusion table.",
        epilog="example:\n  voice-router eval --routes my.yaml --data clips.csv --json\n"
        "  voice-router eval --routes my.yaml --data clips.csv --noise pink --snr 6",
        formatter_class=fmt,
    )
    _add_data_args(p)
    add_common_args(p)
    add_router_args(p, tools=False)  # decides only: no tool options
    p.set_defaults(func=_cmd_eval)

    p = subparsers.add_parser(
        "calibrate",
        help="fit per-route thresholds and the margin on labelled clips",
        description="Fit the per-route thresholds and the set's margin that route the most "
        "clips correctly while accepting at most --max-false-accept of the clips that expect "
        "no match; write them into a copy of the routes file and report before/after.",
        epilog="example:\n  voice-router calibrate --routes my.yaml --data clips.csv "
        "--out my.calibrated.yaml",
        formatter_class=fmt,
    )
    _add_data_args(p)
    p.add_argument("--out", required=True, metavar="FILE", help="routes YAML to write")
    p.add_argument(
        "--max-false-accept",
        type=float,
        default=0.05,
        metavar="RATE",
        help="largest allowed fraction of no-match clips that match a route [0.05]",
    )
    add_common_args(p)
    add_router_args(p, tools=False)  # decides only: no tool options
    p.set_defaults(func=_cmd_calibrate)

    p = subparsers.add_parser(
        "eval-search",
        help="text-to-audio retrieval metrics (cvR@5, R@1, R@10) on captioned clips",
        description="Each distinct caption of a manifest is a text query; its relevant clips "
        "are the clips with that caption. Reports cvR@5, R@1, R@10 (text->audio) and the "
        "audio->text recalls. With --collection, the candidates are the clips of a search "
        "collection built by `voice-router index-audio` (others act as distractors).",
        epilog="example:\n  voice-router eval-search --data captions.csv --json\n"
        "  voice-router eval-search --data captions.csv --collection sounds",
        formatter_class=fmt,
    )
    p.add_argument("--data", required=True, metavar="MANIFEST", help="CSV with path and text")
    p.add_argument(
        "--caption-column",
        choices=("text", "label"),
        default="text",
        help="the column holding each clip's caption [text]",
    )
    p.add_argument("--collection", default=None, help="a collection built by index-audio")
    p.add_argument("--limit", type=int, default=None, help="use N rows spread over the file")
    _add_threads(p)
    add_common_args(p)
    p.set_defaults(func=_cmd_eval_search)


def _scored(args: argparse.Namespace) -> tuple[RouteSet, list[ClipScore], dict[str, Any]]:
    """Load the routes, build the router (tools never called) and score the manifest."""
    from voice_router.cli import build_router
    from voice_router.routes import load_routes

    _set_threads(args)
    routes = load_routes(args.routes)
    rows = read_manifest(args.data, limit=args.limit)
    mixer = None
    extra: dict[str, Any] = {"routes": str(args.routes), "data": str(args.data), "noise": None}
    if args.noise:
        from voice_router.noise import NoiseMixer

        mixer = NoiseMixer.from_source(args.noise, args.snr, args.seed, SAMPLE_RATE)
        extra["noise"] = {"source": args.noise, "snr_db": args.snr, "seed": args.seed}
    args.dry_run = True  # evaluation decides; it never calls a route's tool
    router = build_router(args)
    try:
        model = getattr(router, "model", None)
        if model is not None:
            extra["model"] = getattr(model, "name", str(args.model))
        extra["fusion"] = str(router.fusion)  # the model's own unless --fusion said otherwise
        clips = score_clips(router, rows, noise=mixer, progress=sys.stderr.isatty())
    finally:
        close = getattr(router, "close", None)
        if close is not None:
            close()
    # the routes as the router decided with them: the model's default threshold and margin
    # where the file set none
    decided = getattr(router, "routes", routes)
    extra["threshold"] = decided.threshold
    extra["threshold_from"] = (
        "routes file" if "threshold" in routes.given
        else "model" if "threshold" in decided.given
        else "default"
    )  # fmt: skip
    return decided, clips, extra


def _cmd_eval(args: argparse.Namespace) -> int:
    routes, clips, extra = _scored(args)
    rep = evaluation_report(clips, routes, extra=extra)
    print(json.dumps(rep, indent=2) if args.json else format_eval(rep))
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from voice_router.routes import dump_routes

    routes, clips, extra = _scored(args)
    table = ScoreTable.from_clips(clips, [r.name for r in routes.routes])
    if table.n == 0:
        raise ManifestError(f"{args.data}: no clip could be read, nothing to calibrate on")
    cal = fit_calibration(
        table, route_thresholds(routes), float(routes.margin), args.max_false_accept
    )
    dump_routes(calibrated_routes(routes, cal), args.out)
    rep = calibration_report(clips, routes, cal, args.max_false_accept)
    rep["out"] = str(args.out)
    rep["fusion"] = extra["fusion"]  # the thresholds hold for scores fused this way only
    print(json.dumps(rep, indent=2) if args.json else format_calibration(rep, str(args.out)))
    return 0


def _cmd_eval_search(args: argparse.Namespace) -> int:
    from voice_router.model.loader import load_model

    _set_threads(args)
    rows = read_manifest(args.data, required=("path", args.caption_column), limit=args.limit)
    model = load_model(args.model)
    vectors = None
    if args.collection:
        from voice_router.cli import open_store
        from voice_router.library import AudioLibrary

        with AudioLibrary(model, args.collection, backend=open_store(args)) as lib:
            vectors = {
                str(p.payload.get("path")): np.asarray(p.vector, np.float32)
                for p in lib.backend.scroll(args.collection, with_vectors=True)
                if p.vector is not None
            }
    rep = search_report(
        model,
        rows,
        column=args.caption_column,
        collection=vectors,
        progress=sys.stderr.isatty(),
    )
    rep["model"] = getattr(model, "name", str(args.model))
    rep["collection"] = args.collection
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(
            f"{rep['n_queries']} caption queries over {rep['n_clips']} clips "
            f"({rep['n_unreadable']} unreadable), model {rep['model']}\n"
            f"text->audio  cvR@5 {rep['cvR@5']:.3f}  R@1 {rep['R@1']:.3f}  R@10 {rep['R@10']:.3f}\n"
            f"audio->text  R@1 {rep['a2t_R@1']:.3f}  R@5 {rep['a2t_R@5']:.3f}  "
            f"R@10 {rep['a2t_R@10']:.3f}"
        )
    return 0
