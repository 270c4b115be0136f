"""Image quality scores of renders against photos, from torchmetrics (PSNR, SSIM; data range 1).

Every evaluation (the nerfstudio method's metrics and `ns-eval`) scores with these, so the figures are torchmetrics'
definitions. The fit loss keeps its own SSIM (`splat.train.ssim`, a faster separable convolution that agrees with
torchmetrics to 1e-5; tests/splat/test_train.py, the measured reason in splat/design.md).
"""

from __future__ import annotations

from jaxtyping import Bool, Float
from torch import Tensor


def _nchw(image: Float[Tensor, "*B H W 3"]) -> Float[Tensor, "B 3 H W"]:
    H, W, D = image.shape[-3:]
    return image.reshape(-1, H, W, D).permute(0, 3, 1, 2)


def image_psnr(pred: Float[Tensor, "*B H W 3"], target: Float[Tensor, "*B H W 3"],
               mask: Bool[Tensor, "*B H W"] | None = None) -> Float[Tensor, ""]:
    """PSNR in dB over all pixels and channels of images in [0, 1] (torchmetrics, `data_range=1`); with `mask`, over
    the masked pixels only (all their channels), e.g. those a render covers. Computed in the inputs' dtype."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    if mask is not None:
        if not bool(mask.any()):
            raise ValueError("image_psnr got a mask without any pixel; score covered pixels only where there are some")
        pred, target = pred[mask], target[mask]  # [M, 3]
    return peak_signal_noise_ratio(pred, target, data_range=1.0)


def image_ssim(pred: Float[Tensor, "*B H W 3"], target: Float[Tensor, "*B H W 3"]) -> Float[Tensor, ""]:
    """Mean SSIM of images in [0, 1] (torchmetrics: Gaussian window 11, sigma 1.5, `data_range=1`; the mean over
    the pixels at least 5 from the border, as `splat.train.ssim`)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(_nchw(pred), _nchw(target), data_range=1.0)
