"""A model folder's routing defaults (`routing.json`): the score fusion its authors chose, and
the decision threshold and margin for routes files that set none.

How much a route's spoken exemplars should count against its text depends on the model: a head
whose audio lands close to route texts wants more text weight than one that lands close to other
speech. So the weight is the model's, chosen when the model is, on held-out clips, and written
next to its weights. It lives apart from config.json because it changes no vector: editing it
neither changes the model's fingerprint nor forces an index to be rebuilt (like a hub model's
generation_config.json beside its config.json).

    {"fusion": "weighted:0.3,0.7;k=3", "chosen_on": "what data picked it, and the command",
     "threshold": 0.55, "margin": 0.01, "threshold_chosen_on": "..."}

A score threshold is the model's as much as the fusion is: cosines of one head sit higher or
lower than another's, so one constant for every model made an uncalibrated routes file match
nothing (or everything). A routes file's own `threshold:` / `margin:` always win.

The spec is `voice_router.decision.Fusion.parse`'s; the router checks it (the model layer does
not import the decision rule). A folder without the file uses the router's default fusion.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from voice_router.errors import ModelError

ROUTING_NAME = "routing.json"


def read_fusion(folder: str | os.PathLike[str]) -> str | None:
    """The fusion spec `folder/routing.json` names, or None when the folder has no such file."""
    path = Path(folder) / ROUTING_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {path}: {e}; fix the JSON or delete the file") from None
    spec = data.get("fusion") if isinstance(data, dict) else None
    if spec is not None and not (isinstance(spec, str) and spec.strip()):
        raise ModelError(
            f"{path}: 'fusion' must be a spec string such as \"weighted:0.3,0.7;k=3\", got {spec!r}"
        )
    return spec


def write_fusion(folder: str | os.PathLike[str], spec: str, chosen_on: str = "") -> Path:
    """Write `folder/routing.json` with the fusion `spec` and a note on how it was chosen."""
    path = Path(folder) / ROUTING_NAME
    data = {"fusion": spec, "chosen_on": chosen_on}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def read_decision_defaults(folder: str | os.PathLike[str]) -> dict[str, float]:
    """{"threshold": .., "margin": ..} that `folder/routing.json` gives (either may be absent;
    {} without the file)."""
    path = Path(folder) / ROUTING_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {path}: {e}; fix the JSON or delete the file") from None
    out: dict[str, float] = {}
    for key, lo, hi in (("threshold", -1.0, 1.0), ("margin", 0.0, 2.0)):
        value = data.get(key) if isinstance(data, dict) else None
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise ModelError(f"{path}: {key!r} must be a number in [{lo}, {hi}], got {value!r}")
        out[key] = float(value)
    return out


def write_decision_defaults(
    folder: str | os.PathLike[str], threshold: float, margin: float, chosen_on: str = ""
) -> Path:
    """Add the default threshold and margin to `folder/routing.json` (its fusion is kept)."""
    path = Path(folder) / ROUTING_NAME
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data.update(threshold=threshold, margin=margin, threshold_chosen_on=chosen_on)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
