"""Evaluation scores (torchmetrics): hand-computed PSNR (all pixels, masked pixels), SSIM's identity law."""

from __future__ import annotations

import math

import pytest
import torch

from panst3r_splat.splat.metrics import image_psnr, image_ssim


def test_psnr_of_a_uniform_offset_is_hand_computed() -> None:
    target = torch.full((12, 16, 3), 0.5)
    # MSE 0.1^2 = 0.01 with data range 1: 10 log10(1 / 0.01) = 20 dB.
    assert float(image_psnr(target + 0.1, target)) == pytest.approx(20.0, abs=1e-4)
    assert float(image_psnr(target.clone(), target)) == float("inf")


def test_masked_psnr_scores_the_masked_pixels_only() -> None:
    target = torch.full((2, 4, 4, 3), 0.5)
    pred = target.clone()
    pred[0, :2] += 0.1  # error on 8 pixels
    pred[1] += 0.5  # excluded below
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0] = True
    # 8 of the 16 masked pixels off by 0.1: MSE 0.005 -> 10 log10(200) = 23.0103 dB.
    assert float(image_psnr(pred, target, mask)) == pytest.approx(10 * math.log10(200), abs=1e-4)
    with pytest.raises(ValueError, match="without any pixel"):
        image_psnr(pred, target, torch.zeros_like(mask))


def test_ssim_is_one_on_identical_images_and_lower_otherwise() -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 24, 32, 3, generator=g)
    assert float(image_ssim(image, image)) == pytest.approx(1.0, abs=1e-6)
    noisy = (image + 0.2 * torch.randn(image.shape, generator=g)).clamp(0, 1)
    assert float(image_ssim(noisy, image)) < 0.9
    assert float(image_ssim(noisy, image)) == pytest.approx(float(image_ssim(image, noisy)), abs=1e-6)  # symmetric
