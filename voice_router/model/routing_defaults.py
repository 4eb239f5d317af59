"""A model folder's routing defaults (`routing.json`): the score fusion its authors chose.

How much a route's spoken exemplars should count against its text depends on the model: a head
whose audio lands close to route texts wants more text weight than one that lands close to other
speech. So the weight is the model's, chosen when the model is, on held-out clips, and written
next to its weights. It lives apart from config.json because it changes no vector: editing it
neither changes the model's fingerprint nor forces an index to be rebuilt (like a hub model's
generation_config.json beside its config.json).

    {"fusion": "weighted:0.3,0.7;k=3", "chosen_on": "what data picked it, and the command"}

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
