"""`scripts/evaluate_cameras.py` on one tiny held-out room: every kind of matches is scored, exact matches give
exact cameras, the JSON holds the table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _script_modules import load_script

script = load_script("scripts/evaluate_cameras.py", "scripts_evaluate_cameras")


def test_one_small_room_is_scored_per_kind_of_matches(tmp_path: Path) -> None:
    args = argparse.Namespace(scenes=1, views=4, width=128, height=96, path="orbit", timing=None, checkpoint=None,
                              self_calibration_passes=0, out=tmp_path)
    result = script.evaluate(args)
    assert set(result["summary"]) == set(script.KINDS)
    exact = result["summary"]["gt"]
    assert exact["median_rot_deg"] < 1e-6 and exact["connected_share"] == 1.0
    for kind in script.KINDS:
        assert 0.0 <= result["summary"][kind]["median_rot_deg"] <= 180.0
    json.dumps(result)  # what main() writes
