"""The torch rasteriser against its dense twin, gsplat's conventions, DefaultStrategy, and (on CUDA) gsplat itself."""

from __future__ import annotations

import math

import pytest
import torch

from _typecheck import rejects
from panst3r_splat.splat.rasterize import rasterize, resolve_backend, to_gsplat_intrinsics
from panst3r_splat.splat.rasterize_torch import _rasterize_dense, rasterize_torch

W, H = 37, 29  # not multiples of 16: border tiles are partly outside the image


def _scene(n: int = 40, dtype: torch.dtype = torch.float64, seed: int = 0, cams: int = 2) -> dict:
    """Random Gaussians in front of `cams` cameras, including large opaque ones (pixels reach T < 1e-4)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * 0.5 + torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.15 + 0.02
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.9 + 0.05
    scales[: n // 4] *= 3.0
    opacities[: n // 4] = 0.99
    viewmats = torch.eye(4, dtype=dtype)[None].repeat(cams, 1, 1)
    for c in range(1, cams):
        a = 0.1 * c
        viewmats[c, :3, :3] = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
        viewmats[c, 0, 3] = 0.3 * c
    K = torch.tensor([[30.0, 0, (W - 1) / 2], [0, 32.0, (H - 1) / 2], [0, 0, 1]], dtype=dtype)
    return {
        "means": means,
        "quats": torch.randn(n, 4, generator=g, dtype=dtype),
        "scales": scales,
        "opacities": opacities,
        "colors": torch.rand(n, 3, generator=g, dtype=dtype),
        "viewmats": viewmats,
        "Ks": K[None].repeat(cams, 1, 1),
        "backgrounds": torch.rand(cams, 3, generator=g, dtype=dtype),
    }


PARAMS = ("means", "quats", "scales", "opacities", "colors", "backgrounds")


def _render_and_grads(fn, scene: dict, mode: str, use_bg: bool, seed: int = 1):
    """Render with `fn`, backpropagate fixed random weights of colours and alpha; return outputs and gradients."""
    p = {k: scene[k].clone().requires_grad_(k in PARAMS) for k in scene}
    bg = p["backgrounds"] if use_bg else None
    render, alphas, info = fn(p["means"], p["quats"], p["scales"], p["opacities"], p["colors"], p["viewmats"],
                              p["Ks"], W, H, render_mode=mode, backgrounds=bg)
    info["means2d"].retain_grad()
    g = torch.Generator().manual_seed(seed)
    w_render = torch.randn(render.shape, generator=g, dtype=render.dtype)
    w_alpha = torch.randn(alphas.shape, generator=g, dtype=render.dtype)
    ((render * w_render).sum() + (alphas * w_alpha).sum()).backward()
    grads = {k: p[k].grad for k in PARAMS if p[k].grad is not None}
    grads["means2d"] = info["means2d"].grad
    return render.detach(), alphas.detach(), grads, info


def _torch_backend(*args, **kwargs):
    return rasterize(*args, backend="torch", **kwargs)


def _dense(*args, **kwargs):
    args = list(args)
    args[6] = to_gsplat_intrinsics(args[6])  # the twin takes gsplat's pixel convention, as rasterize_torch does
    return _rasterize_dense(*args, **kwargs)


@pytest.mark.parametrize(("mode", "use_bg"), [("RGB", True), ("RGB+ED", False), ("D", False), ("ED", False)])
def test_torch_backend_matches_dense_reference_float64(mode: str, use_bg: bool) -> None:
    scene = _scene()
    r1, a1, g1, info = _render_and_grads(_torch_backend, scene, mode, use_bg)
    r2, a2, g2, _ = _render_and_grads(_dense, scene, mode, use_bg)
    assert float(a1.max()) > 0.999  # some pixels are saturated, so early termination is exercised
    assert float((a1 > 0).float().mean()) > 0.3
    # Same arithmetic in float64: agreement to rounding.
    torch.testing.assert_close(r1, r2, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(a1, a2, rtol=1e-10, atol=1e-10)
    assert set(g1) == set(g2)
    for k in g1:
        scale = float(g2[k].abs().max()) + 1e-12
        torch.testing.assert_close(g1[k] / scale, g2[k] / scale, rtol=0, atol=1e-9, msg=f"gradient of {k}")
    assert info["radii"].dtype == torch.int32 and info["radii"].shape == (2, 40)


def test_torch_backend_matches_dense_reference_float32() -> None:
    scene = _scene(dtype=torch.float32, seed=3)
    r1, a1, g1, _ = _render_and_grads(_torch_backend, scene, "RGB", True)
    r2, a2, g2, _ = _render_and_grads(_dense, scene, "RGB", True)
    # float32 with a different order of operations (hand-written backward vs autograd): 1e-5 of the values' scale.
    torch.testing.assert_close(r1, r2, rtol=0, atol=1e-5)
    torch.testing.assert_close(a1, a2, rtol=0, atol=1e-5)
    for k in g1:
        scale = float(g2[k].abs().max()) + 1e-12
        torch.testing.assert_close(g1[k] / scale, g2[k] / scale, rtol=0, atol=1e-4, msg=f"gradient of {k}")


def test_per_camera_colors_match_dense_reference() -> None:
    scene = _scene(cams=3, seed=5)
    scene["colors"] = torch.rand(3, 40, 5, dtype=torch.float64)
    scene["backgrounds"] = torch.rand(3, 5, dtype=torch.float64)
    r1, a1, g1, _ = _render_and_grads(_torch_backend, scene, "RGB+D", True)
    r2, a2, g2, _ = _render_and_grads(_dense, scene, "RGB+D", True)
    torch.testing.assert_close(r1, r2, rtol=1e-10, atol=1e-10)
    for k in g1:
        scale = float(g2[k].abs().max()) + 1e-12
        torch.testing.assert_close(g1[k] / scale, g2[k] / scale, rtol=0, atol=1e-9, msg=f"gradient of {k}")


def test_tiny_chunks_give_the_same_render() -> None:
    """Chunking is bookkeeping only: a budget that forces one block per chunk changes nothing."""
    s = _scene(seed=7)
    args = (s["means"], s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"],
            to_gsplat_intrinsics(s["Ks"]), W, H)
    r1, a1, _ = rasterize_torch(*args, backgrounds=s["backgrounds"])
    r2, a2, _ = rasterize_torch(*args, backgrounds=s["backgrounds"], element_budget=16)
    torch.testing.assert_close(r1, r2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a1, a2, rtol=1e-12, atol=1e-12)


def test_single_gaussian_hand_computed_and_pixel_centre_convention() -> None:
    """A disc-shaped Gaussian facing the camera, projecting onto integer pixel (10, 7), peaks there with
    alpha = opacity, and a pixel at distance d has alpha = opacity * exp(-d^2 / (2 (s^2 + eps2d))) with
    s = f * scale / z (the disc's thickness, 1e-6, adds nothing off-axis; eps2d = 0.3 is the 2D blur)."""
    f, z, scale, opacity = 40.0, 2.0, 0.05, 0.8
    K = torch.tensor([[[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]]], dtype=torch.float64)
    u, v = 10.0, 7.0
    mean = torch.tensor([[(u - K[0, 0, 2]) * z / f, (v - K[0, 1, 2]) * z / f, z]], dtype=torch.float64)
    render, alphas, info = rasterize(mean, torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64),
                                     torch.tensor([[scale, scale, 1e-6]], dtype=torch.float64),
                                     torch.tensor([opacity], dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64),
                                     torch.eye(4, dtype=torch.float64)[None], K, W, H, backend="torch")
    a = alphas[0, :, :, 0]
    assert tuple(torch.nonzero(a == a.max())[0].tolist()) == (7, 10)
    var = (f * scale / z) ** 2 + 0.3
    for dy, dx in [(0, 0), (0, 1), (1, 1), (-2, 1), (0, -3)]:
        expected = opacity * math.exp(-(dx * dx + dy * dy) / (2 * var))
        assert abs(float(a[7 + dy, 10 + dx]) - expected) < 1e-9  # float64; the thickness adds ~1e-12
    torch.testing.assert_close(render[0, :, :, 0], a)  # one white channel renders the alpha itself
    torch.testing.assert_close(info["means2d"][0, 0], torch.tensor([u + 0.5, v + 0.5], dtype=torch.float64))
    assert int(info["radii"][0, 0]) == math.ceil(3 * math.sqrt(var))


