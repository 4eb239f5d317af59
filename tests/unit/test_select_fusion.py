"""scripts/select_fusion.py: the rule that picks a checkpoint and its fusion weight on the dev
halves (weight by mean routing top-1, ties to 0.5; candidates by that plus cvR@5)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
import select_fusion as sf  # noqa: E402


def _probe(sc: dict[float, float], wake: dict[float, float], rh: dict[float, float], cv: float):
    def fused(d: dict[float, float]) -> dict[str, float]:
        return {f"top1_fused_w{w:g}": v for w, v in d.items()}

    return {
        "speech_commands": fused(sc),
        "wake_phrases": fused(wake),
        "rhasspy": fused(rh),
        "so762_test": {"cvR@5": cv},
    }


def test_weight_maximises_the_mean_and_ties_go_to_half() -> None:
    flat = {0.2: 0.9, 0.5: 0.9, 0.6: 0.9}
    assert sf.choose_weight(_probe(flat, flat, flat, 0.5))[0] == 0.5
    # 0.2 wins on the mean although it loses Rhasspy
    res = _probe({0.2: 1.0, 0.5: 0.9, 0.6: 0.9}, {0.2: 1.0, 0.5: 0.8, 0.6: 0.8},
                 {0.2: 0.8, 0.5: 0.9, 0.6: 0.9}, 0.5)  # fmt: skip
    w, mean = sf.choose_weight(res)
    assert w == 0.2 and mean == pytest.approx((1.0 + 1.0 + 0.8) / 3)


def test_candidates_rank_by_routing_at_their_weight_and_cvr5(tmp_path) -> None:
    flat = {0.3: 0.9, 0.5: 0.9}
    (tmp_path / "a.json").write_text(json.dumps(_probe(flat, flat, flat, 0.50)))
    (tmp_path / "b.json").write_text(json.dumps(_probe(flat, flat, flat, 0.62)))
    rows = sf.rank(sf.load_dir(tmp_path))
    assert [r["candidate"] for r in rows] == ["b", "a"]
    assert rows[0]["score"] == pytest.approx((0.9 * 3 + 0.62) / 4)


def test_an_empty_folder_says_what_to_run(tmp_path) -> None:
    with pytest.raises(SystemExit, match="eval_speech.py"):
        sf.load_dir(tmp_path)
