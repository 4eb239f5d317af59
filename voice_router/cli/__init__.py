"""`voice-router` command line: parse, wire, print. All logic lives in the library.

The CLI layer is this package: the core commands here, `listen`/`devices` in
`cli/listen_commands.py` and `eval`/`calibrate`/`eval-search` in `cli/eval_commands.py`, each
registered through `register_cli(subparsers)` and reusing `add_common_args`, `add_router_args`
and `build_router` from here. No library module parses arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voice_router.errors import AudioError, ToolError, VoiceRouterError

log = logging.getLogger("voice_router")

#: Subcommand modules written elsewhere; registered when present.
OPTIONAL_COMMAND_MODULES = ("voice_router.cli.listen_commands", "voice_router.cli.eval_commands")
#: Subcommands defined here (a call to one of them skips OPTIONAL_COMMAND_MODULES).
CORE_COMMANDS = (
    "route", "routes", "index-audio", "search", "models", "enroll", "index", "export-onnx",
)  # fmt: skip

_FMT = argparse.RawDescriptionHelpFormatter


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Add --model, --index, --qdrant-url and --json to a subcommand parser."""
    parser.add_argument(
        "--model",
        default="default",
        help="embedding model: 'default' (bundled), 'compact' (first release), 'tiny' (test), "
        "a model folder, a hub id, or 'hash' (deterministic fake for plumbing tests); "
        "`voice-router models` lists them [default: %(default)s]",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--index",
        metavar="PATH",
        help="Qdrant Edge index folder [default: the user data folder, see `voice-router models`]",
    )
    where.add_argument(
        "--qdrant-url",
        metavar="URL",
        help="use a Qdrant server/cluster instead of a local folder (API key from "
        "VOICE_ROUTER_QDRANT_API_KEY or QDRANT_API_KEY); ':memory:' for a throw-away index",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (one object per line)")


def add_router_args(
    parser: argparse.ArgumentParser, *, routes_required: bool = True, tools: bool = True
) -> None:
    """Add the options `build_router` reads: --routes, --allow-import, --fusion, ...

    `tools=False` leaves out the tool options (--allow-import, --dry-run, --tool-timeout) for
    commands that decide only and never call a tool (eval, calibrate): listed, they would
    suggest a tool runs."""
    parser.add_argument(
        "--routes", required=routes_required, metavar="ROUTES.yaml", help="routes YAML file"
    )
    if tools:
        parser.add_argument(
            "--allow-import",
            action="store_true",
            help="let routes name tools as package.module:attr (imports that code: trusted "
            "files only)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="decide only: do not call the routes' tools"
        )
    parser.add_argument(
        "--fusion",
        default=None,
        metavar="SPEC",
        help="combine text and audio-exemplar scores: weighted[:W_TEXT,W_AUDIO], max, text or "
        "audio, optionally ';k=N' (top-k exemplars averaged) [default: the model's routing.json, "
        "else weighted:0.5,0.5;k=3]",
    )
    parser.add_argument(
        "--exemplar-voices",
        type=int,
        default=None,
        metavar="N",
        help="TTS voices speaking each route text as audio exemplars (0 = none) [default: 12 "
        "when espeak-ng is installed]",
    )
    parser.add_argument(
        "--no-speech-gate",
        action="store_true",
        help="route every clip as it is, speech or not (default: Silero VAD first: a clip with no "
        "speech gets no route, speech is trimmed to its utterances)",
    )
    if tools:
        parser.add_argument(
            "--tool-timeout",
            type=float,
            default=10.0,
            metavar="SECONDS",
            help="stop waiting for a tool after this long [default: %(default)s]",
        )


def open_store(args: argparse.Namespace) -> Any:
    """The vector backend the common options name (Edge folder, or qdrant-client URL)."""
    from voice_router.store import open_backend

    return open_backend(path=getattr(args, "index", None), url=getattr(args, "qdrant_url", None))


def build_router(args: argparse.Namespace, tools: Sequence[Any] = ()) -> Any:
    """A `Router` (the core of `VoiceRouter`, without LangChain) from parsed `add_common_args`
    + `add_router_args` options."""
    from voice_router.model.loader import load_model
    from voice_router.routes import load_routes
    from voice_router.routing import Router

    routes = load_routes(args.routes)
    model = load_model(getattr(args, "model", "default"))
    return Router(
        routes,
        model=model,
        tools=tools,
        index=open_store(args),
        allow_import=getattr(args, "allow_import", False),
        fusion=getattr(args, "fusion", None),
        exemplar_voices=getattr(args, "exemplar_voices", None),
        dispatch=not getattr(args, "dry_run", False),
        # A tool that cannot be resolved or validated (a misspelt import path, arguments its
        # schema refuses) is a configuration error: exit 7 before any audio, not a tool_error
        # in every match. Import paths without --allow-import stay "decide only".
        strict_tools=True,
        tool_timeout_s=getattr(args, "tool_timeout", 10.0),
        speech_gate=False if getattr(args, "no_speech_gate", False) else None,
    )


def _print_error(e: BaseException) -> None:
    """`error: <message>` on stderr; a message listing several problems gets one line each."""
    for line in str(e).splitlines() or [type(e).__name__]:
        print(f"error: {line}", file=sys.stderr, flush=True)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, default=str), flush=True)


