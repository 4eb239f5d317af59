"""Route one recording to a home-assistant action and call its LangChain tool.

    python examples/01_route_a_file.py [AUDIO] [--model default] [--index :memory:]

Loads routes/home.yaml, syncs the route index (only missing points are embedded, so the second
run starts fast), routes the clip and prints the decision and what the tool did.
"""

from __future__ import annotations

import json

from _common import HOME_ROUTES, SAMPLE_CLIP, parser, pick_model

from examples.home_tools import ACTIONS, HOME_TOOLS
from voice_router import VoiceRouter


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("audio", nargs="?", default=str(SAMPLE_CLIP), help="an audio file")
    args = p.parse_args()
    with VoiceRouter(
        HOME_ROUTES,
        model=pick_model(args.model),
        tools=HOME_TOOLS,
        index=args.index,
        exemplar_voices=args.exemplar_voices,
    ) as router:
        match = router.route(args.audio)
    print(json.dumps(match.to_dict(), indent=2))
    if match.route is None:
        print(f"no route matched (nearest: {match.nearest}, score {match.score:.3f})")
    else:
        print(f"-> {match.route}: {match.tool_result or match.tool_error}")
    print("actions taken:", ACTIONS)


if __name__ == "__main__":
    main()