def test_absgrad_bounds_gradient_and_sees_cancelling_pixels() -> None:
    """A symmetric splat under a symmetric loss: the pixels' pulls on the 2D mean cancel (grad ~ 0) while their
    absolute values do not (AbsGS); and |sum| <= sum |.| for every Gaussian."""
    s = _scene(seed=11)
    means = s["means"].clone().requires_grad_()
    render, _, info = rasterize(means, s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"], s["Ks"],
                                W, H, absgrad=True, backend="torch")
    info["means2d"].retain_grad()
    render.square().sum().backward()
    grad, absgrad = info["means2d"].grad, info["means2d"].absgrad
    assert absgrad.shape == grad.shape
    assert bool((absgrad >= grad.abs() - 1e-12).all())
    assert bool((absgrad[info["radii"] > 0].sum(-1) > 0).any())

    K = torch.tensor([[[40.0, 0, (W - 1) / 2], [0, 40.0, (H - 1) / 2], [0, 0, 1]]], dtype=torch.float64)
    centre = torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64, requires_grad=True)
    K[0, 0, 2], K[0, 1, 2] = 18.0, 14.0  # the centre projects onto pixel (18, 14), well inside the image
    _, alphas, info = rasterize(centre, torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64),
                                torch.full((1, 3), 0.05, dtype=torch.float64), torch.tensor([0.7], dtype=torch.float64),
                                torch.ones(1, 1, dtype=torch.float64), torch.eye(4, dtype=torch.float64)[None], K, W, H,
                                absgrad=True, backend="torch")
    info["means2d"].retain_grad()
    alphas.sum().backward()
    assert float(info["means2d"].grad.abs().max()) < 1e-12
    assert float(info["means2d"].absgrad.min()) > 0.1