# -- commands ---------------------------------------------------------------------------------


def cmd_route(args: argparse.Namespace) -> int:
    """Route each file; print one result per file; non-zero if any file could not be read.

    Each file is decoded before anything else is done with it and the router is built only
    when the first readable file arrives, so unreadable input fails in well under a second
    instead of after the model and route exemplars have loaded, and only one decoded clip is
    held at a time.
    """
    from voice_router.audio.io import load_audio

    failed = 0
    last_code = 0
    tool_failed = 0
    with contextlib.ExitStack() as stack:
        router = None
        for f in args.files:
            t0 = time.perf_counter()
            try:
                audio = load_audio(f)
            except AudioError as e:
                failed += 1
                last_code = e.exit_code
                _print_error(e)
                continue
            decode_ms = (time.perf_counter() - t0) * 1000.0
            if router is None:
                router = stack.enter_context(build_router(args))
            m = router.route((audio, 16000), file=f)
            m.latency_ms["decode"] = round(decode_ms, 3)
            m.latency_ms["total"] = round(m.latency_ms.get("total", 0.0) + decode_ms, 3)
            _print_match(m, f, as_json=args.json)
            # a tool that ran and failed (raised, timed out, refused the slot values); a route
            # whose tool is an import path without --allow-import only decides, as documented
            if m.tool_error and m.route not in router.tool_problems:
                tool_failed += 1
    if failed:
        if len(args.files) > 1:
            print(f"error: {failed} of {len(args.files)} files could not be read", file=sys.stderr)
        return last_code
    if tool_failed:
        print(
            f"error: the tool of {tool_failed} of {len(args.files)} file(s) failed (see its "
            "tool_error)",
            file=sys.stderr,
        )
        return ToolError.exit_code
    return 0


def _print_match(m: Any, f: str, *, as_json: bool) -> None:
    """One routing decision on stdout: a JSON object, or one human-readable line."""
    if as_json:
        _print_json(m.to_dict())
    elif m.route is None:
        print(f"{f}: no match (nearest {m.nearest}, score {m.score:.3f}, margin {m.margin:.3f})")
    else:
        line = f"{f}: {m.route} (score {m.score:.3f}, margin {m.margin:.3f})"
        if m.tool_error:
            line += f" -> tool error: {m.tool_error}"
        elif m.tool:
            line += f" -> {m.tool}: {m.tool_result}"
        print(line, flush=True)


def _tool_lines(path: str) -> dict[int, int]:
    """Route index -> line of its `tool:` key in a routes file (for FILE:LINE messages)."""
    import yaml

    from voice_router.routes import _line_map

    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return {}
    lines = _line_map(root) if root is not None else {}
    return {
        k[1]: v for k, v in lines.items() if len(k) == 3 and k[0] == "routes" and k[2] == "tool"
    }


