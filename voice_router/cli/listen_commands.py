"""`voice-router listen` and `voice-router devices`: the command-line face of
`voice_router.listen` (options, status lines on stderr, one line or JSON object per utterance)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from voice_router.audio.capture import AudioSource
from voice_router.audio.vad import SAMPLE_RATE, UtteranceSegmenter
from voice_router.errors import DeviceError, VoiceRouterError
from voice_router.listen import ListenResult, listen


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _format_line(r: ListenResult) -> str:
    m = r.match
    clock = r.started_at[11:19]
    if r.route is None:
        nearest = getattr(m, "nearest", None)
        head = f"{clock} no match (nearest {nearest}, score {r.score:.3f}, margin {r.margin:.3f})"
    else:
        head = f"{clock} {r.route} (score {r.score:.3f}, margin {r.margin:.3f})"
        err, tool = getattr(m, "tool_error", None), getattr(m, "tool", None)
        if err:
            head += f" -> tool error: {err}"
        elif tool:
            head += f" -> {tool}: {getattr(m, 'tool_result', None)}"
    return f"{head}  [{r.latency_ms:.0f} ms]"


def cmd_listen(args: argparse.Namespace) -> int:
    """`voice-router listen`: route what the microphone (or --file) hears until stopped."""
    from voice_router.audio.capture import FileSource, MicrophoneSource
    from voice_router.cli import build_router

    # Check the options and open the audio first: a bad value, a missing device or a server
    # that is not running fails fast, before any model loads.
    try:
        if args.max_pending < 1:
            raise ValueError("--max-pending must be >= 1")
        if args.max_seconds <= 0:
            raise ValueError("--max-seconds must be > 0")
        segmenter = UtteranceSegmenter(
            threshold=args.vad_threshold,
            silence_ms=args.silence_ms,
            max_ms=1000.0 * args.max_seconds,
            min_ms=args.min_ms,
            pre_roll_ms=args.pre_roll_ms,
        )
        wake = None
        if args.wake_word:
            from voice_router.wakeword import WakeWordDetector

            wake = WakeWordDetector(args.wake_word, threshold=args.wake_threshold)
    except ValueError as e:
        raise VoiceRouterError(f"invalid option: {e}") from None
    save_dir = None
    if args.save_utterances:
        save_dir = Path(args.save_utterances)
        try:
            save_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise VoiceRouterError(
                f"cannot create --save-utterances folder {save_dir}: {e}"
            ) from None
    if args.file:
        source: AudioSource = FileSource(args.file, realtime=args.realtime)
        where = args.file
    else:
        source = MicrophoneSource(args.device)
        where = f"{source.info['name']} (device {source.info['index']}, {source.native_rate} Hz)"
    _err("loading routes and model...")
    router = build_router(args)
    listener = listen(
        source,
        router,
        segmenter=segmenter,
        max_pending=args.max_pending,
        max_utterances=args.max_utterances,
        wake_word=wake,
        on_status=lambda msg: _err(
            f"listening on {where}"
            + (f", say {args.wake_word!r} first" if args.wake_word else "")
            + " (Ctrl-C to stop)"
            if msg == "listening"
            else msg
        ),
    )

    stopped_by: list[int] = []  # the signal that stopped listening, if one did

    def _on_term(signum: int, frame: Any) -> None:
        stopped_by.append(signum)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, _on_term) if _main_thread() else None
    interrupted = False
    try:
        for r in listener:
            d = r.to_dict()
            if save_dir is not None and r.audio is not None:
                d["audio_file"] = str(_save_utterance(save_dir, r))
            if args.json:
                print(json.dumps(d, ensure_ascii=False, default=str), flush=True)
            else:
                line = _format_line(r)
                if "audio_file" in d:
                    line += f"  {d['audio_file']}"
                print(line, flush=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        listener.close()
        if old is not None:
            signal.signal(signal.SIGTERM, old)
        close = getattr(router, "close", None)
        if close is not None:
            close()
    s = listener.stats
    s.ignored_short = listener.segmenter.ignored
    extra = source.stats().get("dropped_blocks", 0)
    _err(
        ("stopped" if interrupted else "done")
        + f": {s.summary()}"
        + (f"; {extra} audio block(s) dropped by capture" if extra else "")
    )
    if not interrupted:
        return 0
    # As shells report a process a signal stopped: 128 + the signal (Ctrl-C 130, SIGTERM 143),
    # so a script can tell an interrupted run from one that ran out of input
    return 128 + int(stopped_by[0] if stopped_by else signal.SIGINT)


def _save_utterance(folder: Path, r: ListenResult) -> Path:
    """Write the routed audio of `r` as 16-bit WAV; the name sorts by time."""
    import soundfile as sf

    stamp = r.started_at[:23].replace(":", "").replace("-", "").replace(".", "")
    path = folder / f"utt-{stamp}-{r.index:04d}-{r.route or 'none'}.wav"
    try:
        sf.write(path, np.asarray(r.audio, np.float32), SAMPLE_RATE, subtype="PCM_16")
    except (OSError, RuntimeError) as e:  # soundfile raises RuntimeError (LibsndfileError)
        raise VoiceRouterError(f"cannot write {path}: {e}") from e
    return path


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def cmd_devices(args: argparse.Namespace) -> int:
    """`voice-router devices`: list audio inputs (index, name, channels, native rate)."""
    from voice_router.audio.capture import list_input_devices

    devs = list_input_devices()
    if not devs:
        raise DeviceError(
            "no audio input devices found; check that an audio server (PulseAudio or PipeWire) "
            "is running (`pactl info`) and that a microphone is connected"
        )
    if args.json:
        for d in devs:
            print(json.dumps(d.to_dict()), flush=True)
        return 0
    for d in devs:
        mark = "*" if d.is_default else " "
        print(
            f"{mark} {d.index:3d}  {d.name}  ({d.hostapi}, {d.channels} ch, "
            f"{d.default_samplerate:.0f} Hz)"
        )
    print("\n* = default input; use `voice-router listen --device INDEX|NAME`", file=sys.stderr)
    return 0


LISTEN_EPILOG = """\
examples:
  voice-router devices
  voice-router listen --routes routes/home.yaml
  voice-router listen --routes routes/home.yaml --device pulse --json --max-utterances 1
  voice-router listen --routes routes/home.yaml --wake-word hey_jarvis --dry-run
  voice-router listen --routes routes/home.yaml --file commands.wav --json

