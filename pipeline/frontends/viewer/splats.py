"""The fitted Gaussians as the browser draws them (viser >= 1.0 `scene.add_gaussian_splats`), as pure functions
(numpy only: no viser, no torch).

viser draws splats client-side in WebGL from four arrays: centres (N, 3), covariances (N, 3, 3), RGB colours (N, 3)
and opacities (N, 1). It has no spherical harmonics (viser 1.1.1's `add_gaussian_splats` takes one RGB per
Gaussian), so every Gaussian is drawn in its view-independent DC colour; scenes fitted with SH degree >= 1 look
flatter in the viewer than in `render` (the labels are view-independent anyway).

Modes and edits change only colours and opacities, never the geometry, so the browser keeps sorting and drawing the
same splats and the server sends one small colour / opacity buffer per change and renders nothing:
- `splat_colors`: the mode's colours (`state.gaussian_colors`: RGB, label colours, the RGB <-> label blend, the
  dimming of everything outside the selection); the depth mode has no per-splat colour (its picture is a server
  render, `app.py`), so the splats keep their RGB there;
- `splat_opacities`: the fitted opacity where a Gaussian is visible (`state.visible_mask`: isolate / hide / delete),
  0 where it is not.

Large scenes: a browser (software WebGL above all) slows down with the number of splats, so at most `max_splats`
are sent, the most visible ones (`visibility_scores`): the scene on disk, the picking renders and the saved edits
keep every Gaussian.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int

from panst3r_splat.pipeline.frontends.viewer.state import ColorTable, ViewState, gaussian_colors, visible_mask


@dataclass(frozen=True)
class SplatGeometry:
    """The part of the splats that never changes while the viewer runs (the chosen subset of the scene)."""

    index: Int[np.ndarray, "M"]
    """Which of the scene's N Gaussians are sent (M <= N, increasing)."""
    centers: Float[np.ndarray, "M 3"]
    covariances: Float[np.ndarray, "M 3 3"]
    """World-frame covariance R diag(s^2) R^T of each sent Gaussian."""
    opacities: Float[np.ndarray, "M"]
    """Fitted opacities in [0, 1]."""
    total: int
    """N: Gaussians in the scene."""


def quat_to_matrices(quats: Float[np.ndarray, "N 4"]) -> Float[np.ndarray, "N 3 3"]:
    """Rotation matrices of quaternions (w, x, y, z), normalised first (3DGS stores them unnormalised)."""
    q = np.asarray(quats, np.float64)
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def covariances(quats: Float[np.ndarray, "N 4"], scales: Float[np.ndarray, "N 3"]) -> Float[np.ndarray, "N 3 3"]:
    """World-frame covariances R diag(s^2) R^T (3DGS, Kerbl et al. 2023, eq. 6) of rotations and linear scales."""
    R = quat_to_matrices(quats)  # [N, 3, 3]
    s2 = np.asarray(scales, np.float64) ** 2  # [N, 3]
    return np.einsum("nij,nj,nkj->nik", R, s2, R)


def _covariances(quats: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Reference twin of `covariances`: one Gaussian at a time, M = R S, M M^T."""
    out = np.empty((len(quats), 3, 3))
    for n, (q, s) in enumerate(zip(np.asarray(quats, np.float64), np.asarray(scales, np.float64))):
        M = quat_to_matrices(q[None])[0] @ np.diag(s)
        out[n] = M @ M.T
    return out


def visibility_scores(opacities: Float[np.ndarray, "N"], scales: Float[np.ndarray, "N 3"]) -> Float[np.ndarray, "N"]:
    """How much a Gaussian shows on screen, up to a view-dependent factor: its opacity times the area of its
    largest cross-section (product of its two largest standard deviations)."""
    s = np.sort(np.asarray(scales, np.float64), axis=1)  # [N, 3], ascending
    return np.asarray(opacities, np.float64) * s[:, 1] * s[:, 2]


def choose_splats(scores: Float[np.ndarray, "N"], max_splats: int) -> Int[np.ndarray, "M"]:
    """Indices (increasing) of the `max_splats` highest scores; all of them when `max_splats` <= 0 or >= N.
    Ties at the cut are broken by index (lower first), so the choice is reproducible."""
    n = len(scores)
    if max_splats <= 0 or max_splats >= n:
        return np.arange(n)
    order = np.lexsort((np.arange(n), -np.asarray(scores, np.float64)))  # by score descending, then index
    return np.sort(order[:max_splats])


def splat_geometry(means: Float[np.ndarray, "N 3"], quats: Float[np.ndarray, "N 4"],
                   scales: Float[np.ndarray, "N 3"], opacities: Float[np.ndarray, "N"],
                   max_splats: int) -> SplatGeometry:
    """The splats to send: the `max_splats` most visible Gaussians (all when `max_splats` <= 0)."""
    index = choose_splats(visibility_scores(opacities, scales), max_splats)
    chosen_covariances = covariances(np.asarray(quats)[index], np.asarray(scales)[index])  # [M, 3, 3]
    return SplatGeometry(index=index, centers=np.asarray(means, np.float32)[index],
                         covariances=chosen_covariances.astype(np.float32),
                         opacities=np.asarray(opacities, np.float32)[index], total=len(means))


def splat_colors(rgb: Float[np.ndarray, "M 3"], segment_ids: Int[np.ndarray, "M"], state: ViewState,
                 table: ColorTable) -> Float[np.ndarray, "M 3"]:
    """RGB in [0, 1] of each sent splat under `state` (the depth mode keeps the RGB colours, see the module doc)."""
    return np.clip(gaussian_colors(rgb, segment_ids, state, table), 0.0, 1.0)


def splat_opacities(opacities: Float[np.ndarray, "M"], segment_ids: Int[np.ndarray, "M"],
                    state: ViewState) -> Float[np.ndarray, "M 1"]:
    """Opacity of each sent splat under `state`: the fitted one where visible, 0 where isolated away, hidden or
    deleted. (M, 1), the shape viser takes."""
    shown = visible_mask(segment_ids, state)
    return np.where(shown, np.asarray(opacities, np.float32), 0.0).astype(np.float32)[:, None]


def splats_note(geometry: SplatGeometry) -> str:
    """The GUI's line on what the browser draws."""
    sent = len(geometry.index)
    if sent == geometry.total:
        return f"Drawing all {geometry.total:,} Gaussians in the browser."
    return (f"Drawing the {sent:,} most visible of {geometry.total:,} Gaussians in the browser (--max-splats); "
            "picking, saving and exporting use all of them.")