def test_info_drives_default_strategy_on_cpu() -> None:
    """gsplat's DefaultStrategy reads our info on CPU: gradients accumulate, Gaussians get duplicated and split."""
    from gsplat.strategy import DefaultStrategy

    s = _scene(n=60, dtype=torch.float32, seed=2)
    params = torch.nn.ParameterDict({
        "means": s["means"], "quats": s["quats"], "scales": torch.log(s["scales"]),
        "opacities": torch.logit(s["opacities"]), "colors": s["colors"],
    })  # fmt: skip
    optimizers = {k: torch.optim.Adam([params[k]], lr=1e-3) for k in params}
    for absgrad in (False, True):
        strategy = DefaultStrategy(refine_start_iter=1, refine_every=2, grow_grad2d=1e-9, reset_every=1000,
                                   absgrad=absgrad, verbose=False)
        strategy.check_sanity(params, optimizers)
        state = strategy.initialize_state(scene_scale=1.0)
        n_before = params["means"].shape[0]
        for step in range(3):
            render, _, info = rasterize(params["means"], params["quats"], torch.exp(params["scales"]),
                                        torch.sigmoid(params["opacities"]), params["colors"], s["viewmats"], s["Ks"],
                                        W, H, absgrad=absgrad, backend="torch")
            strategy.step_pre_backward(params, optimizers, state, step, info)
            render.mean().backward()
            strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
            for opt in optimizers.values():
                opt.step()
                opt.zero_grad()
        assert params["means"].shape[0] > n_before  # grown at step 2
        assert state["grad2d"] is not None and state["grad2d"].shape[0] == params["means"].shape[0]


