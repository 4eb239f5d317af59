"""An agent that hands a recording to the voice router, used as a LangChain tool.

    python examples/02_langchain_agent_tool.py [AUDIO] [--model default] [--index :memory:]

No LLM can be downloaded here, so the agent's chat model is langchain_core's fake chat model
scripted to do what a tool-calling LLM would: call the `voice_router` tool with the audio
path, then answer from the tool's result. Swap in any real chat model with `.bind_tools()`.
"""

from __future__ import annotations

import json

from _common import HOME_ROUTES, SAMPLE_CLIP, parser, pick_model
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from examples.home_tools import ACTIONS, HOME_TOOLS
from voice_router import VoiceRouter


def run_agent(model, tools, question: str, max_steps: int = 4) -> list:
    """A minimal tool-calling loop: ask the model, run the tools it calls, repeat."""
    by_name = {t.name: t for t in tools}
    messages: list = [HumanMessage(question)]
    for _ in range(max_steps):
        reply = model.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            out = by_name[call["name"]].invoke(call["args"])
            messages.append(ToolMessage(json.dumps(out), tool_call_id=call["id"]))
    return messages


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("audio", nargs="?", default=str(SAMPLE_CLIP), help="an audio file")
    args = p.parse_args()
    router = VoiceRouter(
        HOME_ROUTES,
        model=pick_model(args.model),
        tools=HOME_TOOLS,
        index=args.index,
        exemplar_voices=args.exemplar_voices,
    )
    voice_tool = router.as_tool()
    scripted_llm = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[
                        {"name": voice_tool.name, "args": {"audio_path": args.audio}, "id": "c1"}
                    ],
                ),
                AIMessage(content="I routed your recording; see the tool result above."),
            ]
        )
    )
    messages = run_agent(scripted_llm, [voice_tool], f"Please handle the command in {args.audio}")
    for m in messages:
        print(f"[{type(m).__name__}] {m.content or m.tool_calls}")
    result = json.loads(messages[2].content)
    print("router decided:", result["route"], "| actions taken:", ACTIONS)
    router.close()


if __name__ == "__main__":
    main()
