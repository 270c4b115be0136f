"""The viewer's state logic without a browser: select / isolate / hide / delete / blend / colours / legend / picking,
the browser-camera conversion and the edits written to disk."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from panst3r_splat.core.transforms import rotation_to_quaternion
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.pipeline.frontends.viewer import edits
from panst3r_splat.pipeline.frontends.viewer.render import (
    browser_camera, image_size, render_segment_map, render_view, scaled_input_camera,
)
from panst3r_splat.pipeline.frontends.viewer.sample import sample_scene
from panst3r_splat.pipeline.frontends.viewer.sources import SceneSource, open_source
from panst3r_splat.pipeline.frontends.viewer.state import (
    DIM_GREY, DIM_WEIGHT, RenderMode, ViewState, _lookup_colors, _pick_along_ray, color_table, depth_colors,
    gaussian_colors, kept_mask, legend, legend_markdown, lookup_colors, pick_along_ray, segment_at, segment_centers,
    segment_counts, visible_mask,
)
from panst3r_splat.splat.palette import semantic_colors
from panst3r_splat.splat.ply import read_ply
from panst3r_splat.splat.scene_io import load_scene, make_segment, save_scene

# Two chairs (things, class 5), a wall (stuff, class 1), Gaussian ids 0 = void.
SEGMENTS = (make_segment(3, 4, 5, "chair", True, 0.9), make_segment(7, 4, 5, "chair", True, 0.6),
            make_segment(1, 0, 1, "wall", False, 0.99))
IDS = np.array([0, 3, 3, 7, 1, 1, 1, 0])


# ----------------------------------------------------------------------------------------------- state actions


def test_select_replaces_or_adds_and_ignores_void_and_deleted() -> None:
    s = ViewState().select([3])
    assert s.selected == {3}
    assert s.select([7]).selected == {7}
    assert s.select([7], add=True).selected == {3, 7}
    assert s.select([0]).selected == frozenset(), "clicking on void clears the selection"
    assert s.delete().select([3, 7]).selected == {7}, "a deleted segment cannot be selected"


def test_isolate_hide_delete_and_their_undos() -> None:
    s = ViewState().select([3]).isolate()
    assert s.isolated == {3}
    assert visible_mask(IDS, s).tolist() == [False, True, True, False, False, False, False, False]
    s = s.show_all()
    assert visible_mask(IDS, s).all()
    s = s.select([1]).hide()
    assert s.hidden == {1} and s.selected == frozenset()
    assert visible_mask(IDS, s).tolist() == [True, True, True, True, False, False, False, True]
    s = s.select([3]).delete()
    assert s.deleted == {3} and not s.is_visible(3)
    assert kept_mask(IDS, s).tolist() == [True, False, False, True, True, True, True, True], "hiding is not deleting"
    s = s.show_all()
    assert visible_mask(IDS, s).tolist() == [True, False, False, True, True, True, True, True], "show all keeps deletions"
    assert visible_mask(IDS, s.restore_deleted()).all()


def test_deleting_an_isolated_segment_leaves_no_stale_isolation() -> None:
    s = ViewState().select([3, 7]).isolate().select([3]).delete()
    assert s.isolated == {7} and s.deleted == {3}
    assert ViewState().select([3]).isolate().select([3]).delete().isolated == frozenset()


def test_isolating_nothing_shows_everything_again() -> None:
    s = ViewState().select([3]).isolate().clear_selection().isolate()
    assert s.isolated == frozenset() and visible_mask(IDS, s).all()


def test_state_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="blend"):
        ViewState().with_blend(1.5)
    with pytest.raises(ValueError, match="void"):
        ViewState(hidden=frozenset({0}))


@pytest.mark.parametrize("seed", range(40))
def test_visibility_laws_hold_after_any_action_sequence(seed: int) -> None:
    """Deleted is never visible nor selected; void is visible exactly when nothing is isolated; `visible_mask`
    agrees with `is_visible` per segment (random action sequences)."""
    do = {"sel3": lambda s: s.select([3]), "sel7": lambda s: s.select([7]), "sel1": lambda s: s.select([1]),
          "add7": lambda s: s.select([7], add=True), "isolate": ViewState.isolate, "hide": ViewState.hide,
          "delete": ViewState.delete, "show": ViewState.show_all, "restore": ViewState.restore_deleted,
          "clear": ViewState.clear_selection}
    rng = np.random.default_rng(seed)
    s = ViewState()
    for a in rng.choice(sorted(do), size=rng.integers(0, 13)):
        s = do[a](s)
    mask = visible_mask(IDS, s)
    assert not (s.deleted & (s.selected | s.hidden | s.isolated))
    assert mask[IDS == 0].all() == (not s.isolated)
    for i, seg in enumerate(IDS):
        if seg:
            assert mask[i] == s.is_visible(seg)


# --------------------------------------------------------------------------------------------------- colours


def test_color_tables_follow_the_palette_at_seed_zero() -> None:
    pan = color_table(SEGMENTS, RenderMode.PANOPTIC)
    assert [pan.color_of(s.id) for s in SEGMENTS] == [s.color for s in SEGMENTS], "legend colours = panoptic"
    sem = color_table(SEGMENTS, RenderMode.SEMANTIC)
    assert sem.color_of(3) == sem.color_of(7) == tuple(semantic_colors(np.array([5]))[0])
    inst = color_table(SEGMENTS, RenderMode.INSTANCE)
    assert inst.color_of(3) != inst.color_of(7)
    assert inst.labelled.tolist() == [False, True, True], "stuff has no instance label (ids sorted: 1, 3, 7)"
    assert pan.color_of(99) == (0, 0, 0)


def test_regenerated_colours_change_reproducibly_and_keep_class_sharing() -> None:
    a = ViewState().regenerate_colors()
    assert a.color_seed == 1
    for mode in (RenderMode.SEMANTIC, RenderMode.INSTANCE, RenderMode.PANOPTIC):
        t0, t1 = color_table(SEGMENTS, mode, 0), color_table(SEGMENTS, mode, 1)
        assert not np.array_equal(t0.colors, t1.colors), mode
        assert np.array_equal(t1.colors, color_table(SEGMENTS, mode, 1).colors), "same seed, same colours"
    sem = color_table(SEGMENTS, RenderMode.SEMANTIC, 2)
    assert sem.color_of(3) == sem.color_of(7), "one class, one colour"


def test_lookup_colors_matches_its_twin() -> None:
    rng = np.random.default_rng(0)
    ids = rng.choice([0, 1, 3, 7, 42], size=500)
    for mode in (RenderMode.SEMANTIC, RenderMode.INSTANCE, RenderMode.PANOPTIC):
        table = color_table(SEGMENTS, mode, 3)
        fast, slow = lookup_colors(ids, table), _lookup_colors(ids, table)
        assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])


def test_blend_mixes_rgb_and_labels_where_labelled() -> None:
    rgb = np.full((len(IDS), 3), 0.2, np.float32)
    table = color_table(SEGMENTS, RenderMode.PANOPTIC)
    label = np.array([table.color_of(int(i)) for i in IDS], np.float32) / 255.0
    for blend in (0.0, 0.25, 1.0):
        out = gaussian_colors(rgb, IDS, ViewState(mode=RenderMode.PANOPTIC, blend=blend), table)
        labelled = IDS != 0
        np.testing.assert_allclose(out[labelled], (1 - blend) * rgb[labelled] + blend * label[labelled], atol=1e-6)
        np.testing.assert_allclose(out[~labelled], rgb[~labelled], atol=0), "void keeps its RGB"
    np.testing.assert_array_equal(gaussian_colors(rgb, IDS, ViewState(), table), rgb), "RGB mode ignores labels"


def test_instance_mode_leaves_stuff_in_rgb() -> None:
    rgb = np.full((len(IDS), 3), 0.2, np.float32)
    out = gaussian_colors(rgb, IDS, ViewState(mode=RenderMode.INSTANCE), color_table(SEGMENTS, RenderMode.INSTANCE))
    np.testing.assert_array_equal(out[IDS == 1], rgb[IDS == 1])
    assert not np.allclose(out[IDS == 3], 0.2)


def test_selection_dims_everything_else() -> None:
    rgb = np.random.default_rng(1).random((len(IDS), 3)).astype(np.float32)
    out = gaussian_colors(rgb, IDS, ViewState().select([7]), color_table(SEGMENTS, RenderMode.RGB))
    chosen = IDS == 7
    np.testing.assert_array_equal(out[chosen], rgb[chosen])
    np.testing.assert_allclose(out[~chosen], DIM_WEIGHT * rgb[~chosen] + (1 - DIM_WEIGHT) * DIM_GREY, atol=1e-6)


def test_depth_colors_ramp_from_near_to_far_and_leave_background() -> None:
    depth = np.tile(np.linspace(1.0, 5.0, 50), (4, 1))
    alpha = np.ones_like(depth)
    alpha[:, :5] = 0.0
    img = depth_colors(depth, alpha, background=(1, 2, 3))
    assert (img[:, :5] == (1, 2, 3)).all()
    assert img[0, 5].tolist() == [68, 1, 84] and img[0, -1].tolist() == [253, 231, 37], "viridis ends"
    assert (np.diff(img[0, 5:, 1].astype(int)) >= 0).all(), "green rises monotonically along viridis"


# ---------------------------------------------------------------------------------------------------- legend


def test_legend_rows_counts_and_class_sums() -> None:
    state = ViewState().select([7]).hide()
    classes, rows = legend(SEGMENTS, IDS, state, {3: 10, 1: 30})
    assert [r.segment_id for r in rows] == [1, 3, 7], "by class id, then segment id"
    by_id = {r.segment_id: r for r in rows}
    assert (by_id[3].gaussians, by_id[7].gaussians, by_id[1].gaussians) == (2, 1, 3)
    assert (by_id[3].pixels, by_id[7].pixels) == (10, 0)
    assert by_id[7].visible is False and by_id[3].visible is True
    assert by_id[3].score == pytest.approx(0.9) and by_id[3].color == SEGMENTS[0].color
    chair = next(c for c in classes if c.class_name == "chair")
    assert chair.segment_ids == (3, 7) and chair.gaussians == 3 and chair.pixels == 10
    _, rows = legend(SEGMENTS, IDS, state.select([3]).delete(), {})
    assert [r.segment_id for r in rows] == [1, 7], "deleted segments leave the legend"


def test_legend_colours_follow_the_mode_and_the_selection_flag() -> None:
    _, rows = legend(SEGMENTS, IDS, ViewState(mode=RenderMode.SEMANTIC).select([3]), {})
    chairs = [r for r in rows if r.class_id == 5]
    assert chairs[0].color == chairs[1].color and chairs[0].selected and not chairs[1].selected
    classes, rows = legend(SEGMENTS, IDS, ViewState(), {})
    text = legend_markdown(classes, rows)
    assert "`#%02x%02x%02x`" % SEGMENTS[0].color in text and "chair 3" in text and text.count("\n") == 1 + 2 + 3


def test_segment_counts_skip_void() -> None:
    assert segment_counts(np.array([[0, 3], [3, 1]])) == {3: 2, 1: 1}


# ---------------------------------------------------------------------------------------------------- picking


def test_pick_along_ray_hand_case() -> None:
    centers = np.array([[0.0, 0.0, 5.0], [0.0, 0.05, 2.0], [0.0, 0.0, -1.0], [1.0, 0.0, 1.0]])
    radii = np.array([0.1, 0.1, 0.1, 0.1])
    assert pick_along_ray(centers, radii, np.zeros(3), np.array([0.0, 0.0, 2.0])) == 1, "nearest along the ray"
    assert pick_along_ray(centers, radii, np.zeros(3), np.array([0.0, 0.0, 1.0]),
                          np.array([True, False, True, True])) == 0, "not a candidate: passes through"
    assert pick_along_ray(centers, radii, np.zeros(3), np.array([0.0, 1.0, 0.0])) is None
    assert pick_along_ray(centers, radii, np.zeros(3), np.array([0.0, 0.0, -1.0])) == 2, "behind is only behind"


def test_pick_along_ray_matches_its_twin() -> None:
    rng = np.random.default_rng(2)
    centers, radii = rng.normal(size=(300, 3)) * 2.0, rng.uniform(0.05, 0.3, 300)
    candidates = rng.random(300) > 0.3
    for _ in range(30):
        origin, direction = rng.normal(size=3) * 4.0, rng.normal(size=3)
        assert (pick_along_ray(centers, radii, origin, direction, candidates)
                == _pick_along_ray(centers, radii, origin, direction, candidates))


def test_segment_at_maps_normalised_coordinates_to_pixels() -> None:
    seg = np.arange(12).reshape(3, 4)
    assert segment_at(seg, (0.0, 0.0)) == 0 and segment_at(seg, (0.99, 0.99)) == 11
    assert segment_at(seg, (0.3, 0.5)) == 5 and segment_at(seg, (1.0, 1.0)) == 11


def test_segment_centers_are_robust_medians() -> None:
    pts = np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [100, 0, 0], [5, 5, 5], [9, 9, 9]])
    ids = np.array([3, 3, 3, 3, 7, 0])
    centers = segment_centers(pts, ids)
    assert set(centers) == {3, 7}, "void gets no label"
    np.testing.assert_allclose(centers[3], [1.5, 0, 0])
    assert set(segment_centers(pts, ids, ids != 7)) == {3}


# ------------------------------------------------------------------------------------------- browser cameras


def test_browser_camera_intrinsics() -> None:
    cam = browser_camera(np.array([1.0, 0, 0, 0]), np.array([1.0, 2.0, 3.0]), math.radians(90), 4 / 3, 400)
    assert (cam.width, cam.height) == (400, 300)
    assert cam.K[1, 1] == pytest.approx(150.0), "tan(45 deg) = 1: half the height"
    assert (cam.K[0, 2], cam.K[1, 2]) == (199.5, 149.5), "pixel centres at integers"
    np.testing.assert_array_equal(cam.T_world_cam[:3, 3], [1, 2, 3])
    assert image_size(0.5, 100) == (50, 100)


def test_browser_camera_renders_what_the_input_camera_sees(tmp_path) -> None:
    """Flying into an input camera: the browser camera built from its pose and fov renders the same image as the
    input camera itself (same aspect, so the same intrinsics up to the image size)."""
    scene = _tiny_scene(tmp_path / "scene")
    source = open_source(tmp_path / "scene", torch.device("cpu"))
    cams = source.cameras
    T = cams.T_world_cam[0].double().numpy()
    fov = 2 * math.atan(0.5 * cams.height / float(cams.K[0, 1, 1]))
    browser = browser_camera(rotation_to_quaternion(T[:3, :3]), T[:3, 3], fov, cams.width / cams.height, cams.width)
    direct = scaled_input_camera(cams, 0, cams.width)
    np.testing.assert_allclose(browser.K, direct.K, atol=1e-4)
    np.testing.assert_allclose(browser.T_world_cam, direct.T_world_cam, atol=1e-6)
    a = render_view(source.gaussians, source.rgb, browser)
    seg = render_segment_map(source.gaussians, browser)
    assert a.rgb.shape == (cams.height, cams.width, 3) and seg.shape == (cams.height, cams.width)
    assert set(np.unique(seg)) <= {0} | {s.id for s in scene.segments} and len(np.unique(seg)) > 1


# ------------------------------------------------------------------------------------------------------ edits


def _tiny_scene(folder):
    scene = sample_scene()
    save_scene(folder, scene)
    return scene


def test_save_edited_scene_drops_deleted_segments(tmp_path) -> None:
    _tiny_scene(tmp_path / "scene")
    source = open_source(tmp_path / "scene", torch.device("cpu"))
    assert isinstance(source, SceneSource)
    state = ViewState().select([5]).delete()
    out = edits.save_edited_scene(source, state, tmp_path / "edited")
    edited = load_scene(out)
    assert 5 not in edited.gaussians.segment_ids.tolist() and {s.id for s in edited.segments} == {1, 9}
    assert len(edited.gaussians) == int((source.segment_ids != 5).sum())
    assert edited.info["deleted_segments"] == [5]
    with pytest.raises(UserError, match="being viewed"):
        edits.save_edited_scene(source, state, tmp_path / "scene")


def test_export_selection_writes_the_selected_gaussians(tmp_path) -> None:
    _tiny_scene(tmp_path / "scene")
    source = open_source(tmp_path / "scene", torch.device("cpu"))
    with pytest.raises(UserError, match="nothing is selected"):
        edits.export_selection(source, ViewState(), tmp_path / "exports")
    path = edits.export_selection(source, ViewState().select([9]), tmp_path / "exports")
    ply = read_ply(path)
    assert path.name == "selection_9.ply"
    assert len(ply.scene) == int((source.segment_ids == 9).sum())
    assert set(ply.instance_ids.tolist()) == {9} and set(ply.semantic_ids.tolist()) == {6}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_render_matches_cpu(tmp_path) -> None:
    """The viewer's frames on CUDA (gsplat) match the CPU rasteriser's, segment maps included."""
    _tiny_scene(tmp_path / "scene")
    cpu = open_source(tmp_path / "scene", torch.device("cpu"))
    gpu = open_source(tmp_path / "scene", torch.device("cuda"))
    camera = scaled_input_camera(cpu.cameras, 1, 160)
    a, b = render_view(cpu.gaussians, cpu.rgb, camera), render_view(gpu.gaussians, gpu.rgb, camera)
    assert np.abs(a.rgb.astype(int) - b.rgb.astype(int)).mean() < 1.0  # uint8 levels; tile order differs slightly
    covered = (a.alpha > 0.5) & (b.alpha > 0.5)
    np.testing.assert_allclose(a.depth[covered], b.depth[covered], rtol=1e-3, atol=1e-3)
    same = render_segment_map(cpu.gaussians, camera) == render_segment_map(gpu.gaussians, camera)
    assert same.mean() > 0.99
