"""The compiled CPU backend (`rasterize_numba`) against the plain-torch reference, forward and backward, every mode."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from _typecheck import rejects
from panst3r_splat.splat.rasterize import rasterize, resolve_backend

W, H = 37, 29  # not multiples of 16: border tiles are partly outside the image
PARAMS = ("means", "quats", "scales", "opacities", "colors", "backgrounds")


def _scene(n: int = 60, dtype: torch.dtype = torch.float64, seed: int = 0, cams: int = 2, d: int = 3) -> dict:
    """Random Gaussians in front of `cams` cameras; a quarter large and opaque, so pixels reach T < 1e-4."""
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
        "colors": torch.rand(n, d, generator=g, dtype=dtype),
        "viewmats": viewmats,
        "Ks": K[None].repeat(cams, 1, 1),
        "backgrounds": torch.rand(cams, d, generator=g, dtype=dtype),
    }


def _run(backend: str, scene: dict, mode: str = "RGB", use_bg: bool = True, **kwargs):
    """Render, backpropagate fixed random weights of colours and alpha; return outputs, gradients and info."""
    p = {k: scene[k].clone().requires_grad_(k in PARAMS or k in kwargs.pop("grad_also", ())) for k in scene}
    render, alphas, info = rasterize(p["means"], p["quats"], p["scales"], p["opacities"], p["colors"], p["viewmats"],
                                     p["Ks"], W, H, render_mode=mode, backgrounds=p["backgrounds"] if use_bg else None,
                                     backend=backend, **kwargs)
    info["means2d"].retain_grad()
    g = torch.Generator().manual_seed(1)
    w_render = torch.randn(render.shape, generator=g, dtype=render.dtype)
    w_alpha = torch.randn(alphas.shape, generator=g, dtype=render.dtype)
    ((render * w_render).sum() + (alphas * w_alpha).sum()).backward()
    grads = {k: p[k].grad for k in p if p[k].grad is not None}
    grads["means2d"] = info["means2d"].grad
    if kwargs.get("absgrad"):
        grads["absgrad"] = info["means2d"].absgrad
    return render.detach(), alphas.detach(), grads, info


def _assert_same(a: tuple, b: tuple, image_tol: float, grad_tol: float) -> None:
    """Renders within `image_tol`; each gradient within `grad_tol` of that gradient's largest magnitude."""
    r1, a1, g1, i1 = a
    r2, a2, g2, i2 = b
    torch.testing.assert_close(r1, r2, rtol=0, atol=image_tol)
    torch.testing.assert_close(a1, a2, rtol=0, atol=image_tol)
    assert torch.equal(i1["radii"], i2["radii"])
    assert torch.equal(i1["tiles_per_gauss"], i2["tiles_per_gauss"])
    assert set(g1) == set(g2)
    for k in g1:
        scale = float(g2[k].abs().max()) + 1e-12
        torch.testing.assert_close(g1[k] / scale, g2[k] / scale, rtol=0, atol=grad_tol, msg=f"gradient of {k}")


@pytest.mark.parametrize(("mode", "use_bg"), [("RGB", True), ("RGB+ED", False), ("RGB+D", True), ("D", False),
                                               ("ED", False)])
def test_matches_torch_reference_float64(mode: str, use_bg: bool) -> None:
    scene = _scene()
    ours, ref = _run("numba", scene, mode, use_bg), _run("torch", scene, mode, use_bg)
    assert float(ref[1].max()) > 0.999 and float((ref[1] > 0).float().mean()) > 0.3  # saturated pixels exist
    # Same float64 maths, different order of sums: agreement to rounding.
    _assert_same(ours, ref, image_tol=1e-10, grad_tol=1e-9)
    assert ours[3]["backend"] == "numba" and ours[3]["means2d"].shape == (2, 60, 2)


def test_matches_torch_reference_float32() -> None:
    scene = _scene(n=200, dtype=torch.float32, seed=3)
    ours, ref = _run("numba", scene, "RGB+ED", True), _run("torch", scene, "RGB+ED", True)
    # float32 with another order of operations (and the CUDA kernel's division to recover T on the way back):
    # images to 1e-4, gradients to 1e-4 of their scale.
    _assert_same(ours, ref, image_tol=1e-4, grad_tol=1e-4)


