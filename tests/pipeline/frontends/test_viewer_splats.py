"""The splats the browser draws (`pipeline/frontends/viewer/splats.py`): geometry, the choice under `--max-splats`, and the
colours and opacities of every mode and edit, without a browser."""

from __future__ import annotations

import numpy as np
import pytest

from panst3r_splat.pipeline.frontends.viewer.splats import (
    _covariances, choose_splats, covariances, quat_to_matrices, splat_colors, splat_geometry, splat_opacities,
    splats_note, visibility_scores,
)
from panst3r_splat.pipeline.frontends.viewer.state import DIM_GREY, DIM_WEIGHT, RenderMode, ViewState, color_table
from panst3r_splat.splat.scene_io import make_segment

# Two chairs (things, class 5), a wall (stuff, class 1); Gaussian 0 and 7 are void.
SEGMENTS = (make_segment(3, 4, 5, "chair", True, 0.9), make_segment(7, 4, 5, "chair", True, 0.6),
            make_segment(1, 0, 1, "wall", False, 0.99))
IDS = np.array([0, 3, 3, 7, 1, 1, 1, 0])
RGB = np.linspace(0.1, 0.9, 24, dtype=np.float32).reshape(8, 3)
OPACITIES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2], np.float32)


def _random_quats_scales(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)) * rng.uniform(0.5, 3.0, (n, 1)), rng.uniform(0.01, 2.0, (n, 3))


# ------------------------------------------------------------------------------------------------- geometry


def test_covariances_match_their_twin_and_are_symmetric_positive_definite() -> None:
    quats, scales = _random_quats_scales(50)
    cov = covariances(quats, scales)
    np.testing.assert_allclose(cov, _covariances(quats, scales), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cov, np.swapaxes(cov, 1, 2), atol=1e-12)
    eig = np.linalg.eigvalsh(cov)  # ascending: the squared scales, in some order
    np.testing.assert_allclose(eig, np.sort(scales ** 2, axis=1), rtol=1e-9)


def test_covariance_hand_cases() -> None:
    # Identity rotation: diag(s^2). 90 degrees about z (w = x = cos 45, z = sin 45): x and y swap.
    s = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(covariances(np.array([[2.0, 0, 0, 0]]), s)[0], np.diag([1.0, 4.0, 9.0]), atol=1e-12)
    c = np.sqrt(0.5)
    np.testing.assert_allclose(covariances(np.array([[c, 0, 0, c]]), s)[0], np.diag([4.0, 1.0, 9.0]), atol=1e-12)


def test_rotation_matrices_are_orthonormal() -> None:
    quats, _ = _random_quats_scales(20, seed=1)
    R = quat_to_matrices(quats)
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)


def test_visibility_score_is_opacity_times_largest_cross_section() -> None:
    scores = visibility_scores(np.array([0.5, 1.0]), np.array([[3.0, 1.0, 2.0], [0.1, 0.1, 0.1]]))
    np.testing.assert_allclose(scores, [0.5 * 3.0 * 2.0, 1.0 * 0.01])


def test_choose_splats_keeps_the_highest_scores_in_index_order() -> None:
    scores = np.array([0.3, 0.9, 0.1, 0.9, 0.5])
    assert choose_splats(scores, 2).tolist() == [1, 3]
    assert choose_splats(scores, 3).tolist() == [1, 3, 4]
    assert choose_splats(np.array([1.0, 1.0, 1.0]), 2).tolist() == [0, 1], "ties go to the lower index"
    assert choose_splats(scores, 0).tolist() == [0, 1, 2, 3, 4], "0 sends all"
    assert choose_splats(scores, 99).tolist() == [0, 1, 2, 3, 4]


def test_splat_geometry_takes_the_chosen_rows_and_notes_the_cut() -> None:
    quats, scales = _random_quats_scales(6, seed=2)
    means = np.arange(18, dtype=np.float64).reshape(6, 3)
    opacities = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7])
    geometry = splat_geometry(means, quats, scales, opacities, max_splats=3)
    expected = choose_splats(visibility_scores(opacities, scales), 3)
    assert geometry.index.tolist() == expected.tolist() and geometry.total == 6
    np.testing.assert_allclose(geometry.centers, means[expected])
    np.testing.assert_allclose(geometry.covariances, covariances(quats[expected], scales[expected]), rtol=1e-3)
    np.testing.assert_allclose(geometry.opacities, opacities[expected], rtol=1e-6)
    assert "3 most visible of 6" in splats_note(geometry)
    assert splats_note(splat_geometry(means, quats, scales, opacities, max_splats=0)) == \
        "Drawing all 6 Gaussians in the browser."


# ------------------------------------------------------------------------------------ colours per mode / edit


def _label(mode: RenderMode) -> np.ndarray:
    table = color_table(SEGMENTS, mode)
    return np.array([table.color_of(int(i)) for i in IDS], np.float32) / 255.0


@pytest.mark.parametrize("mode", [RenderMode.RGB, RenderMode.DEPTH])
def test_rgb_and_depth_modes_send_the_rgb_colours(mode: RenderMode) -> None:
    state = ViewState(mode=mode)
    np.testing.assert_allclose(splat_colors(RGB, IDS, state, color_table(SEGMENTS, mode)), RGB)


