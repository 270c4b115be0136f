"""Numba kernels of the fit loss's SSIM on CPU: the separable Gaussian blur (valid region) and its transpose, and the
SSIM formula with its gradient, forward and backward (`train.ssim_map` wraps them in an autograd function).

On a fit step at the demo's size (192x144, RGB) torch's depthwise convolutions and the formula's dozen element-wise
ops took about 9 ms forward + backward, a third of the step once the rasteriser was compiled; these loops run over
contiguous rows, so LLVM vectorises them. Arrays are C-contiguous float32 or float64: `src` [C, H, W], `g` [K] (the
1D window), `tmp` [C, H, W - K + 1], `out` [C, H - K + 1, W - K + 1].
"""

from __future__ import annotations

import numpy as np
from numba import njit

C1, C2 = 0.01**2, 0.03**2
"""SSIM's stabilising constants for data range 1 (Wang et al. 2004: (0.01 L)^2, (0.03 L)^2)."""


@njit(nogil=True, cache=True, error_model="numpy")
def blur_valid(src, g, tmp, out):  # pragma: no cover - compiled
    """out = src blurred by the 2D window g g^T over the valid region: a row pass into `tmp`, then a column pass."""
    C, H, W = src.shape
    K = g.shape[0]
    w, h = W - K + 1, H - K + 1
    tmp[:] = 0
    out[:] = 0
    for c in range(C):
        for y in range(H):
            for b in range(K):
                gb = g[b]
                for j in range(w):
                    tmp[c, y, j] += gb * src[c, y, j + b]
        for i in range(h):
            for a in range(K):
                ga = g[a]
                for j in range(w):
                    out[c, i, j] += ga * tmp[c, i + a, j]


@njit(nogil=True, cache=True, error_model="numpy")
def blur_valid_transpose(grad_out, g, tmp, grad_src):  # pragma: no cover - compiled
    """The adjoint of `blur_valid`: grad_src [C, H, W] from grad_out [C, h, w] (`tmp` [C, H, w] scratch)."""
    C, h, w = grad_out.shape
    K = g.shape[0]
    tmp[:] = 0
    grad_src[:] = 0
    for c in range(C):
        for i in range(h):
            for a in range(K):
                ga = g[a]
                for j in range(w):
                    tmp[c, i + a, j] += ga * grad_out[c, i, j]
        for y in range(tmp.shape[1]):
            for b in range(K):
                gb = g[b]
                for j in range(w):
                    grad_src[c, y, j + b] += gb * tmp[c, y, j]


@njit(nogil=True, cache=True, error_model="numpy")
def ssim_formula(blurs, out):  # pragma: no cover - compiled
    """SSIM per pixel from `blurs` [5, n] = (mu_x, mu_y, E[x^2], E[y^2], E[xy]) into `out` [n], as `train.ssim_map`:
    the variances clamped at 0."""
    c1, c2 = out.dtype.type(C1), out.dtype.type(C2)
    zero, two = out.dtype.type(0.0), out.dtype.type(2.0)
    for p in range(out.shape[0]):
        mx, my, exx, eyy, exy = blurs[0, p], blurs[1, p], blurs[2, p], blurs[3, p], blurs[4, p]
        sxx = max(exx - mx * mx, zero)
        syy = max(eyy - my * my, zero)
        sxy = exy - mx * my
        out[p] = ((two * mx * my + c1) * (two * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


@njit(nogil=True, cache=True, error_model="numpy")
def ssim_formula_backward(blurs, grad, out):  # pragma: no cover - compiled
    """Gradients [5, n] of sum(grad * SSIM) with respect to the five blurs (`ssim_formula`'s inputs).

    With A = 2 mx my + c1, B = 2 sxy + c2, P = mx^2 + my^2 + c1, Q = sxx + syy + c2 and S = A B / (P Q): dS/dA = B / PQ,
    dS/dB = A / PQ, dS/dP = -S / P, dS/dQ = -S / Q; a clamped variance passes no gradient (as torch's clamp).
    """
    c1, c2 = grad.dtype.type(C1), grad.dtype.type(C2)
    zero, two = grad.dtype.type(0.0), grad.dtype.type(2.0)
    for p in range(grad.shape[0]):
        mx, my, exx, eyy, exy = blurs[0, p], blurs[1, p], blurs[2, p], blurs[3, p], blurs[4, p]
        vx, vy = exx - mx * mx, eyy - my * my
        kx, ky = vx >= zero, vy >= zero
        a = two * mx * my + c1
        b = two * (exy - mx * my) + c2
        pp = mx * mx + my * my + c1
        q = max(vx, zero) + max(vy, zero) + c2
        s = (a * b) / (pp * q)
        d_a, d_b = grad[p] * b / (pp * q), grad[p] * a / (pp * q)
        d_p, d_q = -grad[p] * s / pp, -grad[p] * s / q
        d_qx = d_q if kx else zero
        d_qy = d_q if ky else zero
        out[0, p] = two * my * d_a - two * my * d_b + two * mx * d_p - two * mx * d_qx
        out[1, p] = two * mx * d_a - two * mx * d_b + two * my * d_p - two * my * d_qy
        out[2, p] = d_qx
        out[3, p] = d_qy
        out[4, p] = two * d_b
