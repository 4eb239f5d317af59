"""A spoken duration reaches the timer tool: slots from routes/home.yaml's templates.

    python examples/04_timer_with_a_duration.py [AUDIO] [--minutes 12] [--model default]

routes/home.yaml's `set_timer` route has `sentences:` such as "set a timer for {minutes}
minutes" over the list `minutes: {range: {from: 1, to: 60}}`. The embedding picks the leading
routes in Qdrant; the slot stage then has Whisper's decoder read the audio held to those
routes' own phrasings (numbers as digits or words), so `minutes` is the number said, exactly,
and the tool (`examples.home_tools.set_timer`) is called with it, validated against its
argument schema. No free transcript is made at any point: the decoder can only spell phrasings.

Without AUDIO the request "set a timer for N minutes" is spoken by espeak-ng (a voice the route
exemplars do not use). Prints the decision, each slot's value with the reading's confidence
(mean log-probability per token), the phrasing read, and what the tool did.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from _common import HOME_ROUTES, parser, pick_model

from examples.home_tools import ACTIONS, HOME_TOOLS
from voice_router import VoiceRouter


def _speak(text: str, folder: Path) -> Path:
    """`text` spoken by espeak-ng into a WAV file in `folder`."""
    import soundfile as sf

    from voice_router import tts

    if not tts.tts_available():
        raise SystemExit("error: espeak-ng is not installed; give a recording instead")
    voice = tts.default_exemplar_voices(24)[-1]  # the exemplars use the first 12
    path = folder / "request.wav"
    sf.write(path, tts.synthesize(text, voice), tts.SAMPLE_RATE)
    return path


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("audio", nargs="?", default=None, help="a recording [default: espeak-ng]")
    p.add_argument("--minutes", type=int, default=12, help="the duration to say [12]")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        audio = args.audio or _speak(f"set a timer for {args.minutes} minutes", Path(tmp))
        with VoiceRouter(
            HOME_ROUTES,
            model=pick_model(args.model),
            tools=HOME_TOOLS,
            index=args.index,
            exemplar_voices=args.exemplar_voices,
        ) as router:
            match = router.route(audio)
    keep = ("route", "score", "args", "slots", "reading", "reason")
    shown = {k: v for k, v in match.to_dict().items() if k in keep}
    print(json.dumps(shown, indent=2))
    if match.route is None:
        print(f"no route matched ({match.reason}; nearest: {match.nearest}, "
              f"score {match.score:.3f})")  # fmt: skip
    else:
        print(f"-> {match.route}{match.args}: {match.tool_result or match.tool_error}")
    print("actions taken:", ACTIONS)


if __name__ == "__main__":
    main()
