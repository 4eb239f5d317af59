"""VoiceRouter: the router (`voice_router.routing.Router`) as a LangChain Runnable.

`router.invoke(audio)` returns a `RouteMatch`; `router.as_tool()` hands an agent a tool that
routes an audio file. Scoring, decisions and dispatch are `Router`'s (see its module).
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from voice_router.routing import RouteMatch, Router


class VoiceRouter(Router, Runnable[Any, RouteMatch]):
    """Routes spoken audio to the routes of a `RouteSet` and calls their LangChain tools; a
    LangChain Runnable. Arguments: as `voice_router.routing.Router`."""

    # -- LangChain ----------------------------------------------------------------------------

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> RouteMatch:
        """Runnable entry point: `input` is any AudioInput; returns a RouteMatch."""
        return self._call_with_config(lambda x: self.route(x, **kwargs), input, config)

    def as_tool(  # type: ignore[override]
        self,
        name: str = "voice_router",
        description: str | None = None,
        *,
        dispatch: bool | None = None,
    ) -> Any:
        """A LangChain `StructuredTool` taking `audio_path` and returning the match as a dict,
        so an agent can hand a recording to the router."""
        from langchain_core.tools import StructuredTool

        routes = ", ".join(self.routes.names)
        desc = description or (
            "Route a spoken command in an audio file to an action. Input: the path of an audio "
            f"file. Output: the matched route (one of: {routes}, or null), its score and the "
            "result of the action's tool."
        )

        def _route_audio(audio_path: str) -> dict[str, Any]:
            return self.route(audio_path, dispatch=dispatch).to_dict()

        return StructuredTool.from_function(_route_audio, name=name, description=desc)