Output: one line per utterance on stdout (a JSON object with --json: route, score, margin,
started_at, latency_ms = end of speech to tool call done, ...); status on stderr. Ctrl-C stops
and prints a summary (utterances, matched, dropped).
"""


def register_cli(subparsers: Any) -> None:
    """Add the `listen` and `devices` subcommands to voice-router's CLI."""
    from voice_router.cli import add_common_args, add_router_args

    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "listen",
        help="route what the microphone hears, continuously",
        description="Capture from a microphone (or a file), cut the audio into utterances "
        "with silero-vad, route each one and call its tool.",
        epilog=LISTEN_EPILOG,
        formatter_class=fmt,
    )
    add_common_args(p)
    add_router_args(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--device",
        default=None,
        metavar="INDEX|NAME",
        help="input device index or name (substring), see `voice-router devices` "
        "[default: the system's default input]",
    )
    src.add_argument("--file", metavar="AUDIO", help="listen to an audio file instead")
    p.add_argument(
        "--realtime", action="store_true", help="with --file: play it at real-time speed"
    )
    p.add_argument(
        "--max-utterances", type=int, default=None, metavar="N", help="exit after N utterances"
    )
    p.add_argument(
        "--wake-word",
        default=None,
        metavar="NAME",
        help="only route speech after this wake word (openWakeWord model in pyopen-wakeword: "
        "hey_jarvis, alexa, hey_mycroft, hey_rhasspy, okay_nabu); needs PyTorch: "
        "pip install 'voice-router[torch]'",
    )
    p.add_argument(
        "--wake-threshold",
        type=float,
        default=0.5,
        metavar="P",
        help="wake-word score needed [%(default)s]",
    )
    p.add_argument(
        "--silence-ms",
        type=float,
        default=500.0,
        metavar="MS",
        help="silence that ends an utterance [%(default)s]",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=15.0,
        metavar="S",
        help="longer speech is cut and routed in pieces [%(default)s]",
    )
    p.add_argument(
        "--min-ms",
        type=float,
        default=200.0,
        metavar="MS",
        help="ignore speech shorter than this (clicks) [%(default)s]",
    )
    p.add_argument(
        "--save-utterances",
        metavar="DIR",
        default=None,
        help="write each routed utterance to DIR as a WAV file (to check what was heard, or "
        "to enrol your own recordings)",
    )
    p.add_argument(
        "--pre-roll-ms",
        type=float,
        default=400.0,
        metavar="MS",
        help="audio kept before the detected speech start [%(default)s]",
    )
    p.add_argument(
        "--max-pending",
        type=int,
        default=4,
        metavar="N",
        help="utterances that may wait for the router; beyond, the oldest is dropped and "
        "counted [%(default)s]",
    )
    p.add_argument(
        "--vad-threshold",
        type=float,
        default=0.5,
        metavar="P",
        help="silero-vad speech probability that starts an utterance [%(default)s]",
    )
    p.set_defaults(func=cmd_listen)

    d = subparsers.add_parser(
        "devices",
        help="list audio input devices",
        description="List the audio inputs PortAudio sees (index, name, channels, native rate).",
        epilog="example:\n  voice-router devices --json",
        formatter_class=fmt,
    )
    d.add_argument("--json", action="store_true", help="one JSON object per device")
    d.set_defaults(func=cmd_devices)