def cmd_routes_check(args: argparse.Namespace) -> int:
    """Validate a routes file: its schema, and its tools. Import paths are looked up without
    running code (voice_router.tool_check); with --allow-import each is also imported and the
    route's args validated against the tool's schema, as `route --allow-import` does at start."""
    from voice_router.routes import load_routes
    from voice_router.tool_check import check_tools

    rs = load_routes(args.file)
    problems, notes = check_tools(rs)
    at = _tool_lines(args.file)
    index = {r.name: i for i, r in enumerate(rs.routes)}

    def where(route: str) -> str:
        line = at.get(index[route])
        return f"{args.file}:{line}" if line else str(args.file)

    found = [f"{where(p.route)}: route {p.route!r}: tool {p.tool!r}: {p.message}" for p in problems]
    if args.allow_import and not problems:
        found += _import_and_validate(rs, where)
    for n in notes:
        print(f"note: {where(n.route)}: route {n.route!r}: tool {n.tool!r}: {n.message}",
              file=sys.stderr)  # fmt: skip
    if found:
        raise ToolError("\n".join(found))
    if args.json:
        _print_json({"file": args.file, "ok": True, "routes": [r.name for r in rs.routes],
                     "tools_imported": bool(args.allow_import)})  # fmt: skip
    else:
        print(f"{args.file}: ok, {len(rs.routes)} routes ({', '.join(r.name for r in rs.routes)})")
    return 0


def _import_and_validate(rs: Any, where: Any) -> list[str]:
    """`routes check --allow-import`: import every import-path tool and validate its route's
    args (with a value for each slot) against its schema; one message per problem."""
    from voice_router.dispatch import ToolRegistry, is_import_path, validate_args
    from voice_router.templates import phrasings

    registry = ToolRegistry(allow_import=True)
    found = []
    for r in rs.routes:
        if not r.tool or not is_import_path(r.tool):
            continue
        slots: dict[str, Any] = {}
        for ph in phrasings(r.sentences, rs.lists) if r.sentences else ():
            for name, value in ph.slots.items():
                slots.setdefault(name, value)
        try:
            tool = registry.resolve(r.tool, r.name)
            validate_args(tool, r.name, {**slots, **r.args}, with_match=True)
        except ToolError as e:
            found.append(f"{where(r.name)}: {e}")
    return found


def cmd_routes_import(args: argparse.Namespace) -> int:
    """Import another tool's route set and write it as a routes file."""
    from voice_router.errors import RoutesError
    from voice_router.importers import import_routes
    from voice_router.routes import dump_routes, load_routes

    out = Path(args.out)
    if out.exists() and not args.force:
        raise RoutesError(f"{out} exists; pass --force to overwrite it or choose another --out")
    if args.format == "home-assistant":
        from voice_router.importers import import_home_assistant

        imported = import_home_assistant(args.language, args.lists)
    elif args.source is None:
        raise RoutesError(f"routes import {args.format}: give the SOURCE file to import")
    else:
        imported = import_routes(args.format, args.source)
    dump_routes(imported.routes, out)
    written = load_routes(out)  # what was written reads back as a valid routes file
    for note in imported.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        _print_json({"out": str(out), "routes": written.names, "notes": imported.notes})
    else:
        source = args.source or f"home-assistant-intents ({args.language})"
        print(f"{out}: {len(written.routes)} routes from {source} ({args.format})")
    return 0


