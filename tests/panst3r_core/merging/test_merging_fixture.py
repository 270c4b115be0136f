"""The three merges reproduce the official post-processing on the ``official_tiny_v1`` fixture.

The fixture's README: ``pp_*`` are the official ``panoptic_inference_{qubo,v2,v1}`` outputs on the tiny model's
logits (3 views, 8 queries), ``synpp_*`` the same on synthetic partition-like logits (12 queries); the id maps must
match exactly when fed the saved logits. The official QUBO ``query_id`` is the index within the selected subset.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _fixtures import PARITY_FIXTURE
from _merging_helpers import MERGES, qubo_weights, same_partition, solve_qubo

from panst3r_splat.core.merging import QuboConfig
from panst3r_splat.core.merging.solver import _anneal_official

FIXTURE = PARITY_FIXTURE
IMAGE_HW = (48, 64)
CASES = ("pp", "synpp")


@pytest.fixture(scope="module")
def outputs() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURE / "outputs.npz"))


@pytest.fixture(scope="module")
def official_json() -> dict:
    return json.loads((FIXTURE / "postprocess.json").read_text())


def case_inputs(outputs: dict[str, np.ndarray], case: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(class_logits [Q, K], mask_logits [V, Q, h, w]) of a fixture case."""
    if case == "pp":
        return torch.from_numpy(outputs["infer_allkf_pred_logits"][0]), torch.from_numpy(outputs["infer_allkf_pred_masks"])
    return torch.from_numpy(outputs["synpp_in_pred_logits"][0]), torch.from_numpy(outputs["synpp_in_pred_masks"])


def official_segments(official_json: dict, case: str, merge: str) -> list[dict]:
    return (official_json if case == "pp" else official_json["synthetic"])[merge]["segments_info"]


@pytest.mark.parametrize("merge", list(MERGES))
@pytest.mark.parametrize("case", CASES)
def test_id_maps_confidences_and_categories_match_official(outputs, official_json, case, merge):
    class_logits, mask_logits = case_inputs(outputs, case)
    result = MERGES[merge](class_logits, mask_logits, IMAGE_HW)
    expected_pan = torch.from_numpy(outputs[f"{case}_{merge}_pan"])
    assert same_partition(result.panoptic, expected_pan)
    assert torch.equal(result.panoptic, expected_pan)  # also the same numbering: ids in query order
    torch.testing.assert_close(result.confidence, torch.from_numpy(outputs[f"{case}_{merge}_conf"]), atol=1e-6, rtol=0)
    expected = official_segments(official_json, case, merge)
    assert [s.category_id for s in result.segments] == [e["category_id"] for e in expected]
    assert [s.id for s in result.segments] == [e["id"] for e in expected]
    if merge != "qubo":  # standard merges store the real query index
        assert [s.query_id for s in result.segments] == [e["query_id"] for e in expected]


@pytest.mark.parametrize("case", CASES)
def test_qubo_weights_solution_and_energy_match_official(outputs, official_json, case):
    class_logits, mask_logits = case_inputs(outputs, case)
    A = qubo_weights(mask_logits, IMAGE_HW)
    # The official matrix is float32 with float32 sums; ours float64, so agreement is to float32 rounding.
    torch.testing.assert_close(A, torch.from_numpy(outputs[f"{case}_qubo_A"]).double(), atol=1e-6, rtol=1e-5)
    solution = solve_qubo(A, config=QuboConfig(), seed=0)
    assert solution.proven_optimal
    assert solution.selected.long().tolist() == outputs[f"{case}_qubo_solution"].tolist()
    assert solution.energy == pytest.approx(float(outputs[f"{case}_qubo_energy"]), abs=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_qubo_segments_info_matches_official(outputs, official_json, case):
    class_logits, mask_logits = case_inputs(outputs, case)
    result = MERGES["qubo"](class_logits, mask_logits, IMAGE_HW)
    selected = np.flatnonzero(outputs[f"{case}_qubo_solution"])
    expected = official_segments(official_json, case, "qubo")
    assert len(result.segments) == len(expected)
    for ours, theirs in zip(result.segments, expected):
        assert ours.query_id == selected[theirs["query_id"]]  # official: index within the selected subset
        assert ours.area == theirs["area"]
        assert ours.class_prob == pytest.approx(theirs["class_prob"], abs=1e-6)
        assert ours.mask_conf == pytest.approx(theirs["mask_conf"], abs=1e-6)
        assert ours.score == pytest.approx(theirs["class_prob"] * theirs["mask_conf"], abs=1e-6)


@pytest.mark.parametrize("case", [pytest.param("pp", marks=pytest.mark.slow), "synpp"])
def test_official_annealing_twin_reproduces_the_official_run(outputs, official_json, case):
    """Same legacy numpy stream (seed 7, 20 restarts): bitwise the official solution and energy."""
    seed = (official_json if case == "pp" else official_json["synthetic"])["qubo"]["seed_numpy_legacy"]
    x, energy = _anneal_official(outputs[f"{case}_qubo_A"], seed=seed)
    assert x.tolist() == outputs[f"{case}_qubo_solution"].tolist()
    assert energy == float(outputs[f"{case}_qubo_energy"])
