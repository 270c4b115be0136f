"""What the viewer shows, as plain data and pure functions (no viser, no torch): the testable core of `view`.

`ViewState` is an immutable value: render mode, the RGB <-> labels blend, the selection and the isolate / hide /
delete sets, the colour seed. Every user action is a method returning a new state (the viser adapter in `app.py`
only swaps states and redraws), so the whole interaction logic is tested without a browser.

From a state and the scene's per-Gaussian segment ids, the functions here derive what gets drawn:
- `visible_mask`: which Gaussians (or predicted points) are rendered;
- `color_table` / `gaussian_colors`: the colour each Gaussian is splatted with. The RGB <-> labels blend is applied
  per Gaussian *before* compositing: alpha compositing is linear in the colours, so the render of blended colours
  equals the blend of the RGB render and the label render (one render instead of two);
- `legend`: one row per class and per segment with its colour, Gaussian / pixel counts and score;
- `pick_along_ray`, `segment_at`, `segment_centers`: what a click hits and where the 3D text labels go.

Label colours follow `splat.palette` (the colours of the `render` command's PNGs) for colour seed 0; "regenerate
colours" moves to seed 1, 2, ...: a random but reproducible colour per class / segment. Where a mode has no label for
a Gaussian (void everywhere, stuff in instance mode) the Gaussian keeps its RGB colour, as `palette.overlay` lets
the image show through void, so labelled objects stand out on the scene.
"""

from __future__ import annotations

import colorsys
import dataclasses
import enum
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
from jaxtyping import Bool, Float, Int, UInt8

from panst3r_splat.splat.palette import instance_colors, panoptic_colors, semantic_colors
from panst3r_splat.splat.scene_io import SegmentInfo

DIM_WEIGHT = 0.3
"""While something is selected, every other Gaussian is drawn as DIM_WEIGHT * colour + (1 - DIM_WEIGHT) * DIM_GREY."""
DIM_GREY = 0.55
MIN_PICK_OPACITY = 0.05
"""Gaussians fainter than this are transparent to clicks."""


class RenderMode(enum.Enum):
    """What the render shows."""

    RGB = "rgb"
    SEMANTIC = "semantic"
    """Class colours (the class table's, `splat.palette.semantic_colors`)."""
    INSTANCE = "instance"
    """A colour per thing instance; stuff and void keep their RGB."""
    PANOPTIC = "panoptic"
    """Stuff in its class colour, things in class + instance colour (the legend colours)."""
    DEPTH = "depth"
    """Expected depth through a colour ramp."""

    @property
    def is_label(self) -> bool:
        return self in (RenderMode.SEMANTIC, RenderMode.INSTANCE, RenderMode.PANOPTIC)


