"""Example home-assistant tools for routes/home.yaml, as plain typed functions.

They stand in for real devices: each returns a sentence saying what it did and records the
action in `ACTIONS` (in memory) and, when the environment variable `VOICE_ROUTER_ACTION_LOG`
names a file, appends it there as one JSON line, so a test or a demo can see what happened.
Tools that take a `match` argument receive the routing decision (route, score, margin...).

Plain functions with type hints and a docstring, not LangChain `@tool` objects: passed in
Python, the router makes each a LangChain tool (`StructuredTool.from_function`, the same
schema `@tool` gives); named by import path from the shell, they are called as they are
(`voice_router.function_tool`), so `voice-router route --allow-import` does not import
langchain_core and langsmith (0.8 s of every start). `@tool`-decorated functions work too.

Use them from Python (no import paths needed):

    from examples.home_tools import HOME_TOOLS
    router = VoiceRouter("routes/home.yaml", tools=HOME_TOOLS)

or from the shell, letting the routes file import them by path:

    voice-router route clip.wav --routes routes/home.yaml --allow-import
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
from typing import Any, Literal

#: Every action taken, oldest first: {"tool": ..., **arguments}.
ACTIONS: list[dict[str, Any]] = []
_lock = threading.Lock()
_state: dict[str, Any] = {"lights": {}, "thermostat_c": 20.0, "volume": 5, "timer_min": None}


def _record(tool_name: str, **fields: Any) -> None:
    entry = {"tool": tool_name, **{k: v for k, v in fields.items() if v is not None}}
    with _lock:
        ACTIONS.append(entry)
        path = os.environ.get("VOICE_ROUTER_ACTION_LOG")
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")


def _route(match: dict | None) -> str | None:
    return (match or {}).get("route")


def lights_on(room: str = "living room", match: dict | None = None) -> str:
    """Turn the lights on in a room."""
    _state["lights"][room] = True
    _record("lights_on", room=room, route=_route(match))
    return f"Lights on in the {room}."


def lights_off(room: str = "living room", match: dict | None = None) -> str:
    """Turn the lights off in a room."""
    _state["lights"][room] = False
    _record("lights_off", room=room, route=_route(match))
    return f"Lights off in the {room}."


def set_thermostat(
    change: Literal["up", "down"], step_c: float = 1.0, match: dict | None = None
) -> str:
    """Turn the thermostat up or down by step_c degrees Celsius."""
    with _lock:
        _state["thermostat_c"] += step_c if change == "up" else -step_c
        now = _state["thermostat_c"]
    _record("set_thermostat", change=change, step_c=step_c, route=_route(match))
    return f"Thermostat {change}: now {now:.1f} °C."


def media_control(
    action: Literal["play", "pause", "next", "volume_up", "volume_down"],
    match: dict | None = None,
) -> str:
    """Control the music player: play, pause, next track, volume up or down."""
    if action in ("volume_up", "volume_down"):
        with _lock:
            _state["volume"] = max(
                0, min(10, _state["volume"] + (1 if action == "volume_up" else -1))
            )
            vol = _state["volume"]
        _record("media_control", action=action, volume=vol, route=_route(match))
        return f"Volume {vol}/10."
    _record("media_control", action=action, route=_route(match))
    return {"play": "Playing music.", "pause": "Music paused.", "next": "Next track."}[action]


def set_timer(minutes: float = 5.0, match: dict | None = None) -> str:
    """Start a timer for some minutes (5 when the request said no duration)."""
    _state["timer_min"] = minutes
    _record("set_timer", minutes=minutes, route=_route(match))
    return f"Timer set for {minutes:g} minutes."


def cancel_timer(match: dict | None = None) -> str:
    """Cancel the running timer."""
    had = _state["timer_min"] is not None
    _state["timer_min"] = None
    _record("cancel_timer", route=_route(match))
    return "Timer cancelled." if had else "There was no timer running."


def get_weather(city: str = "here", match: dict | None = None) -> str:
    """Tell the weather forecast (a canned answer: this example has no network)."""
    _record("get_weather", city=city, route=_route(match))
    return f"The forecast for {city}: mild, light wind, 20% chance of rain."


def add_to_shopping_list(item: str = "an item to confirm", match: dict | None = None) -> str:
    """Add an item to the shopping list."""
    _record("add_to_shopping_list", item=item, route=_route(match))
    return f"Added {item} to the shopping list."


def get_time(match: dict | None = None) -> str:
    """Tell the current local time."""
    now = _dt.datetime.now().strftime("%H:%M")
    _record("get_time", time=now, route=_route(match))
    return f"It is {now}."


def lock_door(door: str = "front door", match: dict | None = None) -> str:
    """Lock a door."""
    _record("lock_door", door=door, route=_route(match))
    return f"The {door} is locked."


HOME_TOOLS = [
    lights_on,
    lights_off,
    set_thermostat,
    media_control,
    set_timer,
    cancel_timer,
    get_weather,
    add_to_shopping_list,
    get_time,
    lock_door,
]