@pytest.mark.parametrize("mode", [RenderMode.SEMANTIC, RenderMode.PANOPTIC])
def test_label_modes_paint_labelled_splats_and_leave_void_in_rgb(mode: RenderMode) -> None:
    colors = splat_colors(RGB, IDS, ViewState(mode=mode), color_table(SEGMENTS, mode))
    labelled = IDS != 0
    np.testing.assert_allclose(colors[labelled], _label(mode)[labelled], atol=1e-6)
    np.testing.assert_allclose(colors[~labelled], RGB[~labelled])


def test_semantic_mode_gives_both_chairs_one_colour_and_panoptic_two() -> None:
    semantic = splat_colors(RGB, IDS, ViewState(mode=RenderMode.SEMANTIC), color_table(SEGMENTS, RenderMode.SEMANTIC))
    panoptic = splat_colors(RGB, IDS, ViewState(mode=RenderMode.PANOPTIC), color_table(SEGMENTS, RenderMode.PANOPTIC))
    np.testing.assert_allclose(semantic[1], semantic[3])
    assert np.abs(panoptic[1] - panoptic[3]).max() > 0.05


def test_instance_mode_leaves_stuff_in_rgb() -> None:
    colors = splat_colors(RGB, IDS, ViewState(mode=RenderMode.INSTANCE), color_table(SEGMENTS, RenderMode.INSTANCE))
    wall = IDS == 1
    np.testing.assert_allclose(colors[wall], RGB[wall])
    np.testing.assert_allclose(colors[1:4], _label(RenderMode.INSTANCE)[1:4], atol=1e-6)


def test_blend_mixes_rgb_and_labels_linearly() -> None:
    table = color_table(SEGMENTS, RenderMode.PANOPTIC)
    state = ViewState(mode=RenderMode.PANOPTIC, blend=0.25)
    colors = splat_colors(RGB, IDS, state, table)
    labelled = IDS != 0
    np.testing.assert_allclose(colors[labelled], 0.75 * RGB[labelled] + 0.25 * _label(RenderMode.PANOPTIC)[labelled],
                               atol=1e-6)
    np.testing.assert_allclose(splat_colors(RGB, IDS, state.with_blend(0.0), table), RGB, atol=1e-6)


def test_regenerated_colours_change_the_label_colours_only() -> None:
    state = ViewState(mode=RenderMode.PANOPTIC).regenerate_colors()
    colors = splat_colors(RGB, IDS, state, color_table(SEGMENTS, state.mode, state.color_seed))
    assert np.abs(colors[1:7] - _label(RenderMode.PANOPTIC)[1:7]).max() > 0.05
    np.testing.assert_allclose(colors[[0, 7]], RGB[[0, 7]])


def test_selection_dims_every_other_splat_and_keeps_its_own_colour() -> None:
    state = ViewState(mode=RenderMode.RGB).select([3])
    colors = splat_colors(RGB, IDS, state, color_table(SEGMENTS, state.mode))
    chosen = IDS == 3
    np.testing.assert_allclose(colors[chosen], RGB[chosen])
    np.testing.assert_allclose(colors[~chosen], DIM_WEIGHT * RGB[~chosen] + (1 - DIM_WEIGHT) * DIM_GREY, atol=1e-6)


def test_colours_stay_in_the_unit_range() -> None:
    table = color_table(SEGMENTS, RenderMode.PANOPTIC)
    colors = splat_colors(RGB * 3.0 - 1.0, IDS, ViewState(mode=RenderMode.PANOPTIC, blend=0.5).select([1]), table)
    assert colors.min() >= 0.0 and colors.max() <= 1.0


def test_opacities_follow_isolate_hide_delete_and_their_undos() -> None:
    full = OPACITIES[:, None]
    s = ViewState()
    np.testing.assert_allclose(splat_opacities(OPACITIES, IDS, s), full)
    assert splat_opacities(OPACITIES, IDS, s).shape == (8, 1)
    isolated = s.select([3]).isolate()
    np.testing.assert_allclose(splat_opacities(OPACITIES, IDS, isolated)[:, 0], np.where(IDS == 3, OPACITIES, 0))
    hidden = s.select([1]).hide()
    np.testing.assert_allclose(splat_opacities(OPACITIES, IDS, hidden)[:, 0], np.where(IDS == 1, 0, OPACITIES))
    deleted = hidden.select([7]).delete()
    shown = (IDS != 1) & (IDS != 7)
    np.testing.assert_allclose(splat_opacities(OPACITIES, IDS, deleted)[:, 0], np.where(shown, OPACITIES, 0))
    after_show_all = deleted.show_all()
    np.testing.assert_allclose(splat_opacities(OPACITIES, IDS, after_show_all)[:, 0],
                               np.where(IDS == 7, 0, OPACITIES), err_msg="show all keeps deletions")
    np.testing.assert_allclose(splat_opacities(OPACITIES, IDS, after_show_all.restore_deleted()), full)


def test_selection_and_modes_leave_opacities_alone() -> None:
    for state in (ViewState(mode=RenderMode.PANOPTIC), ViewState().select([3, 1]), ViewState(blend=0.3)):
        np.testing.assert_allclose(splat_opacities(OPACITIES, IDS, state), OPACITIES[:, None])