def cmd_index_audio(args: argparse.Namespace) -> int:
    """Index a folder of audio into a library collection.

    The folder is checked first: a missing one, or one without audio files, fails (AudioError,
    exit 3) before a model loads or a collection is created, so no empty collection is left
    behind for `index list` and `search` to show."""
    from voice_router.library import AudioLibrary, audio_extensions, audio_folder
    from voice_router.model.loader import load_model

    folder, files = audio_folder(args.dir)
    if not files:
        raise AudioError(
            f"{folder} holds no audio files (looked for "
            f"{', '.join(sorted(audio_extensions()))}, in subfolders too); pass the folder "
            "that holds your recordings"
        )
    model = load_model(args.model)
    with AudioLibrary(model, args.collection, open_store(args)) as lib:
        rep = lib.index_dir(args.dir, batch_size=args.batch_size, progress=not args.json)
        total = lib.count()
    for path, err in rep.failed:
        print(f"warning: skipped {path}: {err}", file=sys.stderr)
    if args.json:
        _print_json({"collection": args.collection, "points": total, **rep.to_dict()})
    else:
        print(
            f"{args.collection}: {rep.indexed} indexed, {rep.skipped} already indexed, "
            f"{len(rep.failed)} unreadable, {rep.removed} removed; {total} files in the collection"
        )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """Search a library collection by text."""
    from voice_router.library import AudioLibrary
    from voice_router.model.loader import load_model

    model = load_model(args.model)
    with AudioLibrary(model, args.collection, open_store(args), create=False) as lib:
        hits = lib.search(args.text, k=args.k)
    for h in hits:
        if args.json:
            _print_json(h.to_dict())
        else:
            print(f"{h.score:.3f}  {h.path}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List the models `--model` accepts."""
    from voice_router.model.loader import list_models
    from voice_router.store import default_index_path

    rows = list_models()

    if args.json:
        for r in rows:
            _print_json(r)
    else:
        for r in rows:
            desc = r.get("description") or ""
            can = ", ".join(r.get("runtimes") or []) or ("-" if r.get("available") else "none")
            fusion = f"\t[fusion: {r['fusion']}]" if r.get("fusion") else ""
            print(f"{r.get('name')}\t[runs on: {can}]{fusion}\t{desc}")
        print(f"\nindex folder: {default_index_path()}")
    return 0


def cmd_index_list(args: argparse.Namespace) -> int:
    """List the collections of an index (Edge folder or Qdrant server)."""
    store = open_store(args)
    try:
        rows = store.describe()
    finally:
        store.close()
    if args.json:
        for r in rows:
            _print_json(r)
    elif not rows:
        print(f"no collections in {store.location}")
    else:
        print(f"{store.location}:")
        for r in rows:
            size = "" if r["bytes"] is None else f"{r['bytes'] / 1e6:8.1f} MB"
            print(f"  {r['name']:<48} {r['kind'] or '?':<8} {size}")
    return 0


def cmd_index_prune(args: argparse.Namespace) -> int:
    """Delete route collections of other models (and, with --routes, of other route sets)."""
    from voice_router.index import prune_route_collections, route_set_id
    from voice_router.model.loader import load_model
    from voice_router.routes import load_routes

    fp = load_model(args.model).fingerprint
    keep_sets = {route_set_id(load_routes(f)) for f in args.routes} if args.routes else None
    store = open_store(args)
    try:
        gone = prune_route_collections(store, fp, keep_sets, dry_run=args.dry_run)
    finally:
        store.close()
    verb = "would delete" if args.dry_run else "deleted"
    for r in gone:
        if args.json:
            _print_json({"name": r["name"], "bytes": r["bytes"], "deleted": not args.dry_run})
        else:
            size = "" if r["bytes"] is None else f" ({r['bytes'] / 1e6:.1f} MB)"
            print(f"{verb} {r['name']}{size}")
    if not gone and not args.json:
        print("nothing to prune")
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    """Write a model folder's ONNX graphs (voice_router.model.onnx_export)."""
    from voice_router.errors import ModelError
    from voice_router.model.loader import have

    missing = [m for m in ("torch", "onnx") if not have(m)]
    if missing:
        raise ModelError(
            f"export-onnx needs {' and '.join(missing)}: pip install 'voice-router[train]'"
        )
    if not (Path(args.folder) / "config.json").is_file():
        raise ModelError(f"{args.folder} is not a model folder (no config.json)")
    from voice_router.model.onnx_export import export_onnx

    files = export_onnx(args.folder)
    if args.json:
        _print_json({"files": [{"path": str(f), "bytes": f.stat().st_size} for f in files]})
    else:
        for f in files:
            print(f"wrote {f} ({f.stat().st_size / 1e3:.1f} kB)")
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    """Store recordings of a route as its audio exemplars."""
    from voice_router.audio.io import load_audio
    from voice_router.index import RouteIndex, route_set_id
    from voice_router.model.loader import load_model
    from voice_router.points import PointBuilder
    from voice_router.routes import load_routes

    routes = load_routes(args.routes)
    routes.get(args.route)  # raises RoutesError for an unknown route
    model = load_model(args.model)
    clips = [load_audio(f, target_rate=model.sample_rate) for f in args.files]
    labels = [str(Path(f).resolve()) for f in args.files]
    index = RouteIndex(open_store(args), dim=int(model.dim), fingerprint=model.fingerprint,
                       set_id=route_set_id(routes))  # fmt: skip
    with index:
        n = PointBuilder(model, exemplar_voices=0).enroll(index, args.route, clips, labels)
    if args.json:
        _print_json({"route": args.route, "enrolled": n})
    else:
        print(f"{args.route}: enrolled {n} clip(s)")
    return 0


# -- parser -----------------------------------------------------------------------------------

EPILOG = """\
examples:
  voice-router routes check routes/home.yaml
  voice-router route kitchen.wav --routes routes/home.yaml --json
  voice-router route clips/*.flac --routes routes/home.yaml --dry-run
  voice-router enroll lights_on me_lights_on_1.wav me_lights_on_2.wav --routes routes/home.yaml
  voice-router index-audio ~/recordings --collection sounds
  voice-router search "a dog barking" --collection sounds -k 5
  voice-router listen --routes routes/home.yaml --json

The first run with a routes file speaks every route text with a dozen TTS voices (espeak-ng)
and stores those audio exemplars in the index: it takes a while once, then starts in seconds.
Compute uses one thread; set OMP_NUM_THREADS to change it.
"""


def _register_optional(sub: Any, module: str) -> None:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            return  # that part of voice-router is not installed/written
        raise
    mod.register_cli(sub)


def build_parser(optional: bool = True) -> argparse.ArgumentParser:
    """The top-level parser with every subcommand (`optional=False`: without those of
    OPTIONAL_COMMAND_MODULES, whose imports a `route` call need not pay for)."""
    p = argparse.ArgumentParser(
        prog="voice-router",
        description="Route spoken commands to LangChain tools by audio-text embedding "
        "similarity, without transcription.",
        epilog=EPILOG,
        formatter_class=_FMT,
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser(
        "route",
        help="route audio files to their routes and tools",
        description="Decide the route of each audio file and call the route's tool.",
        epilog="examples:\n  voice-router route cmd.wav --routes routes/home.yaml --json\n"
        "  voice-router route a.wav b.flac --routes my.yaml --dry-run\n\n"
        "Exit status: 0 when every file was read and every tool called worked; 3 (one line "
        "per bad file on stderr) when a file could not be read, the good files' results still "
        "printed; 7 when a tool cannot be resolved or validated (before any audio) or a tool "
        "raised or timed out (every file still routed).",
        formatter_class=_FMT,
    )
    r.add_argument("files", nargs="+", metavar="AUDIO", help="audio files (WAV, FLAC, OGG, MP3)")
    add_common_args(r)
    add_router_args(r)
    r.set_defaults(func=cmd_route)

    rt = sub.add_parser("routes", help="work with routes files")
    rsub = rt.add_subparsers(dest="routes_command", metavar="ACTION", required=True)
    rc = rsub.add_parser(
        "check",
        help="validate a routes file",
        description="Validate a routes YAML file; exit non-zero with FILE:LINE: message if broken "
        "(4: the file; 7: a tool, e.g. a misspelt `package.module:attr`). Tools named by import "
        "path are looked up without running any code; --allow-import imports them and checks "
        "each route's args too.",
        epilog="examples:\n  voice-router routes check routes/home.yaml\n"
        "  voice-router routes check routes/home.yaml --allow-import",
        formatter_class=_FMT,
    )
    rc.add_argument("file", metavar="ROUTES.yaml", help="the routes file to check")
    rc.add_argument(
        "--allow-import",
        action="store_true",
        help="also import the tools named by import path and validate each route's args "
        "against its tool (runs that code: trusted files only) [default: look the paths up "
        "without importing]",
    )
    rc.add_argument("--json", action="store_true", help="print JSON")
    rc.set_defaults(func=cmd_routes_check)
    ri = rsub.add_parser(
        "import",
        help="convert another tool's route set into a routes file",
        description="Read a route set written for another tool and write it as a voice-router "
        "routes file. Whatever has no equivalent here (another encoder's thresholds, function "
        "schemas, ...) is listed on stderr, never dropped silently.",
        epilog="formats:\n  semantic-router  a semantic-router route layer (JSON or YAML, as "
        "RouterConfig.to_file writes it)\n  rhino            a Picovoice Rhino context (YAML): "
        "intents -> routes with sentences:, slots -> lists:\n  home-assistant   the intents "
        "of the installed home-assistant-intents package (Assist's sentences)\n\n"
        "examples:\n  voice-router "
        "routes import semantic-router layer.json --out routes/assistant.yaml\n  voice-router "
        "routes import rhino smart_lighting.yml --out routes/lighting.yaml\n  voice-router "
        "routes import home-assistant --language en --lists my_names.yaml --out routes/ha.yaml",
        formatter_class=_FMT,
    )
    ri.add_argument("format", metavar="FORMAT", choices=("semantic-router", "rhino",
                    "home-assistant"), help="semantic-router, rhino or home-assistant")  # fmt: skip
    ri.add_argument("source", metavar="SOURCE", nargs="?",
                    help="the file to import (home-assistant: none, see --language)")  # fmt: skip
    ri.add_argument("--language", default="en",
                    help="home-assistant: the intents' language [en]")  # fmt: skip
    ri.add_argument("--lists", metavar="LISTS.yaml", default=None,
                    help="home-assistant: your entity names and areas, a YAML `lists:` mapping "
                    "(name, area, floor) in the routes-file format")  # fmt: skip
    ri.add_argument("--out", required=True, metavar="ROUTES.yaml", help="routes file to write")
    ri.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    ri.add_argument("--json", action="store_true", help="print a JSON summary")
    ri.set_defaults(func=cmd_routes_import)

    ia = sub.add_parser(
        "index-audio",
        help="index a folder of audio for search",
        description="Embed every audio file under DIR into a collection. Resumable: files "
        "already indexed are skipped; unreadable files are reported and skipped. A missing "
        "DIR, or one without audio files, is an error (exit 3) and creates no collection.",
        epilog="example:\n  voice-router index-audio ~/recordings --collection sounds",
        formatter_class=_FMT,
    )
    ia.add_argument("dir", metavar="DIR", help="folder of audio files (searched recursively)")
    ia.add_argument("--collection", required=True, help="collection name (letters, digits, _.-)")
    ia.add_argument("--batch-size", type=int, default=16, help="files per write [%(default)s]")
    add_common_args(ia)
    ia.set_defaults(func=cmd_index_audio)

    se = sub.add_parser(
        "search",
        help="find indexed audio by text",
        description="Search a collection built by index-audio with a text query.",
        epilog='example:\n  voice-router search "a dog barking" --collection sounds -k 5',
        formatter_class=_FMT,
    )
    se.add_argument("text", help="what to look for, in words (e.g. 'a dog barking')")
    se.add_argument(
        "--collection", required=True, help="a collection built by index-audio (must exist)"
    )
    se.add_argument("-k", type=int, default=5, help="results to show [%(default)s]")
    add_common_args(se)
    se.set_defaults(func=cmd_search)

    mo = sub.add_parser(
        "models",
        help="list the available models and the index folder",
        description="List the models `--model` accepts (name, runtime, dimension, fingerprint, "
        "the fusion each routes with) and the folder where route indexes are kept. Nothing "
        "is downloaded: the bundled models ship with the package.",
    )
    mo.add_argument("--json", action="store_true", help="print JSON")
    mo.set_defaults(func=cmd_models)

    en = sub.add_parser(
        "enroll",
        help="add your own recordings of a route",
        description="Store recordings of ROUTE as its audio exemplars (for the current model; "
        "kept while the route exists). For exemplars that survive a model change, list the files "
        "under the route's examples_audio in the routes file instead.",
        epilog="example:\n  voice-router enroll lights_on me1.wav me2.wav --routes home.yaml",
        formatter_class=_FMT,
    )
    en.add_argument("route", help="name of the route the recordings say")
    en.add_argument("files", nargs="+", metavar="AUDIO", help="recordings of the route (WAV, ...)")
    en.add_argument("--routes", required=True, metavar="ROUTES.yaml", help="routes YAML file")
    add_common_args(en)
    en.set_defaults(func=cmd_enroll)

    ix = sub.add_parser(
        "index",
        help="list or prune the index's collections",
        description="Inspect or clean the index (the Qdrant Edge folder, or a server). Route "
        "collections cache a route set's points for one model (named routes_<model "
        "fingerprint>_<route set name>); they are rebuilt when needed.",
        formatter_class=_FMT,
    )
    isub = ix.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    il = isub.add_parser(
        "list",
        help="list collections: name, kind (routes or library), size",
        epilog="example:\n  voice-router index list --json",
        formatter_class=_FMT,
    )
    add_common_args(il)
    il.set_defaults(func=cmd_index_list)
    ip = isub.add_parser(
        "prune",
        help="delete route collections no longer used",
        description="Delete the route collections of models other than --model, and with "
        "--routes those of route sets other than the ones given. Audio-search collections "
        "(index-audio) are never touched. A deleted collection is rebuilt on its next use.",
        epilog="examples:\n  voice-router index prune --dry-run\n"
        "  voice-router index prune --routes routes/home.yaml",
        formatter_class=_FMT,
    )
    add_common_args(ip)
    ip.add_argument(
        "--routes",
        nargs="*",
        metavar="ROUTES.yaml",
        help="keep only these route sets' collections (default: every set of --model)",
    )
    ip.add_argument("--dry-run", action="store_true", help="say what would go; delete nothing")
    ip.set_defaults(func=cmd_index_prune)

    ex = sub.add_parser(
        "export-onnx",
        help="write a model folder's ONNX graphs (for the runtime without PyTorch)",
        description="Write audio.graph.onnx, text.graph.onnx, tokenizer.json and onnx.json into "
        "a saved model folder, so `--model FOLDER` runs on ONNX Runtime without PyTorch. The "
        "graphs hold no weights: they are read from the folder's safetensors at load. Needs "
        "the train extra (PyTorch, onnx). The bundled default model ships its graphs.",
        epilog="example:\n  voice-router export-onnx runs/my_model/export",
        formatter_class=_FMT,
    )
    ex.add_argument(
        "folder", metavar="FOLDER", help="model folder (config.json + model.safetensors)"
    )
    ex.add_argument("--json", action="store_true", help="print JSON")
    ex.set_defaults(func=cmd_export_onnx)

    for module in OPTIONAL_COMMAND_MODULES if optional else ():
        _register_optional(sub, module)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `voice-router` console script; returns the exit status."""
    # One compute thread unless the user says otherwise: clips are short, and on a busy 2-core
    # machine two threads fighting the capture thread and other jobs were measured 5-50x slower
    # per clip than one. Must be set before torch is first imported.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    argv = list(sys.argv[1:] if argv is None else argv)
    # The core commands parse without importing listen/evaluate (start-up of a `route` call)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(optional=first not in CORE_COMMANDS)
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except VoiceRouterError as e:
        _print_error(e)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` etc.: quiet exit, as other Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