def test_per_camera_label_channels_d64_float32() -> None:
    """Label lifting's case: per-camera [C, N, 64] colours, gradients through them."""
    scene = _scene(n=80, dtype=torch.float32, seed=5, cams=3, d=64)
    scene["colors"] = torch.rand(3, 80, 64, generator=torch.Generator().manual_seed(2))
    ours, ref = _run("numba", scene, "RGB", True), _run("torch", scene, "RGB", True)
    _assert_same(ours, ref, image_tol=1e-4, grad_tol=1e-4)  # float32, as above
    assert float(ours[2]["colors"].abs().sum()) > 0


def test_degenerate_gaussians_float64() -> None:
    """Behind the camera, in the camera plane, huge, tiny, zero and below-threshold opacity, all in one scene."""
    s = _scene(n=40, seed=9)
    s["means"][0, 2] = -2.0  # behind both cameras
    s["means"][1, 2] = 0.0  # in the plane of camera 0
    s["means"][2] = torch.tensor([0.1, 0.0, 3.0], dtype=torch.float64)
    s["scales"][2] = 50.0  # huge: covers every tile of both images
    s["opacities"][2] = 0.3
    s["scales"][3] = 1e-6  # tiny: eps2d alone sets its footprint
    s["opacities"][4] = 0.0
    s["opacities"][5] = 0.5 / 255
    s["scales"][6] = torch.tensor([1e-7, 0.3, 0.2], dtype=torch.float64)  # a flat disc
    ours, ref = _run("numba", s), _run("torch", s)
    _assert_same(ours, ref, image_tol=1e-10, grad_tol=1e-9)
    assert int(ours[3]["radii"][0, 0]) == 0 and int(ours[3]["radii"][0, 1]) == 0
    assert int(ours[3]["tiles_per_gauss"][0, 2]) == math.ceil(W / 16) * math.ceil(H / 16)
    assert all(bool(torch.isfinite(g).all()) for g in ours[2].values())


@pytest.mark.parametrize("options", [{"eps2d": 0.1, "near_plane": 2.8, "far_plane": 3.6}, {"absgrad": True}])
def test_options_match_torch_reference(options: dict) -> None:
    scene = _scene(seed=4)
    ours, ref = _run("numba", scene, **dict(options)), _run("torch", scene, **dict(options))
    _assert_same(ours, ref, image_tol=1e-10, grad_tol=1e-9)  # float64
    if "near_plane" in options:  # the planes cull some Gaussians and keep others
        assert 0 < int((ours[3]["radii"] > 0).sum()) < int((_run("numba", scene)[3]["radii"] > 0).sum())


def test_camera_gradients_match_torch_reference() -> None:
    """Camera refinement differentiates through `viewmats`: the backend then projects in torch, still exact."""
    scene = _scene(seed=6)
    ours, ref = _run("numba", scene, grad_also=("viewmats",)), _run("torch", scene, grad_also=("viewmats",))
    _assert_same(ours, ref, image_tol=1e-10, grad_tol=1e-9)  # float64
    assert "viewmats" in ours[2]


def test_float64_gradcheck_tiny_scene() -> None:
    """Finite differences on 3 soft Gaussians (no pixel near the 1/255 or 1e-4 thresholds at these values)."""
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.0, 0.0, 3.0], [0.2, -0.1, 3.5], [-0.3, 0.2, 4.0]], dtype=torch.float64)
    quats = torch.randn(3, 4, generator=g, dtype=torch.float64)
    scales = torch.tensor([[0.3, 0.2, 0.25], [0.2, 0.3, 0.2], [0.25, 0.25, 0.3]], dtype=torch.float64)
    opacities = torch.tensor([0.5, 0.6, 0.7], dtype=torch.float64)
    colors = torch.rand(3, 2, generator=g, dtype=torch.float64)
    viewmats = torch.eye(4, dtype=torch.float64)[None]
    Ks = torch.tensor([[[20.0, 0, 7.5], [0, 20.0, 5.5], [0, 0, 1]]], dtype=torch.float64)

    def fn(means, quats, scales, opacities, colors):
        render, alphas, _ = rasterize(means, quats, scales, opacities, colors, viewmats, Ks, 16, 12, backend="numba",
                                      render_mode="RGB+ED")
        return render, alphas

    inputs = tuple(t.clone().requires_grad_() for t in (means, quats, scales, opacities, colors))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_default_strategy_refine_gives_the_same_gaussians() -> None:
    """A few steps of SGD + DefaultStrategy (grow, split, prune) through each backend end with the same Gaussians.

    (SGD rather than Adam: Adam's first steps are lr * sign(gradient), which turns rounding-level differences of
    near-zero gradients into full steps.)"""
    s = _scene(n=60, dtype=torch.float32, seed=2)
    results = {}
    for backend in ("numba", "torch"):
        params = torch.nn.ParameterDict({
            "means": s["means"].clone(), "quats": s["quats"].clone(), "scales": torch.log(s["scales"]),
            "opacities": torch.logit(s["opacities"]), "colors": s["colors"].clone(),
        })  # fmt: skip
        optimizers = {k: torch.optim.SGD([params[k]], lr=1.0) for k in params}
        results[backend] = _refine_steps(params, optimizers, s, backend)
    assert results["numba"]["means"].shape[0] != 60  # the refine steps changed the set
    for k in results["torch"]:
        assert results["numba"][k].shape == results["torch"][k].shape, k
        # float32 gradients that agree to ~1e-6 of their scale, times the learning rate: 1e-5 absolute.
        torch.testing.assert_close(results["numba"][k], results["torch"][k], rtol=0, atol=1e-5, msg=k)


