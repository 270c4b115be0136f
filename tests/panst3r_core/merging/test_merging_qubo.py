"""The QUBO weight matrix and solver against their reference twins and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from _typecheck import rejects
import torch
from _merging_helpers import qubo_energy, qubo_weights, solve_qubo

from panst3r_splat.core import merging
from panst3r_splat.core.merging import QuboConfig
from panst3r_splat.core.merging import weights as weights_module
from panst3r_splat.core.merging.masks import _upsampled_mask_probs
from panst3r_splat.core.merging.solver import (
    _anneal_official,
    _polish,
    _polish_pairs,
    _qubo_bruteforce,
    _qubo_energy,
    _solve_exact,
    _tolerance,
)
from panst3r_splat.core.merging.synthetic import synthetic_masks
from panst3r_splat.core.merging.weights import _weight_from_masks

from hypothesis import given, settings
from hypothesis import strategies as st

LAMBDA = 1e-3


def random_qubo(seed: int, n: int, mask_like: bool) -> torch.Tensor:
    """A symmetric matrix: either like ``qubo_weights`` (negative diagonal, non-negative overlaps) or any signs."""
    g = torch.Generator().manual_seed(seed)
    M = torch.rand(n, n, generator=g, dtype=torch.float64)
    if mask_like:
        keep = torch.rand(n, n, generator=g, dtype=torch.float64) < 0.4
        M = 0.2 * (M + M.T) * (keep | keep.T)
        M.diagonal().copy_(-torch.rand(n, generator=g, dtype=torch.float64))
        return M
    M = 2 * M - 1
    return (M + M.T) / 2


def instance_weights(seed: int, num_queries: int) -> torch.Tensor:
    s = synthetic_masks(num_views=3, num_queries=num_queries, mask_hw=(12, 16), num_objects=10, seed=seed)
    return qubo_weights(s.mask_logits, (24, 32))


# ------------------------------------------------------------------------------------------------------- weights


@pytest.mark.parametrize("tile_elements", [1 << 21, 1000])  # one chunk per view; many chunks, ragged last chunk
def test_streamed_weights_match_the_twin(monkeypatch, tile_elements):
    s = synthetic_masks(num_views=2, num_queries=53, mask_hw=(10, 14), num_objects=8, seed=4)  # 53: ragged blocks
    monkeypatch.setitem(weights_module._TILE_ELEMENTS, "cpu", tile_elements)
    A = qubo_weights(s.mask_logits, (20, 28))
    A_ref = _weight_from_masks(_upsampled_mask_probs(s.mask_logits, (20, 28)))
    torch.testing.assert_close(A, A_ref, atol=1e-9, rtol=1e-6)  # float32 sums within a tile
    assert torch.equal(A, A.T)
    assert torch.all(A.diagonal() < 0) and torch.all(A - torch.diag(A.diagonal()) >= 0)


def test_mask_resolution_weights_are_the_twin_without_upsampling():
    s = synthetic_masks(num_views=2, num_queries=12, mask_hw=(10, 14), num_objects=5, seed=5)
    A = qubo_weights(s.mask_logits, (20, 28), mode="mask_res")
    torch.testing.assert_close(A, _weight_from_masks(s.mask_logits.sigmoid().transpose(0, 1)), atol=1e-9, rtol=1e-6)


def test_penalty_scales_only_the_overlaps():
    s = synthetic_masks(num_views=2, num_queries=12, mask_hw=(10, 14), num_objects=5, seed=6)
    A1 = qubo_weights(s.mask_logits, (20, 28), penalty=1.0)
    A3 = qubo_weights(s.mask_logits, (20, 28), penalty=3.0)
    torch.testing.assert_close(A3.diagonal(), A1.diagonal(), atol=0, rtol=0)
    off = ~torch.eye(12, dtype=torch.bool)
    torch.testing.assert_close(A3[off], 2.0 * A1[off], atol=1e-15, rtol=1e-12)


# -------------------------------------------------------------------------------------------------------- energy


def test_energy_matches_its_definition():
    A = random_qubo(0, 7, mask_like=False)
    X = torch.rand(5, 7, generator=torch.Generator().manual_seed(1)) < 0.5
    batched = qubo_energy(X, A, LAMBDA)
    for x, e in zip(X, batched):
        assert float(e) == pytest.approx(_qubo_energy(x, A, LAMBDA), abs=1e-12)


# -------------------------------------------------------------------------------------------------------- solver


def check_solver_against_brute_force(n: int, seed: int, mask_like: bool) -> None:
    A = random_qubo(seed, n, mask_like)
    solution = solve_qubo(A, config=QuboConfig(), seed=0)
    _, best = _qubo_bruteforce(A, LAMBDA)
    assert solution.proven_optimal
    assert solution.energy == pytest.approx(best, abs=1e-9)
    assert solution.energy == pytest.approx(_qubo_energy(solution.selected, A, LAMBDA), abs=1e-9)


@pytest.mark.parametrize("n,seed,mask_like", [(1, 0, True), (2, 1, False), (9, 2, True), (13, 3, False),
                                               (16, 4, True), (16, 5, False)])
def test_solver_reaches_the_brute_force_minimum(n, seed, mask_like):
    check_solver_against_brute_force(n, seed, mask_like)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 16), seed=st.integers(0, 2**31 - 1), mask_like=st.booleans())
def test_solver_reaches_the_brute_force_minimum_property(n, seed, mask_like):
    check_solver_against_brute_force(n, seed, mask_like)


@pytest.mark.parametrize("seed", range(4))
def test_exhaustive_meet_in_the_middle_matches_brute_force(seed):
    A = random_qubo(seed, 18, mask_like=False)  # general signs: little for persistency to fix
    b = np.full(18, LAMBDA / 18)
    x = _solve_exact(A.numpy(), b)
    _, best = _qubo_bruteforce(A, LAMBDA)
    assert _qubo_energy(torch.from_numpy(x), A, LAMBDA) == pytest.approx(best, abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mask_like", [True, False])
def test_annealing_path_reaches_the_brute_force_minimum(seed, mask_like):
    A = random_qubo(seed + 100, 14, mask_like)
    solution = solve_qubo(A, config=QuboConfig(exact_max_queries=0), seed=seed)
    _, best = _qubo_bruteforce(A, LAMBDA)
    assert not solution.proven_optimal
    assert solution.energy == pytest.approx(best, abs=1e-9)


def test_polished_states_are_local_minima():
    A = random_qubo(7, 30, mask_like=True)
    M, b = A.numpy(), np.full(30, LAMBDA / 30)
    starts = (np.random.default_rng(0).random((6, 30)) < 0.5).astype(np.float64)

    def energy(x: np.ndarray) -> float:
        return _qubo_energy(torch.from_numpy(x), A, LAMBDA)

    tol = _tolerance(M)
    for x in _polish(M, b, starts):
        for j in range(30):
            y = x.copy()
            y[j] = 1 - y[j]
            assert energy(y) >= energy(x) - tol
    for x in _polish_pairs(M, b, starts[:2]):
        for i in range(30):
            for j in range(i + 1, 30):
                y = x.copy()
                y[[i, j]] = 1 - y[[i, j]]
                assert energy(y) >= energy(x) - tol


def test_solver_is_deterministic_given_a_seed_and_not_worse_than_the_official_annealing():
    A = instance_weights(seed=2, num_queries=60)
    config = QuboConfig(exact_max_queries=0)
    a, b = solve_qubo(A, config=config, seed=3), solve_qubo(A, config=config, seed=3)
    assert torch.equal(a.selected, b.selected) and a.energy == b.energy
    # Official algorithm, shortened to keep the test fast (5 restarts x 4,000 flips).
    x, _ = _anneal_official(A.float().numpy(), seed=0, redo=5, num_iters=4000)
    assert a.energy <= float(qubo_energy(torch.from_numpy(x), A, LAMBDA)) + 1e-12


def test_solver_rejects_a_non_square_matrix():
    with rejects(ValueError, match="square"):  # unchecked, the ValueError names the problem
        merging.solve_qubo(torch.zeros(3, 4, dtype=torch.float64))
