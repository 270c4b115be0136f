"""Learning-free lifting of multi-view segment maps onto Gaussians (LUDVIG), and rendering the lifted labels.

For Gaussian i, LUDVIG (Marrie et al., ICCV 2025; `docs/method.md` section 5) averages the 2D labels of every
(view, pixel) it contributes to, weighted by its alpha-blending weight `w_i(p) = alpha_i(p) T_i(p)`:

    g_i[s] = sum_{views, pixels p with label s} w_i(p) / sum_{views, counted pixels p} w_i(p)

and the Gaussian's segment is `argmax_s g_i[s]`, its confidence `max_s g_i[s]`. Because PanSt3R's panoptic ids are
already consistent across views, the one-hot labels can be lifted directly; no matching or clustering.

No custom kernel is needed (`docs/peers_eval_data.md` section 1): render zero-valued colours with one channel per
segment and backpropagate the one-hot label image through the render: `d(sum render * onehot) / d colors[i, s]`
is exactly `sum_{p labelled s} w_i(p)`. The same code runs on gsplat (CUDA) and on the torch rasteriser (CPU).
Memory stays bounded by rendering chunks of views, each view with its own channels for only the segments it shows
(per-camera colours), a bounded number of channels at a time; per-Gaussian sums are kept sparse ((Gaussian,
segment) pairs), so thousands of segments and hundreds of views fit.

Void (segment id 0) is decided by `include_void`: by default it is a segment of its own, so a Gaussian seen
mostly through unlabelled pixels stays void and renders as void, and what the 2D masks left unlabelled stays
unlabelled in new views. With `include_void=False` void pixels are ignored: every Gaussian that any labelled pixel
sees gets a segment (holes in the masks are filled from other views), and `total_weight` counts labelled pixels only.

Pixels marked `NO_LABEL` (-1) never vote, whatever `include_void` says: they are pixels the segment maps do not
cover at all (outside the model's crop of a photo fitted at its own resolution), not pixels the masks left void.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from panst3r_splat.splat.rasterize import Backend, rasterize, to_gsplat_intrinsics
from panst3r_splat.splat.rasterize_torch import _rasterize_dense

logger = logging.getLogger(__name__)

NO_LABEL = -1
"""Segment-map value of a pixel no segment map covers (outside the model's crop): it never votes."""
PIXEL_CHANNEL_BUDGET = 1 << 24
"""Largest views x pixels x channels (and views x Gaussians x channels) block at once (64 MiB in float32)."""


@dataclass(frozen=True)
class LiftedSegments:
    """Per-Gaussian result of lifting segment maps."""

    segment_ids: Int[Tensor, "N"]
    """Winning segment id (int64, the ids of the input maps); 0 = void, also for Gaussians no counted pixel sees."""
    confidence: Float[Tensor, "N"]
    """Share of the Gaussian's total weight that went to the winning segment, in [0, 1]; 0 where never seen."""
    total_weight: Float[Tensor, "N"]
    """Sum of the Gaussian's alpha-blending weights over all counted pixels of all views."""


@dataclass(frozen=True)
class LiftOptions:
    """How `lift_segments` counts and chunks."""

    include_void: bool = True
    """Void pixels (id 0) vote for segment 0; False ignores them (see the module docstring)."""
    channels_per_chunk: int = 64
    """Segments per view rendered in one call (gsplat renders channels in groups of 32 internally)."""
    views_per_chunk: int | None = None
    """Views rendered in one call; None picks as many as `PIXEL_CHANNEL_BUDGET` allows for both the label
    images (views x pixels x channels) and the per-camera colours (views x Gaussians x channels)."""
    near_plane: float = 0.01
    """Rasterisation near plane (camera units); use the same values as the renders the labels are meant for."""
    far_plane: float = 1e10
    """Rasterisation far plane."""
    eps2d: float = 0.3
    """2D blur added to every projected covariance (pixels^2), as in training."""
    backend: Backend = "auto"
    """"auto" (gsplat on CUDA, numba on CPU), "gsplat", "numba" or "torch" (the plain-torch reference)."""
    progress: bool = False
    """Show a progress bar over view chunks."""


def lift_segments(
    means: Float[Tensor, "N 3"],
    quats: Float[Tensor, "N 4"],
    scales: Float[Tensor, "N 3"],
    opacities: Float[Tensor, "N"],
    viewmats: Float[Tensor, "V 4 4"],
    Ks: Float[Tensor, "V 3 3"],
    segment_maps: Int[Tensor, "V H W"],
    options: LiftOptions = LiftOptions(),
) -> LiftedSegments:
    """Lift per-view segment maps onto the Gaussians by alpha-blending-weighted voting (LUDVIG).

    Args:
        means, quats, scales, opacities: the Gaussians as `rasterize` takes them (linear scales, opacities in [0, 1]).
        viewmats: `T_cam_world` of the views; Ks: their intrinsics (integer pixel centres, CLI.md).
        segment_maps: segment id per pixel (0 = void, `NO_LABEL` = not covered: no vote), consistent across views.
        options: void handling, chunk sizes, backend, progress bar.
    """
    V, H, W = segment_maps.shape
    N = means.shape[0]
    if viewmats.shape[0] != V or Ks.shape[0] != V:
        raise ValueError(f"{V} segment maps need {V} viewmats and Ks; got {viewmats.shape[0]} and {Ks.shape[0]}")
    if segment_maps.dtype.is_floating_point or bool((segment_maps < NO_LABEL).any()):
        raise ValueError(f"segment_maps must hold integer segment ids >= 0 (0 = void) or {NO_LABEL} (not covered)")
    device = means.device
    labels, compact = torch.unique(segment_maps.to(device), return_inverse=True)  # [S], [V, H, W]
    S = len(labels)
    geometry = [t.detach() for t in (means, quats, scales, opacities)]
    counted = labels != NO_LABEL
    if not options.include_void:
        counted &= labels != 0

    acc = _PairSums(n_labels=S)
    view_chunk = options.views_per_chunk or max(
        1, PIXEL_CHANNEL_BUDGET // (max(H * W, N) * options.channels_per_chunk)
    )
    for v0 in tqdm(range(0, V, view_chunk), desc="lifting labels", disable=not options.progress):
        views = slice(v0, min(v0 + view_chunk, V))
        table = _present_labels(compact[views], counted)  # [V', L] compact ids per view, -1 padded
        for c0 in range(0, table.shape[1], options.channels_per_chunk):
            channels = table[:, c0 : c0 + options.channels_per_chunk]  # [V', D]
            weights = _weights_by_gradient(geometry, viewmats[views], Ks[views], compact[views], channels, S, W, H,
                                           options)  # [V', N, D]
            v, g, d = torch.nonzero(weights > 0, as_tuple=True)
            acc.add(g, channels[v, d], weights[v, g, d])
    lifted = acc.select(labels, N)
    logger.debug("lifted %d segments from %d views onto %d Gaussians (%d seen by no counted pixel)", S, V, N,
                 int((lifted.total_weight == 0).sum()))
    return lifted


def _present_labels(compact: Tensor, counted: Tensor) -> Tensor:
    """[V', L]: the counted labels (compact ids, ascending) present in each view, padded with -1.

    Each view renders only its own labels (per-camera colour channels), so the channels per render are the
    labels of the busiest view, not all labels of the chunk of views.
    """
    n_views, n_labels = compact.shape[0], counted.shape[0]
    present = torch.zeros(n_views, n_labels, dtype=torch.bool, device=compact.device)
    present.scatter_(1, compact.reshape(n_views, -1), True)
    present &= counted[None]
    table = torch.full((n_views, int(present.sum(1).max())), -1, dtype=torch.long, device=compact.device)
    v, s = torch.nonzero(present, as_tuple=True)
    table[v, (present.cumsum(1) - 1)[v, s]] = s
    return table


def _weights_by_gradient(
    geometry: list[Tensor],
    viewmats: Tensor,
    Ks: Tensor,
    compact: Tensor,
    channels: Tensor,
    n_labels: int,
    width: int,
    height: int,
    options: LiftOptions,
) -> Tensor:
    """[V', N, D]: per view v, the sum over its pixels labelled `channels[v, d]` of each Gaussian's weight.

    Renders D zero-valued channels per camera and pulls the one-hot label images back through the render: the
    gradient of `sum(render * onehot)` with respect to `colors[v, i, d]` is exactly that sum of weights.
    """
    means, quats, scales, opacities = geometry
    n_views, D = channels.shape
    colors = torch.zeros(n_views, means.shape[0], D, device=means.device, dtype=means.dtype, requires_grad=True)
    lookup = torch.full((n_views, n_labels), -1, dtype=torch.long, device=means.device)
    v, d = torch.nonzero(channels >= 0, as_tuple=True)
    lookup[v, channels[v, d]] = d
    channel = lookup.gather(1, compact.reshape(n_views, -1)).reshape(compact.shape)  # [V', H, W], -1: not here
    onehot = F.one_hot(channel.clamp(min=0), D).to(means.dtype) * (channel >= 0)[..., None]
    with torch.enable_grad():
        render, _, _ = rasterize(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            near_plane=options.near_plane, far_plane=options.far_plane, eps2d=options.eps2d,
            backend=options.backend,
        )  # fmt: skip
        (weights,) = torch.autograd.grad(render, colors, grad_outputs=onehot)
    return weights


class _PairSums:
    """Sparse per-(Gaussian, label) weight sums: appended as triplets, merged when they pile up."""

    def __init__(self, n_labels: int, merge_every: int = 1 << 22) -> None:
        self.n_labels = n_labels
        self.merge_every = merge_every
        self.keys: list[Tensor] = []
        self.weights: list[Tensor] = []
        self.pending = 0

    def add(self, gaussians: Tensor, labels: Tensor, weights: Tensor) -> None:
        self.keys.append(gaussians * self.n_labels + labels)
        self.weights.append(weights)
        self.pending += len(weights)
        if self.pending > self.merge_every:
            self._merge()

    def _merge(self) -> None:
        """Sum the weights of equal keys (also within one `add`: several views add the same pairs)."""
        if not self.keys:
            return
        keys, inverse = torch.unique(torch.cat(self.keys), return_inverse=True)
        weights = torch.cat(self.weights)
        sums = torch.zeros(len(keys), dtype=weights.dtype, device=weights.device).index_add_(0, inverse, weights)
        self.keys, self.weights, self.pending = [keys], [sums], len(keys)

    def select(self, labels: Tensor, n_gaussians: int) -> LiftedSegments:
        """Argmax label per Gaussian (ties: the smaller segment id), its share, and the total weight."""
        device = labels.device
        if not self.keys:
            zeros = torch.zeros(n_gaussians, device=device)
            return LiftedSegments(torch.zeros(n_gaussians, dtype=torch.long, device=device), zeros, zeros.clone())
        self._merge()
        keys, weights = self.keys[0], self.weights[0]
        g, lab = keys // self.n_labels, keys % self.n_labels
        total = torch.zeros(n_gaussians, dtype=weights.dtype, device=device).index_add_(0, g, weights)
        best = torch.zeros(n_gaussians, dtype=weights.dtype, device=device).scatter_reduce_(0, g, weights, "amax")
        winner = weights >= best[g]
        best_lab = torch.full((n_gaussians,), self.n_labels, dtype=torch.long, device=device)
        best_lab.scatter_reduce_(0, g[winner], lab[winner], "amin")
        seen = total > 0
        segment_ids = torch.where(seen, labels[best_lab.clamp(max=len(labels) - 1)], torch.zeros_like(best_lab))
        confidence = torch.where(seen, best / total.clamp(min=1e-30), torch.zeros_like(total))
        return LiftedSegments(segment_ids=segment_ids, confidence=confidence, total_weight=total)


def render_segments(
    means: Float[Tensor, "N 3"],
    quats: Float[Tensor, "N 4"],
    scales: Float[Tensor, "N 3"],
    opacities: Float[Tensor, "N"],
    segment_ids: Int[Tensor, "N"],
    viewmats: Float[Tensor, "C 4 4"],
    Ks: Float[Tensor, "C 3 3"],
    width: int,
    height: int,
    *,
    min_alpha: float = 0.5,
    channels_per_chunk: int = 64,
    backend: Backend = "auto",
) -> Int[Tensor, "C H W"]:
    """Segment id map of each camera: per pixel, the segment with the largest rendered weight (LUDVIG step 4).

    Pixels whose accumulated alpha is below `min_alpha` (mostly background) are void (0). Ties go to the smaller
    segment id. Segments are rendered `channels_per_chunk` at a time, so any number fits.
    """
    ids, inverse = torch.unique(segment_ids, return_inverse=True)
    C = viewmats.shape[0]
    geometry = [t.detach() for t in (means, quats, scales, opacities)]
    best_w = torch.full((C, height, width), -1.0, device=means.device)
    best = torch.zeros((C, height, width), dtype=torch.long, device=means.device)
    alphas = None
    with torch.no_grad():
        for c0 in range(0, len(ids), channels_per_chunk):
            D = min(channels_per_chunk, len(ids) - c0)
            channel = inverse - c0
            colors = F.one_hot(channel.clamp(0, D - 1), D).to(means.dtype) * ((channel >= 0) & (channel < D))[:, None]
            render, alpha, _ = rasterize(*geometry, colors, viewmats, Ks, width, height, backend=backend)
            i = render.argmax(dim=-1)  # first maximum: the smaller id wins ties
            w = render.gather(-1, i[..., None])[..., 0]
            better = w > best_w
            best_w = torch.where(better, w, best_w)
            best = torch.where(better, ids[c0 + i], best)
            alphas = alpha[..., 0] if alphas is None else alphas
    if alphas is None:
        return best
    return torch.where(alphas >= min_alpha, best, torch.zeros_like(best))


def _lift_per_pixel(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    segment_maps: Tensor,
    include_void: bool = True,
) -> LiftedSegments:
    """Reference for `lift_segments`: each pixel's weights of every Gaussian, added to its label, pixel by pixel.

    The weights come from the dense reference rasteriser with one identity channel per Gaussian (channel i of the
    render at p is w_i(p)), not from gradients, so the two routes check each other. Slow; tests only.
    """
    V, H, W = segment_maps.shape
    N = means.shape[0]
    labels, compact = torch.unique(segment_maps, return_inverse=True)
    eye = torch.eye(N, dtype=means.dtype)
    with torch.no_grad():
        weights, _, _ = _rasterize_dense(means, quats, scales, opacities, eye, viewmats, to_gsplat_intrinsics(Ks), W, H)
    sums = torch.zeros(N, len(labels), dtype=means.dtype)
    for v in range(V):
        for y in range(H):
            for x in range(W):
                s = int(compact[v, y, x])
                if int(labels[s]) != NO_LABEL and (include_void or int(labels[s]) != 0):
                    sums[:, s] += weights[v, y, x]
    total = sums.sum(1)
    best, best_lab = sums.max(dim=1)
    seen = total > 0
    return LiftedSegments(
        segment_ids=torch.where(seen, labels[best_lab], torch.zeros_like(labels[best_lab])),
        confidence=torch.where(seen, best / total.clamp(min=1e-30), torch.zeros_like(total)),
        total_weight=total,
    )

