"""Command accuracy with slots on synthetic speech of unseen voices.

Imports a Picovoice Rhino context (default: tests/data/rhino_smart_lighting.yml, five intents
over location, color, device, scene and two number slots, written for this project) with
`voice-router routes import rhino`'s code, draws `--n` commands (an intent, one of its
expressions, a random value for EVERY slot: most combinations are not among the stored
phrasings, which vary one slot at a time), speaks each with an espeak-ng voice that the route
exemplars do not use (voices 13-24 of `tts.default_exemplar_voices`), and evaluates them with
`voice-router eval`'s code and an `args` column: `command_accuracy` counts a command right when
the route and every slot value are right.

    python benchmarks/slots_synthetic.py --n 100 --json
    python benchmarks/slots_synthetic.py --n 100 --systems voice-router,whisper-cascade

`--systems whisper-cascade` scores the same clips with the transcription cascade
(benchmarks/cascade.py: Whisper tiny.en transcript, MiniLM routing over the same route texts
and phrasings, slot values by exact matching in the transcript; `bench` extra). Needs
espeak-ng. The clips are written to a temporary folder (or `--keep DIR`).

`--routes ROUTES.yaml` draws from a routes file's templates instead (e.g. routes/home.yaml:
its routes with `sentences:`); `--voices 2` limits the unseen voices; `--noise pink|white|FILE
--snr 6` mixes noise into every clip (voice_router.noise, as `voice-router eval --noise`).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONTEXT = REPO / "tests" / "data" / "rhino_smart_lighting.yml"


def _fill(template: str, lists: dict, rng: random.Random) -> tuple[str, dict]:
    """Say `template` with a random value for every slot and a random wording: the template
    expanded (voice_router.templates, hassil) over lists cut to the one drawn value each."""
    from voice_router.templates import expand_templates, list_values

    drawn = {}
    for name, spec in lists.items():
        said, value = rng.choice(list_values(spec))
        drawn[name] = {"values": [{"in": said, "out": value}]}
    phrasing = rng.choice(expand_templates([template], drawn, budget=None))
    return phrasing.text, phrasing.slots


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--context", type=Path, default=CONTEXT, help="Rhino context YAML")
    ap.add_argument("--routes", type=Path, default=None, help="a routes YAML instead")
    ap.add_argument("--voices", type=int, default=12, help="unseen espeak-ng voices used [12]")
    ap.add_argument("--noise", default=None, help="pink, white or a noise file [none]")
    ap.add_argument("--snr", type=float, default=6.0, help="SNR in dB for --noise [6]")
    ap.add_argument("--n", type=int, default=100, help="commands to synthesise [100]")
    ap.add_argument("--model", default="default", help="voice-router model [default]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="write the clips and manifest here")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument(
        "--systems",
        default="voice-router",
        help="comma list of voice-router, whisper-cascade [voice-router]",
    )
    a = ap.parse_args(argv)
    systems = [x.strip() for x in a.systems.split(",") if x.strip()]
    unknown = sorted(set(systems) - {"voice-router", "whisper-cascade"})
    if unknown or not systems:
        ap.error(f"--systems: unknown {', '.join(unknown) or '(none given)'}; "
                 "choose from voice-router, whisper-cascade")  # fmt: skip

    from voice_router import tts
    from voice_router.evaluate import evaluation_report, read_manifest, score_clips
    from voice_router.importers import import_rhino
    from voice_router.routing import Router

    if not tts.tts_available():
        print("error: espeak-ng is not installed (apt-get install espeak-ng)", file=sys.stderr)
        return 2
    if a.routes is not None:
        from voice_router.routes import load_routes

        routes = load_routes(a.routes)
    else:
        routes = import_rhino(a.context).routes
    drawable = [r for r in routes.routes if r.sentences]
    if not drawable:
        ap.error("the routes have no `sentences:` to draw commands from")
    voices = tts.default_exemplar_voices(24)[12 : 12 + a.voices]  # the exemplars use 0-11
    noise = None
    if a.noise:
        from voice_router.noise import NoiseMixer

        noise = NoiseMixer.from_source(a.noise, a.snr, seed=a.seed)
    rng = random.Random(a.seed)
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="vr-slots-") as tmp:
        folder = a.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(a.n):
            route = rng.choice(drawable)
            text, slots = _fill(rng.choice(route.sentences), routes.lists, rng)
            voice = voices[i % len(voices)]
            sf.write(folder / f"c{i:04d}.wav", tts.synthesize(text, voice), tts.SAMPLE_RATE)
            rows.append({"path": f"c{i:04d}.wav", "label": route.name, "text": text,
                         "args": json.dumps(slots), "speaker": voice.voice})  # fmt: skip
        with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, ["path", "label", "text", "args", "speaker"])
            w.writeheader()
            w.writerows(rows)
        reports = {}
        for system in systems:
            if system == "voice-router":
                scorer = Router(routes, model=a.model, index=str(Path(tmp) / "index"),
                                dispatch=False)  # fmt: skip
            else:
                sys.path.insert(0, str(REPO / "benchmarks"))
                from cascade import CascadeRouter, MiniLMEmbedder, WhisperTranscriber

                scorer = CascadeRouter(routes, WhisperTranscriber(threads=1), MiniLMEmbedder())
            try:
                clips = score_clips(scorer, read_manifest(folder / "manifest.csv"),
                                    noise=noise, progress=True)  # fmt: skip
            finally:
                getattr(scorer, "close", lambda: None)()
            reports[system] = evaluation_report(
                clips,
                routes,
                extra={
                    "context": str(a.routes or a.context),
                    "n": a.n,
                    "system": system,
                    "noise": a.noise,
                    "snr": a.snr if a.noise else None,
                },  # fmt: skip
            )
    keep = ("n", "context", "noise", "snr", "accuracy", "top1_accuracy", "command_accuracy",
            "slot_accuracy", "slot_n", "slot_confusions", "latency_ms")  # fmt: skip
    out = {}
    for system, rep in reports.items():
        out[system] = {k: rep.get(k) for k in keep}
        out[system]["slot_confusions"] = (out[system]["slot_confusions"] or [])[:8]
        if not a.json:
            print(f"{system}: {a.n} commands: route {rep['top1_accuracy']} (top-1), "
                  f"command accuracy {rep['command_accuracy']}; "
                  f"per slot {rep['slot_accuracy']}")  # fmt: skip
    if a.json:
        print(json.dumps(out, indent=2))  # {system: report}
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