def test_errors_name_the_problem() -> None:
    s = _scene()
    with pytest.raises(ValueError, match="CUDA"):
        resolve_backend("gsplat", torch.device("cpu"))
    with rejects(ValueError, match="quats"):
        rasterize(s["means"], s["quats"][:-1], s["scales"], s["opacities"], s["colors"], s["viewmats"], s["Ks"], W, H)
    with rejects(ValueError, match="colors"):
        rasterize(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"][:-1], s["viewmats"], s["Ks"], W, H)


def test_nothing_visible_renders_background() -> None:
    s = _scene(n=5)
    behind = s["means"] * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    render, alphas, info = rasterize(behind, s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"],
                                     s["Ks"], W, H, backgrounds=s["backgrounds"], backend="torch")
    assert bool((info["radii"] == 0).all()) and float(alphas.abs().max()) == 0.0
    torch.testing.assert_close(render, s["backgrounds"][:, None, None, :].expand_as(render))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["RGB", "RGB+ED"])
def test_torch_backend_matches_gsplat_on_cuda(mode: str) -> None:
    """Same inputs through gsplat's CUDA kernels and through the torch backend (also on CUDA)."""
    torch.manual_seed(0)
    s = {k: v.float().cuda() for k, v in _scene(n=400, dtype=torch.float32, seed=4, cams=3).items()}
    s["scales"] = s["scales"] * 0.5
    outs = {}
    for backend in ("gsplat", "torch"):
        p = {k: s[k].clone().requires_grad_(k in PARAMS) for k in s}
        render, alphas, info = rasterize(p["means"], p["quats"], p["scales"], p["opacities"], p["colors"],
                                         p["viewmats"], p["Ks"], W, H, render_mode=mode,
                                         backgrounds=p["backgrounds"] if mode == "RGB" else None, backend=backend)
        info["means2d"].retain_grad()
        g = torch.Generator(device="cuda").manual_seed(1)
        w = torch.randn(render.shape, generator=g, device="cuda")
        ((render * w).sum() + alphas.sum()).backward()
        grads = {k: p[k].grad for k in PARAMS if p[k].grad is not None}
        outs[backend] = (render.detach(), alphas.detach(), info, grads)
    r_g, a_g, i_g, g_g = outs["gsplat"]
    r_t, a_t, i_t, g_t = outs["torch"]
    assert torch.equal(i_g["radii"], i_t["radii"])
    torch.testing.assert_close(i_t["means2d"][i_t["radii"] > 0], i_g["means2d"][i_g["radii"] > 0], rtol=1e-5, atol=1e-4)
    # gsplat uses fast float32 exp: a pixel may flip across the 1/255 or 1e-4 thresholds, so bound the mean and
    # the worst pixel separately.
    for a, b in ((r_t, r_g), (a_t, a_g)):
        assert float((a - b).abs().mean()) < 1e-5
        assert float((a - b).abs().max()) < 1e-2
    for k in g_g:
        rel = float((g_t[k] - g_g[k]).norm() / (g_g[k].norm() + 1e-12))
        assert rel < 1e-3, f"gradient of {k}: relative difference {rel}"
    rel = float((i_t["means2d"].grad - i_g["means2d"].grad).norm() / i_g["means2d"].grad.norm())
    assert rel < 1e-3


def test_gaussian_in_the_camera_plane_keeps_gradients_finite() -> None:
    """gsplat's reference projection divides by z = 0 for a Gaussian in the camera plane; ours culls it cleanly."""
    s = _scene(n=12, seed=9)
    means = s["means"].clone()
    means[0, 2] = 0.0  # exactly in the plane of camera 0
    means.requires_grad_()
    render, _, info = rasterize(means, s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"][:1],
                                s["Ks"][:1], W, H, backend="torch")
    render.sum().backward()
    assert int(info["radii"][0, 0]) == 0
    assert bool(torch.isfinite(means.grad).all()) and float(means.grad[1:].abs().sum()) > 0
