"""Image loading: official aspect buckets, crop/resize, the to_orig map, EXIF, video, native size and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from _fixtures import write_grey_video
import torch

from panst3r_splat.core import images as im


def _save(path: Path, array: np.ndarray) -> Path:
    PIL.Image.fromarray(array).save(path)
    return path


def _random_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------- buckets and plans


def test_buckets_512_equal_the_official_table():
    assert im.bucket_resolutions(512) == {
        4 / 3: (512, 384), 32 / 21: (512, 336), 16 / 9: (512, 288), 2 / 1: (512, 256), 16 / 5: (512, 160)
    }


@pytest.mark.parametrize("long_side", [64, 96, 128, 256, 320, 512, 640])
def test_derived_buckets_are_patch_multiples(long_side):
    buckets = im.bucket_resolutions(long_side)
    assert buckets
    for ratio, (long, short) in buckets.items():
        assert long == long_side and short % 16 == 0 and 16 <= short <= long
        assert ratio == pytest.approx(long / short)


def test_bucket_size_must_be_a_patch_multiple():
    with pytest.raises(ValueError, match="multiple of the patch size"):
        im.bucket_resolutions(500)


def test_plan_landscape_no_crop():
    plan = im.plan_resize(480, 640, 512)
    assert (plan.crop_h, plan.crop_w, plan.out_h, plan.out_w) == (480, 640, 384, 512)
    # pixel centres: u -> (u + 0.5) * 1.25 - 0.5 = 1.25 u + 0.125
    np.testing.assert_allclose(plan.to_orig(), [[1.25, 0, 0.125], [0, 1.25, 0.125], [0, 0, 1]])


def test_plan_portrait_stays_portrait():
    plan = im.plan_resize(4032, 3024, 512)
    assert (plan.out_h, plan.out_w) == (512, 384)
    plan = im.plan_resize(1920, 1080, 512)
    assert (plan.out_h, plan.out_w) == (512, 288)


def test_plan_square_crops_to_four_thirds():
    plan = im.plan_resize(1000, 1000, 512)
    assert (plan.out_h, plan.out_w) == (384, 512)
    assert (plan.crop_h, plan.crop_w, plan.crop_top, plan.crop_left) == (750, 1000, 125, 0)
    s = 1000 / 512
    expected = [[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5 + 125], [0, 0, 1]]
    np.testing.assert_allclose(plan.to_orig(), expected, rtol=1e-6)


def test_exact_bucket_is_identity():
    plan = im.plan_resize(384, 512, 512)
    assert plan.is_identity
    np.testing.assert_array_equal(plan.to_orig(), np.eye(3))


def test_plan_odd_margin_rounds_like_torchvision():
    # 50x64 at long side 64 -> 48x64 bucket: a 2-row margin, top offset 1, no resize.
    plan = im.plan_resize(50, 64, 64)
    assert (plan.crop_top, plan.crop_h, plan.out_h, plan.out_w) == (1, 48, 48, 64)
    np.testing.assert_allclose(plan.to_orig(), [[1, 0, 0], [0, 1, 1], [0, 0, 1]])
    # a 3-row margin: int(round(1.5)) = 2 (round half to even, as torchvision CenterCrop)
    assert im.plan_resize(51, 64, 64).crop_top == 2


def test_resize_matches_reference_twin():
    rng = np.random.default_rng(1)
    for h, w, side in [(90, 140, 64), (40, 30, 64), (37, 101, 96), (20, 28, 64)]:
        plan = im.plan_resize(h, w, side)
        image = rng.uniform(-1, 1, size=(3, h, w)).astype(np.float32)
        fast = im.apply_resize(torch.from_numpy(image), plan).numpy()
        slow = im._apply_resize(image, plan)
        assert fast.shape == slow.shape == (3, plan.out_h, plan.out_w)
        np.testing.assert_allclose(fast, slow, atol=1e-5)


def test_resize_equals_official_torchvision_ops():
    """The official get_resize_function, written with torchvision ops, gives bit-identical pixels."""
    import torchvision.transforms as tvf
    rng = np.random.default_rng(4)
    for h, w in [(480, 640), (1000, 1000), (1080, 1920), (2016, 1512), (333, 517), (51, 64), (700, 300)]:
        image = torch.from_numpy(rng.uniform(-1, 1, size=(3, h, w)).astype(np.float32))
        plan = im.plan_resize(h, w, 512)
        ours = im.apply_resize(image, plan)
        buckets = im.bucket_resolutions(512)
        if (max(h, w), min(h, w)) in buckets.values():
            ref = image
        else:  # must3r/tools/image.py get_resize_function
            th, tw = im.select_resolution(h, w, buckets)
            ratio, target = w / h, tw / th
            if abs(ratio - target) < np.finfo(np.float32).eps:
                ch, cw = h, w
            elif ratio < target:
                ch, cw = int(w / target), w
            else:
                ch, cw = h, int(h * target)
            ref = tvf.Compose([tvf.CenterCrop([ch, cw]), tvf.Resize(size=[th, tw])])(image)
        assert ours.shape == ref.shape
        assert torch.equal(ours, ref), (h, w)


def test_to_orig_maps_model_pixels_onto_what_they_show():
    """A horizontal + vertical coordinate ramp survives the linear filter: model pixel (u, v) shows the original
    coordinates to_orig @ (u, v, 1), away from the borders (where the filter is clamped)."""
    h, w = 150, 260
    plan = im.plan_resize(h, w, 64)  # crops rows (2:1 bucket) and downscales
    assert plan.crop_h < h and plan.out_w < w
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    ramp = torch.from_numpy(np.stack([xs, ys, xs + ys]))
    out = im.apply_resize(ramp, plan).numpy()
    uu, vv = np.meshgrid(np.arange(plan.out_w), np.arange(plan.out_h))
    mapped = np.einsum("ij,jhw->ihw", plan.to_orig().astype(np.float64), np.stack([uu, vv, np.ones_like(uu)]))
    inner = (slice(2, -2), slice(2, -2))
    # 0.05 px: the discrete triangle filter at a non-integer scale (4.06 here) shifts a ramp by ~0.01 px; the
    # pixel-corner convention would be off by 0.5 * scale - 0.5 = 1.5 px.
    np.testing.assert_allclose(out[0][inner], mapped[0][inner], atol=0.05)
    np.testing.assert_allclose(out[1][inner], mapped[1][inner], atol=0.05)


# ------------------------------------------------------------------------------------------------- load_images


def test_load_folder_natural_order_and_normalisation(tmp_path):
    a = _random_rgb(48, 64, 1)
    _save(tmp_path / "img10.png", _random_rgb(48, 64, 2))
    _save(tmp_path / "img2.png", a)
    (tmp_path / "notes.txt").write_text("not an image")
    loaded = im.load_images(tmp_path, size=64)
    assert loaded.names == ("img2.png", "img10.png")
    assert loaded.uniform and loaded.images.shape == (2, 3, 48, 64) and loaded.images.dtype == torch.float32
    assert loaded.images.min() >= -1 and loaded.images.max() <= 1
    np.testing.assert_array_equal(loaded.images_uint8[0], a)  # exact bucket: the image as it is
    np.testing.assert_allclose(loaded.images[0].permute(1, 2, 0).numpy(), a / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(loaded.orig_hw, [[48, 64], [48, 64]])
    np.testing.assert_array_equal(loaded.to_orig, np.broadcast_to(np.eye(3), (2, 3, 3)))


def test_load_resizes_to_bucket_and_maps_back(tmp_path):
    _save(tmp_path / "a.jpg", _random_rgb(120, 200))
    loaded = im.load_images(tmp_path, size=64)
    plan = im.plan_resize(120, 200, 64)
    assert loaded.images.shape == (1, 3, plan.out_h, plan.out_w)
    np.testing.assert_allclose(loaded.to_orig[0], plan.to_orig())
    np.testing.assert_array_equal(loaded.orig_hw[0], [120, 200])
    # images_uint8 is the model input seen as uint8
    back = loaded.images_uint8[0].astype(np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(back, loaded.images[0].permute(1, 2, 0).numpy(), atol=1 / 127.5)


def test_mixed_aspect_ratios_are_grouped(tmp_path):
    _save(tmp_path / "0_land.png", _random_rgb(48, 64))
    _save(tmp_path / "1_port.png", _random_rgb(64, 48))
    _save(tmp_path / "2_land.png", _random_rgb(96, 128))
    loaded = im.load_images(tmp_path, size=64)
    assert not loaded.uniform
    assert [g.tolist() for g in loaded.groups] == [[0, 2], [1]]
    assert loaded.images[0].shape == (2, 3, 48, 64) and loaded.images[1].shape == (1, 3, 64, 48)
    np.testing.assert_array_equal(loaded.true_shape, [[48, 64], [64, 48], [48, 64]])
    assert loaded.view_image(1).shape == (3, 64, 48)
    assert loaded.view_uint8(2).shape == (48, 64, 3)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((48, 64, 3), dtype=np.uint8)
    pixels[:, :32] = (255, 0, 0)  # left half red, right half blue
    pixels[:, 32:] = (0, 0, 255)
    img = PIL.Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    loaded = im.load_images(tmp_path, size=64)
    np.testing.assert_array_equal(loaded.orig_hw[0], [64, 48])  # portrait once upright
    upright = loaded.images_uint8[0]
    assert upright.shape == (64, 48, 3)
    assert upright[8, 24, 0] > 200 and upright[8, 24, 2] < 60  # top half red after the rotation
    assert upright[56, 24, 2] > 200 and upright[56, 24, 0] < 60  # bottom half blue


def test_native_size(tmp_path):
    _save(tmp_path / "a.png", _random_rgb(32, 80))
    _save(tmp_path / "b.png", _random_rgb(32, 80, 1))
    loaded = im.load_images(tmp_path, size="native")
    assert loaded.images.shape == (2, 3, 32, 80)
    np.testing.assert_array_equal(loaded.to_orig[1], np.eye(3))


def test_native_size_not_patch_multiple_names_the_file(tmp_path):
    _save(tmp_path / "odd.png", _random_rgb(30, 80))
    with pytest.raises(ValueError, match=r"odd\.png.*multiple of 16"):
        im.load_images(tmp_path, size="native")


def test_native_mixed_sizes_error(tmp_path):
    _save(tmp_path / "a.png", _random_rgb(32, 80))
    _save(tmp_path / "b.png", _random_rgb(48, 64))
    with pytest.raises(ValueError, match="mixed image sizes"):
        im.load_images(tmp_path, size="native")


def test_explicit_file_list_keeps_order(tmp_path):
    b = _save(tmp_path / "b.png", _random_rgb(48, 64))
    a = _save(tmp_path / "a.png", _random_rgb(48, 64, 3))
    loaded = im.load_images([b, a], size=64)
    assert loaded.names == ("b.png", "a.png")


def test_video_frames_sampled_evenly(tmp_path):
    path = write_grey_video(tmp_path / "clip.mp4")
    loaded = im.load_images(path, size=64, max_video_frames=4)
    assert loaded.names == ("clip_frame000000", "clip_frame000003", "clip_frame000006", "clip_frame000009")
    brightness = loaded.images_uint8.reshape(4, -1).mean(axis=1)
    np.testing.assert_allclose(brightness, [10, 70, 130, 190], atol=8)


# ------------------------------------------------------------------------------------------------------ errors


def test_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        im.load_images(tmp_path / "nope")


def test_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="no images in folder"):
        im.load_images(tmp_path)
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="readme.txt"):
        im.load_images(tmp_path)


def test_corrupt_image_is_named(tmp_path):
    _save(tmp_path / "good.png", _random_rgb(48, 64))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(ValueError, match=r"broken\.png"):
        im.load_images(tmp_path)


def test_truncated_jpeg_is_named(tmp_path):
    _save(tmp_path / "full.jpg", _random_rgb(48, 64))
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.jpg"):
        im.load_images([tmp_path / "cut.jpg"])


def test_unsupported_extension(tmp_path):
    path = tmp_path / "scan.xyz"
    path.write_bytes(b"data")
    with pytest.raises(ValueError, match="unsupported image extension"):
        im.load_images(path)


def test_bad_size_value(tmp_path):
    _save(tmp_path / "a.png", _random_rgb(48, 64))
    with pytest.raises(ValueError, match="size"):
        im.load_images(tmp_path, size="large")  # type: ignore[arg-type]