@dataclass(frozen=True)
class ViewState:
    """Everything the user can change, as one immutable value; actions return new states."""

    mode: RenderMode = RenderMode.RGB
    blend: float = 1.0
    """Weight of the label colours in the label modes: 0 = RGB only, 1 = labels only."""
    selected: frozenset[int] = frozenset()
    """Selected segment ids (highlighted: everything else is dimmed)."""
    isolated: frozenset[int] = frozenset()
    """When non-empty, only these segments are shown."""
    hidden: frozenset[int] = frozenset()
    deleted: frozenset[int] = frozenset()
    """Removed from the scene: not shown, not selectable, left out when the edit is saved."""
    color_seed: int = 0
    """0: the project's palette; k > 0: the k-th regenerated palette."""
    show_labels: bool = True
    """3D text labels at the segment centres."""
    conf_threshold: float = 3.0
    """Predictions folders: points with a lower confidence are not shown (the official viewer's default)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.blend <= 1.0:
            raise ValueError(f"blend must be in [0, 1], got {self.blend}")
        if self.color_seed < 0:
            raise ValueError(f"color_seed must be >= 0, got {self.color_seed}")
        for name in ("selected", "isolated", "hidden", "deleted"):
            ids = frozenset(int(i) for i in getattr(self, name))
            if 0 in ids:
                raise ValueError(f"{name} cannot hold segment 0 (void is not a segment)")
            object.__setattr__(self, name, ids)

    def with_mode(self, mode: RenderMode) -> "ViewState":
        return dataclasses.replace(self, mode=RenderMode(mode))

    def with_blend(self, blend: float) -> "ViewState":
        return dataclasses.replace(self, blend=float(blend))

    def with_labels_shown(self, show: bool) -> "ViewState":
        return dataclasses.replace(self, show_labels=bool(show))

    def with_conf_threshold(self, threshold: float) -> "ViewState":
        return dataclasses.replace(self, conf_threshold=float(threshold))

    def select(self, ids: Iterable[int], *, add: bool = False) -> "ViewState":
        """Select segments (replacing the selection, or adding to it); void and deleted ids are ignored, so
        clicking on empty space clears the selection."""
        new = {int(i) for i in ids} - {0} - self.deleted
        return dataclasses.replace(self, selected=frozenset(self.selected | new if add else new))

    def clear_selection(self) -> "ViewState":
        return dataclasses.replace(self, selected=frozenset())

    def isolate(self) -> "ViewState":
        """Show only the selection (with nothing selected: show everything again)."""
        return dataclasses.replace(self, isolated=self.selected)

    def hide(self) -> "ViewState":
        """Hide the selection and clear it."""
        return dataclasses.replace(self, hidden=self.hidden | self.selected, selected=frozenset())

    def show_all(self) -> "ViewState":
        """Undo every hide and the isolation (deletions stay)."""
        return dataclasses.replace(self, hidden=frozenset(), isolated=frozenset())

    def delete(self) -> "ViewState":
        """Delete the selection from the scene (until `restore_deleted`) and clear it."""
        gone = self.deleted | self.selected
        return dataclasses.replace(self, deleted=gone, selected=frozenset(), hidden=self.hidden - gone,
                                   isolated=self.isolated - gone)

    def restore_deleted(self) -> "ViewState":
        return dataclasses.replace(self, deleted=frozenset())

    def regenerate_colors(self) -> "ViewState":
        return dataclasses.replace(self, color_seed=self.color_seed + 1)

    def is_visible(self, segment_id: int | np.integer) -> bool:
        """Whether a segment is drawn (void counts as visible unless something is isolated)."""
        segment_id = int(segment_id)
        if segment_id in self.deleted or segment_id in self.hidden:
            return False
        return not self.isolated or segment_id in self.isolated


def visible_mask(segment_ids: Int[np.ndarray, "N"], state: ViewState) -> Bool[np.ndarray, "N"]:
    """Which Gaussians (points) are drawn under `state`."""
    seg = np.asarray(segment_ids)
    keep = ~np.isin(seg, np.fromiter(state.deleted | state.hidden, dtype=np.int64))
    if state.isolated:
        keep &= np.isin(seg, np.fromiter(state.isolated, dtype=np.int64))
    return keep


def kept_mask(segment_ids: Int[np.ndarray, "N"], state: ViewState) -> Bool[np.ndarray, "N"]:
    """Which Gaussians an edited scene keeps when saved (all but the deleted segments)."""
    return ~np.isin(np.asarray(segment_ids), np.fromiter(state.deleted, dtype=np.int64))


# --------------------------------------------------------------------------------------------------- colours


@dataclass(frozen=True)
class ColorTable:
    """Colour of every legend segment in one render mode, sorted by segment id."""

    ids: Int[np.ndarray, "S"]
    colors: UInt8[np.ndarray, "S 3"]
    labelled: Bool[np.ndarray, "S"]
    """False where the mode has no label for the segment (stuff in instance mode): it keeps its RGB colour."""

    def color_of(self, segment_id: int) -> tuple[int, int, int]:
        pos = int(np.searchsorted(self.ids, segment_id))
        if pos >= len(self.ids) or self.ids[pos] != segment_id:
            return (0, 0, 0)
        return tuple(int(c) for c in self.colors[pos])  # type: ignore[return-value]


def _random_color(seed: int, kind: int, key: int) -> UInt8[np.ndarray, "3"]:
    """A reproducible saturated colour for (palette seed, colour kind, id)."""
    h, s, v = np.random.default_rng([seed, kind, key]).random(3)
    rgb = colorsys.hsv_to_rgb(float(h), 0.55 + 0.45 * float(s), 0.65 + 0.35 * float(v))
    return np.round(np.array(rgb) * 255.0).astype(np.uint8)


def color_table(segments: Sequence[SegmentInfo], mode: RenderMode, seed: int = 0) -> ColorTable:
    """Per-segment colours of a mode; RGB and depth modes use the panoptic (legend) colours for the legend."""
    table = sorted(segments, key=lambda s: s.id)
    ids = np.array([s.id for s in table], dtype=np.int64)
    class_ids = np.array([s.class_id for s in table], dtype=np.int64)
    things = np.array([s.isthing for s in table], dtype=bool)
    instance_ids = np.where(things, ids, 0)
    if seed == 0:
        semantic = semantic_colors(class_ids).reshape(-1, 3)
        instance = instance_colors(instance_ids).reshape(-1, 3)
        panoptic = panoptic_colors(class_ids, instance_ids).reshape(-1, 3)
    else:
        semantic = np.array([_random_color(seed, 0, int(c)) for c in class_ids], dtype=np.uint8).reshape(-1, 3)
        instance = np.array([_random_color(seed, 1, int(i)) if i else np.zeros(3, np.uint8) for i in instance_ids],
                            dtype=np.uint8).reshape(-1, 3)
        panoptic = np.where(things[:, None], np.round(0.5 * semantic + 0.5 * instance), semantic).astype(np.uint8)
    if mode == RenderMode.SEMANTIC:
        colors, labelled = semantic, np.ones(len(ids), bool)
    elif mode == RenderMode.INSTANCE:
        colors, labelled = instance, things
    else:
        colors, labelled = panoptic, np.ones(len(ids), bool)
    return ColorTable(ids=ids, colors=colors, labelled=labelled)


def lookup_colors(segment_ids: Int[np.ndarray, "N"], table: ColorTable
                  ) -> tuple[UInt8[np.ndarray, "N 3"], Bool[np.ndarray, "N"]]:
    """Colour of each Gaussian's segment and whether it has a label in the table's mode (void / unknown: black,
    unlabelled)."""
    seg = np.asarray(segment_ids).astype(np.int64)
    if len(table.ids) == 0:
        return np.zeros(seg.shape + (3,), np.uint8), np.zeros(seg.shape, bool)
    pos = np.clip(np.searchsorted(table.ids, seg), 0, len(table.ids) - 1)
    known = table.ids[pos] == seg
    colors = np.where(known[:, None], table.colors[pos], 0).astype(np.uint8)
    return colors, known & table.labelled[pos]


def _lookup_colors(segment_ids: np.ndarray, table: ColorTable) -> tuple[np.ndarray, np.ndarray]:
    """Reference twin of `lookup_colors`: a dictionary, one Gaussian at a time."""
    by_id = {int(i): (c, bool(lab)) for i, c, lab in zip(table.ids, table.colors, table.labelled)}
    colors = np.zeros((len(segment_ids), 3), np.uint8)
    labelled = np.zeros(len(segment_ids), bool)
    for n, s in enumerate(np.asarray(segment_ids).tolist()):
        if s in by_id:
            colors[n], labelled[n] = by_id[s]
    return colors, labelled


def gaussian_colors(rgb: Float[np.ndarray, "N 3"], segment_ids: Int[np.ndarray, "N"], state: ViewState,
                    table: ColorTable) -> Float[np.ndarray, "N 3"]:
    """The colour each Gaussian is splatted with under `state` (RGB in [0, 1]).

    Label modes mix `(1 - blend) * rgb + blend * label` where the mode has a label; a selection dims everything
    else towards grey. The depth mode returns `rgb` (its colours come from the depth render).
    """
    out = np.asarray(rgb, dtype=np.float32)
    seg = np.asarray(segment_ids)
    if state.mode.is_label:
        label, labelled = lookup_colors(seg, table)
        mixed = (1.0 - state.blend) * out + state.blend * (label.astype(np.float32) / 255.0)
        out = np.where(labelled[:, None], mixed, out)
    if state.selected:
        chosen = np.isin(seg, np.fromiter(state.selected, dtype=np.int64))
        out = np.where(chosen[:, None], out, DIM_WEIGHT * out + (1.0 - DIM_WEIGHT) * DIM_GREY)
    return out.astype(np.float32)


_DEPTH_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float64)
"""Five stops of viridis: near is dark purple, far is yellow."""


def depth_colors(depth: Float[np.ndarray, "*shape"], alpha: Float[np.ndarray, "*shape"], *,
                 background: tuple[int, int, int] = (255, 255, 255), min_alpha: float = 0.5
                 ) -> UInt8[np.ndarray, "*shape 3"]:
    """Depth through a colour ramp stretched between the 2nd and 98th percentile of the covered pixels (an image's
    `[H, W]` or the viewer's points' `[N]`)."""
    covered = np.asarray(alpha) >= min_alpha
    out = np.empty(depth.shape + (3,), np.uint8)
    out[:] = background
    if not covered.any():
        return out
    lo, hi = np.percentile(depth[covered], [2.0, 98.0])
    t = np.clip((depth - lo) / max(hi - lo, 1e-9), 0.0, 1.0) * (len(_DEPTH_RAMP) - 1)
    i = np.minimum(np.floor(t).astype(np.int64), len(_DEPTH_RAMP) - 2)
    f = (t - i)[..., None]
    ramp = (1.0 - f) * _DEPTH_RAMP[i] + f * _DEPTH_RAMP[i + 1]
    out[covered] = np.round(ramp[covered]).astype(np.uint8)
    return out


# ---------------------------------------------------------------------------------------------------- legend


@dataclass(frozen=True)
class LegendRow:
    """One segment of the legend."""

    segment_id: int
    class_id: int
    class_name: str
    isthing: bool
    color: tuple[int, int, int]
    """Its colour in the current mode (the panoptic colour in the RGB and depth modes)."""
    gaussians: int
    """Gaussians (or predicted points) carrying the segment."""
    pixels: int
    """Pixels it covers in the latest segment map (current view of a scene; all input views of predictions)."""
    score: float
    visible: bool
    selected: bool


@dataclass(frozen=True)
class ClassRow:
    """One class of the legend: the sum over its segments."""

    class_id: int
    class_name: str
    color: tuple[int, int, int]
    """The class colour (semantic palette of the current colour seed)."""
    segment_ids: tuple[int, ...]
    gaussians: int
    pixels: int


def segment_counts(segment_ids: Int[np.ndarray, "*S"]) -> dict[int, int]:
    """How often each non-void id occurs (Gaussians of a scene, pixels of a segment map)."""
    ids, counts = np.unique(np.asarray(segment_ids), return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, counts) if i != 0}


def legend(segments: Sequence[SegmentInfo], segment_ids: Int[np.ndarray, "N"], state: ViewState,
           pixels: Mapping[int, int]) -> tuple[tuple[ClassRow, ...], tuple[LegendRow, ...]]:
    """Class rows (by class id) and segment rows (by class, then segment id) of the segments not deleted."""
    shown = [s for s in segments if s.id not in state.deleted]
    table = color_table(shown, state.mode if state.mode.is_label else RenderMode.PANOPTIC, state.color_seed)
    semantic = color_table(shown, RenderMode.SEMANTIC, state.color_seed)
    gaussians = segment_counts(segment_ids)
    rows = tuple(
        LegendRow(segment_id=s.id, class_id=s.class_id, class_name=s.class_name, isthing=s.isthing,
                  color=table.color_of(s.id), gaussians=gaussians.get(s.id, 0), pixels=int(pixels.get(s.id, 0)),
                  score=s.score, visible=state.is_visible(s.id), selected=s.id in state.selected)
        for s in sorted(shown, key=lambda s: (s.class_id, s.id)))
    classes = []
    for class_id in sorted({r.class_id for r in rows}):
        members = [r for r in rows if r.class_id == class_id]
        classes.append(ClassRow(class_id=class_id, class_name=members[0].class_name,
                                color=semantic.color_of(members[0].segment_id),
                                segment_ids=tuple(r.segment_id for r in members),
                                gaussians=sum(r.gaussians for r in members), pixels=sum(r.pixels for r in members)))
    return tuple(classes), rows


def legend_markdown(classes: Sequence[ClassRow], rows: Sequence[LegendRow], *, pixels_label: str = "px") -> str:
    """The legend as a markdown table; viser draws a colour chip next to each `#rrggbb` code."""
    lines = [f"| colour | segment | Gaussians | {pixels_label} | score |", "|---|---|---:|---:|---:|"]
    for c in classes:
        lines.append(f"| `{_hex(c.color)}` | **{c.class_name}** | {c.gaussians} | {c.pixels} | |")
        for r in (r for r in rows if r.class_id == c.class_id):
            name = f"{r.class_name} {r.segment_id}" + ("" if r.visible else " (hidden)")
            name = f"**> {name}**" if r.selected else name
            lines.append(f"| `{_hex(r.color)}` | {name} | {r.gaussians} | {r.pixels} | {r.score:.2f} |")
    return "\n".join(lines)


def _hex(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


# ------------------------------------------------------------------------------------------- picking, labels


def pick_along_ray(centers: Float[np.ndarray, "N 3"], radii: Float[np.ndarray, "N"], origin: Float[np.ndarray, "3"],
                   direction: Float[np.ndarray, "3"], candidates: Bool[np.ndarray, "N"] | None = None) -> int | None:
    """Index of the first Gaussian (point) the ray passes within `radii` of, in front of the origin, or None.

    "First" orders the hits by the distance along the ray to their centres.
    """
    d = np.asarray(direction, np.float64)
    d = d / np.linalg.norm(d)
    rel = np.asarray(centers, np.float64) - np.asarray(origin, np.float64)
    t = rel @ d
    miss = np.linalg.norm(rel - t[:, None] * d, axis=1)
    hit = (t > 0) & (miss <= np.asarray(radii))
    if candidates is not None:
        hit &= np.asarray(candidates, bool)
    if not hit.any():
        return None
    index = np.flatnonzero(hit)
    return int(index[np.argmin(t[index])])


def _pick_along_ray(centers: np.ndarray, radii: np.ndarray, origin: np.ndarray, direction: np.ndarray,
                    candidates: np.ndarray | None = None) -> int | None:
    """Reference twin of `pick_along_ray`: one Gaussian at a time."""
    d = np.asarray(direction, np.float64) / np.linalg.norm(direction)
    best, best_t = None, np.inf
    for i, c in enumerate(np.asarray(centers, np.float64)):
        if candidates is not None and not candidates[i]:
            continue
        rel = c - np.asarray(origin, np.float64)
        t = float(rel @ d)
        if t > 0 and np.linalg.norm(rel - t * d) <= radii[i] and t < best_t:
            best, best_t = i, t
    return best


def segment_at(segment_map: Int[np.ndarray, "H W"], screen_xy: tuple[float, float]) -> int:
    """Segment id under a click given in normalised image coordinates ((0, 0) top-left, (1, 1) bottom-right)."""
    height, width = segment_map.shape
    col = min(max(int(screen_xy[0] * width), 0), width - 1)
    row = min(max(int(screen_xy[1] * height), 0), height - 1)
    return int(segment_map[row, col])


def segment_centers(centers: Float[np.ndarray, "N 3"], segment_ids: Int[np.ndarray, "N"],
                    mask: Bool[np.ndarray, "N"] | None = None) -> dict[int, Float[np.ndarray, "3"]]:
    """Where each non-void segment's 3D text label goes: the per-axis median of its Gaussians' centres (robust to
    the few stray Gaussians a lifted segment has far away)."""
    seg = np.asarray(segment_ids)
    pts = np.asarray(centers, np.float64)
    if mask is not None:
        seg, pts = seg[mask], pts[mask]
    order = np.argsort(seg, kind="stable")
    seg, pts = seg[order], pts[order]
    ids, starts = np.unique(seg, return_index=True)
    ends = np.append(starts[1:], len(seg))
    return {int(i): np.median(pts[a:b], axis=0) for i, a, b in zip(ids, starts, ends) if i != 0}
