"""A dense, slow, RGB-only rasteriser with the agreed `rasterize` signature, for tests of code that calls it.

Used by `conftest.py` only when `panst3r_splat.splat.rasterize` cannot be imported, so the training and I/O tests
run on their own. Every pixel composites every Gaussian (sorted by depth), so keep scenes tiny.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rasterize(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, viewmats: Tensor,
              Ks: Tensor, width: int, height: int, *, render_mode: str = "RGB", backgrounds: Tensor | None = None,
              near_plane: float = 0.01, far_plane: float = 1e10, eps2d: float = 0.3, absgrad: bool = False,
              backend: str = "auto") -> tuple[Tensor, Tensor, dict]:
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    if render_mode != "RGB":
        raise NotImplementedError("the test stand-in renders colours only")
    covars, _ = _quat_scale_to_covar_preci(F.normalize(quats, dim=-1), scales, compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        means, covars, viewmats, Ks, width, height, eps2d, near_plane, far_plane)
    C, N = means2d.shape[:2]
    if colors.dim() == 2:
        colors = colors[None].expand(C, -1, -1)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=means.dtype), torch.arange(width, dtype=means.dtype),
                            indexing="ij")
    dx = xs[None, :, :, None] - means2d[:, None, None, :, 0]  # [C, H, W, N]
    dy = ys[None, :, :, None] - means2d[:, None, None, :, 1]
    a, b, c = (conics[:, None, None, :, i] for i in range(3))
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    alpha = torch.clamp_max(opacities[None, None, None, :] * torch.exp(-sigma), 0.999)
    keep = (sigma >= 0) & (radii[:, None, None, :] > 0) & (alpha >= 1.0 / 255.0)
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    order = torch.argsort(depths, dim=1)  # [C, N]
    alpha = torch.gather(alpha, 3, order[:, None, None, :].expand_as(alpha))
    cols = torch.gather(colors, 1, order[..., None].expand(-1, -1, colors.shape[-1]))  # [C, N, D]
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1.0 - alpha], dim=-1), dim=-1)
    weights = alpha * trans[..., :-1]  # [C, H, W, N]
    out = torch.einsum("chwn,cnd->chwd", weights, cols)
    acc = weights.sum(-1, keepdim=True)
    if backgrounds is not None:
        out = out + (1.0 - acc) * backgrounds[:, None, None, :]
    info = {"means2d": means2d, "radii": radii, "depths": depths, "conics": conics, "width": width,
            "height": height, "n_cameras": C, "gaussian_ids": None}
    return out, acc, info