def test_thread_count_and_concurrent_calls_do_not_change_results() -> None:
    scene = _scene(n=120, seed=8)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run("numba", scene)
        torch.set_num_threads(2)
        two = _run("numba", scene)
    finally:
        torch.set_num_threads(threads)
    _assert_same(one, two, image_tol=1e-12, grad_tol=1e-12)  # float64; only the order of per-unit sums differs
    outs: list = [None, None]

    def work(i: int) -> None:
        outs[i] = _run("numba", scene)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    for out in outs:
        _assert_same(out, two, image_tol=1e-12, grad_tol=1e-12)


def test_nothing_visible_renders_background_and_zero_gradients() -> None:
    s = _scene(n=5)
    s["means"] = s["means"] * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    render, alphas, grads, info = _run("numba", s)
    assert bool((info["radii"] == 0).all()) and float(alphas.abs().max()) == 0.0
    torch.testing.assert_close(render, s["backgrounds"][:, None, None, :].expand_as(render))
    assert float(grads["means"].abs().max()) == 0.0


def test_backend_choice() -> None:
    assert resolve_backend("auto", torch.device("cpu")) == "numba"
    assert resolve_backend("auto", torch.device("cuda")) == "gsplat"
    with pytest.raises(ValueError, match="CPU"):
        resolve_backend("numba", torch.device("cuda"))
    with rejects(ValueError, match="backend must be"):
        resolve_backend("warp", torch.device("cpu"))  # type: ignore[arg-type]


def _refine_steps(params: torch.nn.ParameterDict, optimizers: dict, s: dict, backend: str) -> dict:
    """5 steps with refinement every 2; splits draw new centres from the global generator, so seed a fork of it."""
    from gsplat.strategy import DefaultStrategy

    with torch.random.fork_rng():
        torch.manual_seed(0)
        strategy = DefaultStrategy(refine_start_iter=1, refine_every=2, grow_grad2d=2e-5, grow_scale3d=0.05,
                                   prune_opa=0.1, reset_every=1000, verbose=False)
        state = strategy.initialize_state(scene_scale=1.0)
        for step in range(5):
            render, _, info = rasterize(params["means"], params["quats"], torch.exp(params["scales"]),
                                        torch.sigmoid(params["opacities"]), params["colors"], s["viewmats"], s["Ks"],
                                        W, H, backend=backend)
            strategy.step_pre_backward(params, optimizers, state, step, info)
            render.mean().backward()
            strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
            for opt in optimizers.values():
                opt.step()
                opt.zero_grad()
    return {k: v.detach().clone() for k, v in params.items()}


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_depth_order_is_numpys_stable_argsort(n: int) -> None:
    """The radix depth sort of the tile plan gives numpy's stable order: ties (also -0.0 against 0.0) by index,
    negative depths, infinities and subnormals included."""
    from panst3r_splat.splat._numba_kernels import depth_order

    rng = np.random.default_rng(n)
    for depths in (rng.random(n) * 4 + 0.01, rng.normal(0.0, 3.0, n), np.round(rng.normal(0.0, 2.0, n))):
        depths = depths.astype(np.float32)
        depths[::3] = -0.0 if n > 2 else depths[::3]
        np.testing.assert_array_equal(depth_order(depths), np.argsort(depths, kind="stable"))
    edge = np.array([np.inf, -np.inf, 1e-40, -1e-40, 0.0, -0.0, 3e38, -3e38, 1.0, 1.0], np.float32)
    np.testing.assert_array_equal(depth_order(edge), np.argsort(edge, kind="stable"))
