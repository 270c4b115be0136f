"""One rasterisation call for every device: gsplat's CUDA kernels on GPU, compiled Numba kernels on CPU.

Three backends: "gsplat" (CUDA), "numba" (`rasterize_numba.py`, the CPU default: projection, binning and compositing
compiled, forward and backward) and "torch" (`rasterize_torch.py`, plain torch on any device: the reference twin the
tests compare the others with). All return the same tensors and the same `info` keys, so training code, `DefaultStrategy` densification
and label lifting never ask which one ran. Conventions at this boundary (CLI.md): `viewmats` are `T_cam_world`
(world -> camera, OpenCV axes: x right, y down, z forward); `Ks` put integer pixel coordinates at pixel centres
(image centre ((W - 1) / 2, (H - 1) / 2)). gsplat puts pixel centres at +0.5, so `Ks` are shifted by +0.5 in cx, cy
once here and both backends then see gsplat's numbers: `info["means2d"]` is in gsplat pixel coordinates on both.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from panst3r_splat.splat.rasterize_torch import RenderMode, rasterize_torch

Backend = Literal["auto", "gsplat", "numba", "torch"]


def to_gsplat_intrinsics(Ks: Float[Tensor, "C 3 3"]) -> Float[Tensor, "C 3 3"]:
    """Intrinsics with integer pixel centres (CLI.md) -> gsplat's, whose pixel (x, y) has its centre at +0.5."""
    shift = torch.zeros_like(Ks)
    shift[..., 0, 2] = 0.5
    shift[..., 1, 2] = 0.5
    return Ks + shift


def resolve_backend(backend: Backend, device: torch.device) -> Literal["gsplat", "numba", "torch"]:
    """'auto' -> gsplat on CUDA, numba on CPU, torch elsewhere; gsplat off CUDA or numba off CPU is an error."""
    if backend == "auto":
        return {"cuda": "gsplat", "cpu": "numba"}.get(device.type, "torch")
    if backend not in ("gsplat", "numba", "torch"):
        raise ValueError(f"backend must be 'auto', 'gsplat', 'numba' or 'torch'; got {backend!r}")
    if backend == "gsplat" and device.type != "cuda":
        raise ValueError(f"backend='gsplat' needs CUDA tensors (got {device}); use backend='numba', 'torch' or 'auto'")
    if backend == "numba" and device.type != "cpu":
        raise ValueError(f"backend='numba' needs CPU tensors (got {device}); use backend='gsplat', 'torch' or 'auto'")
    return backend


def _check_inputs(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                  viewmats: Tensor, Ks: Tensor, backgrounds: Tensor | None, width: int, height: int) -> None:
    N, C = means.shape[0], viewmats.shape[0]
    expected = {"means": (means, (N, 3)), "quats": (quats, (N, 4)), "scales": (scales, (N, 3)),
                "opacities": (opacities, (N,)), "viewmats": (viewmats, (C, 4, 4)), "Ks": (Ks, (C, 3, 3))}
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} (N={N} Gaussians, C={C} cameras); got {tuple(tensor.shape)}")
    if not ((colors.dim() == 2 and colors.shape[0] == N) or (colors.dim() == 3 and colors.shape[:2] == (C, N))):
        raise ValueError(f"colors must be [N, D] or [C, N, D] with N={N}, C={C}; got {tuple(colors.shape)}")
    if backgrounds is not None and tuple(backgrounds.shape) != (C, colors.shape[-1]):
        raise ValueError(f"backgrounds must be [C, D] = {(C, colors.shape[-1])}; got {tuple(backgrounds.shape)}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive; got width={width}, height={height}")


def rasterize(
    means: Float[Tensor, "N 3"],
    quats: Float[Tensor, "N 4"],
    scales: Float[Tensor, "N 3"],
    opacities: Float[Tensor, "N"],
    colors: Float[Tensor, "N D"] | Float[Tensor, "C N D"],
    viewmats: Float[Tensor, "C 4 4"],
    Ks: Float[Tensor, "C 3 3"],
    width: int,
    height: int,
    *,
    render_mode: RenderMode = "RGB",
    backgrounds: Float[Tensor, "C D"] | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    absgrad: bool = False,
    backend: Backend = "auto",
) -> tuple[Float[Tensor, "C H W E"], Float[Tensor, "C H W 1"], dict]:
    """Render N Gaussians into C cameras: colours (any D channels, plus depth in the depth modes), alpha, info.

    Args:
        means, quats, scales, opacities: world-space centres, wxyz rotations (normalised here), linear scales,
            opacities in [0, 1] (post-sigmoid).
        colors: per-Gaussian values to composite ([N, D], or [C, N, D] per camera): RGB, labels, features.
        viewmats: `T_cam_world`, world -> camera, OpenCV axes.
        Ks: intrinsics with integer pixel centres (CLI.md).
        render_mode: as gsplat: "RGB" composites the D channels of `colors`, "D" accumulated depth, "ED" expected
            depth (divided by alpha), "RGB+D" / "RGB+ED" both (depth last).
        backgrounds: [C, D] colour behind the Gaussians.
        absgrad: also fill `info["means2d"].absgrad` (for `DefaultStrategy(absgrad=True)`).
        backend: "auto" (gsplat on CUDA, numba on CPU, torch elsewhere), "gsplat", "numba" or "torch".

    Returns:
        `colors` [C, H, W, E] (E = D, 1 or D + 1 by mode), `alphas` [C, H, W, 1], and `info`, the dict
        `DefaultStrategy` reads: `means2d` [C, N, 2] (call `retain_grad()` before backward), `radii` [C, N],
        `width`, `height`, `n_cameras`, `gaussian_ids` / `camera_ids` (None: non-packed layout), `depths`,
        `conics`, `opacities`, and `backend` ("gsplat", "numba" or "torch").
    """
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, backgrounds, width, height)
    chosen = resolve_backend(backend, means.device)
    Ks_gs = to_gsplat_intrinsics(Ks)
    options = dict(render_mode=render_mode, backgrounds=backgrounds, near_plane=near_plane, far_plane=far_plane,
                   eps2d=eps2d, absgrad=absgrad)
    if chosen == "gsplat":
        from gsplat.rendering import rasterization  # imported late: it JIT-compiles CUDA kernels on first use

        backend_fn = functools.partial(rasterization, sh_degree=None, packed=False)
    elif chosen == "numba":
        from panst3r_splat.splat.rasterize_numba import rasterize_numba  # imported late: it loads Numba

        backend_fn = rasterize_numba
    else:
        backend_fn = rasterize_torch
    render, alphas, info = backend_fn(means, quats, scales, opacities, colors, viewmats, Ks_gs, width, height,
                                      **options)
    info["backend"] = chosen
    return render, alphas, info
