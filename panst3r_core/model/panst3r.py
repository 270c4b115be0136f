"""The full PanSt3R model: MUSt3R encoder + decoder with memory, DINOv2, fusion head and mask transformer.

Two entry points (panst3r/panst3r.py):

- :meth:`PanSt3R.forward` (training mode): all views of each scene build the memory (2, then 1 at a time), are
  rendered against the full memory, and the queries are decoded jointly over all of them.
- :meth:`PanSt3R.forward_inference`: keyframes build the memory and decode the queries; every other view is
  rendered against the keyframe memory in small batches and segmented with the decoded queries, so memory stays
  bounded for hundreds of images. Views may differ in size.

The module attribute names (``must3r_encoder``, ``must3r_decoder``, ``dino_encoder``, ``panoptic_decoder`` with
``input_mixer``, ``upscaler``, ``mask_transformer``) are those of the official state_dict.

Orientation: see :mod:`panst3r_splat.core.model.config`. Results are always returned in each image's own
orientation: for portrait views under ``landscape_only`` the transposed storage of the official code is undone here.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from tqdm import tqdm

from panst3r_splat.core.model.config import LoftUpConfig, PanSt3RConfig
from panst3r_splat.core.model.decoder import DecoderMemory, MemoryKV, MUSt3RDecoder
from panst3r_splat.core.model.descriptors import DescriptorHead
from panst3r_splat.core.model.dino import DinoV2Encoder
from panst3r_splat.core.model.encoder import MUSt3REncoder, check_image_size
from panst3r_splat.core.model.heads import InputMixer, LoftUpUpscaler, PixelShuffleUpscaler, run_upscaler
from panst3r_splat.core.model.keyframes import KeyframePolicy, default_keyframe_policy, memory_schedule
from panst3r_splat.core.model.mask_transformer import MaskTransformer
from panst3r_splat.core.model.outputs import (
    AuxPrediction,
    InferenceOutput,
    PanopticOutput,
    TrainingOutput,
    activate_descriptors,
    panoptic_from_mask_transformer,
)

logger = logging.getLogger(__name__)


class PanopticDecoder(nn.Module):
    """Token fusion (concatenation, v2 input mixer), upscaler and mask transformer."""

    def __init__(self, config: PanSt3RConfig) -> None:
        super().__init__()
        self.landscape_only = config.mask_transformer.landscape_only
        self.input_mixer = InputMixer(config.input_mixer) if config.input_mixer is not None else None
        if isinstance(config.upscaler, LoftUpConfig):
            self.upscaler: nn.Module = LoftUpUpscaler(config.upscaler, transpose_portrait_guidance=self.landscape_only)
        else:
            self.upscaler = PixelShuffleUpscaler(config.upscaler)
        self.mask_transformer = MaskTransformer(config.mask_transformer)

    def view_features(
        self,
        x_enc: Float[Tensor, "V T De"],
        y_dec: Float[Tensor, "V T Dd"],
        x_dino: Float[Tensor, "V T Dn"],
        pos: Int[Tensor, "V T 2"],
        imgs: Float[Tensor, "V 3 H W"],
    ) -> tuple[Float[Tensor, "V C16 h w"], Float[Tensor, "V Cm H2 W2"]]:
        """Frame tokens and mask features of views of one size, in storage orientation (float32).

        Concatenation order is [MUSt3R encoder | MUSt3R decoder | DINOv2] (method.md 9.1).
        """
        tokens = torch.cat([x_enc.float(), y_dec.float(), x_dino.float()], dim=-1)
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            if self.input_mixer is not None:
                tokens = self.input_mixer(tokens, pos)
            return run_upscaler(self.upscaler, tokens, imgs.float(), tuple(imgs.shape[-2:]), self.landscape_only)


class PortraitHandling(enum.Enum):
    """How :meth:`PanSt3R.forward_inference` treats portrait (taller than wide) views."""

    AS_TRAINED = "as_trained"
    """Feed them as the model's ``landscape_only`` flags say: for official checkpoints exactly what the official
    inference does (see :mod:`panst3r_splat.core.model.config`), for our own models the image as is."""
    ROTATE = "rotate"
    """Rotate them 90 degrees to landscape before the model and rotate the results back: the model only ever sees
    landscape views (what the official checkpoints were trained on). The rotation is a rigid motion of the camera
    about its optical axis, so points are rotated back too and scenes mixing orientations stay consistent."""


#: Camera rotation of a view rotated with ``torch.rot90(img, 1, dims=(-2, -1))``: ``p_cam = R p_rotated_cam``
#: (OpenCV axes, principal point at the image centre; derived in ``unrotate_view``).
R_CAM_ROTATED = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class InferenceOptions:
    """How :meth:`PanSt3R.forward_inference` runs."""

    keyframes: KeyframePolicy | None = None
    """Keyframe policy; None = official default (all views up to 50, else 50 evenly spaced)."""
    batch_size: int = 1
    """Views per encoder / render / head call (the official demo uses 1)."""
    autocast_dtype: torch.dtype | None = None
    """Run MUSt3R and DINOv2 under autocast with this dtype (e.g. torch.bfloat16 on CUDA); heads stay float32."""
    output_device: torch.device | None = None
    """Where per-view results and cached encoder tokens are kept (e.g. CPU for long sequences); None = input's."""
    progress: bool = True
    """Show tqdm progress bars."""
    memory_init: int = 2
    """Keyframes fed together when the memory is created (official 2)."""
    memory_step: int = 1
    """Keyframes fed together afterwards (official 1)."""
    portrait: PortraitHandling = PortraitHandling.AS_TRAINED
    """Treatment of portrait views."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


@dataclass
class _Rendered:
    """Per-view results of the render passes, by view index."""

    pointmaps: dict[int, Tensor]
    """Raw pointmaps ``(H, W, 7)``."""
    descriptors: dict[int, Tensor]
    """Raw descriptor-head output ``(H, W, D + 1)`` (empty for models without one)."""


def _activated_descriptors(raw: dict[int, Tensor], num_views: int) -> dict[str, tuple[Tensor, ...] | None]:
    """``descriptors`` and ``descriptor_conf`` fields of the inference output (None without a descriptor head)."""
    if not raw:
        return {"descriptors": None, "descriptor_conf": None}
    activated = [activate_descriptors(raw[i]) for i in range(num_views)]
    return {"descriptors": tuple(d for d, _ in activated), "descriptor_conf": tuple(c for _, c in activated)}


@dataclass
class _ViewCache:
    """Per-view state carried between the inference stages."""

    x_enc: list[Tensor] = field(default_factory=list)
    pos: list[Tensor] = field(default_factory=list)


class PanSt3R(nn.Module):
    """PanSt3R (v1 or v2 head), built from a :class:`PanSt3RConfig`."""

    def __init__(self, config: PanSt3RConfig) -> None:
        super().__init__()
        self.config = config
        self.must3r_encoder = MUSt3REncoder(config.encoder)
        self.must3r_decoder = MUSt3RDecoder(config.decoder)
        self.dino_encoder = DinoV2Encoder(config.dino)
        self.panoptic_decoder = PanopticDecoder(config)
        # Only our own models have one; no such key exists in the official state_dict.
        self.descriptor_head = DescriptorHead(config.descriptor_head) if config.descriptor_head is not None else None

    def set_trainable(
        self, *, must3r_encoder: bool = False, must3r_decoder: bool = False, dino: bool = False, head: bool = True
    ) -> None:
        """Choose which components get gradients (official training: MUSt3R and DINOv2 frozen, head trained).

        Frozen components run under ``torch.no_grad`` in :meth:`forward`, so they store no activations.
        """
        for module, flag in (
            (self.must3r_encoder, must3r_encoder),
            (self.must3r_decoder, must3r_decoder),
            (self.dino_encoder, dino),
            (self.panoptic_decoder, head),
        ):
            module.requires_grad_(flag)

    # -- stages ---------------------------------------------------------------------------------------------------

    def encode(self, imgs: Float[Tensor, "V 3 H W"]) -> tuple[Float[Tensor, "V T De"], Int[Tensor, "V T 2"]]:
        """MUSt3R encoder tokens (after ``norm_enc``) and integer (y, x) positions."""
        return self.must3r_encoder(imgs)

    def build_memory(
        self,
        x_enc: Sequence[Tensor],
        pos: Sequence[Tensor],
        init: int = 2,
        step: int = 1,
    ) -> DecoderMemory:
        """Feed images to an empty memory ``init`` at a time, then ``step`` at a time.

        Args:
            x_enc: per image ``(B, T_i, De)`` encoder tokens, in memory order (the first is the reference).
            pos: per image ``(B, T_i, 2)`` positions.
        """
        return self._build_memory(x_enc, pos, init, step, None)[0]

    def build_memory_with_pointmaps(
        self,
        x_enc: Float[Tensor, "B V T De"],
        pos: Int[Tensor, "B V T 2"],
        image_hw: tuple[int, int],
        init: int = 2,
        step: int = 1,
    ) -> tuple[DecoderMemory, Float[Tensor, "B V H W 7"]]:
        """:meth:`build_memory` over same-size views, plus the raw pointmaps of the memory pass (for training)."""
        V = x_enc.shape[1]
        memory, pointmaps = self._build_memory([x_enc[:, i] for i in range(V)], [pos[:, i] for i in range(V)], init,
                                               step, image_hw)
        return memory, torch.stack(pointmaps, dim=1)

    def _build_memory(
        self, x_enc: Sequence[Tensor], pos: Sequence[Tensor], init: int, step: int, image_hw: tuple[int, int] | None
    ) -> tuple[DecoderMemory, list[Tensor]]:
        """The memory schedule; with ``image_hw`` also each image's memory-pass pointmap ``(B, H, W, 7)``."""
        memory: DecoderMemory | None = None
        pointmaps: list[Tensor] = []
        start = 0
        for size in memory_schedule(len(x_enc), init, step):
            new_x, new_pos = x_enc[start : start + size], pos[start : start + size]
            if image_hw is None:
                memory = self.must3r_decoder.update_memory(new_x, new_pos, memory)
            else:
                memory, new = self.must3r_decoder.update_memory_with_pointmaps(new_x, new_pos, memory,
                                                                               [image_hw] * size)
                pointmaps.extend(new)
            start += size
        if memory is None:
            raise ValueError("cannot build a memory from zero images")
        return memory, pointmaps

    def panoptic_features(
        self,
        imgs: Float[Tensor, "V 3 H W"],
        x_enc: Float[Tensor, "V T De"],
        pos: Int[Tensor, "V T 2"],
        y_dec: Float[Tensor, "V T Dd"],
    ) -> tuple[Float[Tensor, "V C16 h w"], Float[Tensor, "V Cm H2 W2"]]:
        """DINOv2 tokens, then fusion head: frame tokens and mask features in storage orientation."""
        x_dino = self.dino_encoder(imgs)
        return self.panoptic_decoder.view_features(x_enc, y_dec, x_dino, pos, imgs)

    # -- training-mode forward ------------------------------------------------------------------------------------

    def forward(
        self,
        imgs: Float[Tensor, "B V 3 H W"],
        class_embeddings: Float[Tensor, "K L"],
        *,
        memory_pass_pointmaps: bool = False,
        panoptic: bool = True,
    ) -> TrainingOutput:
        """Training-mode forward over ``B`` scenes of ``V`` same-size views (official ``PanSt3R.forward``).

        ``memory_pass_pointmaps``: also return the pointmaps of the memory pass (training supervision; the other
        outputs are unchanged). ``panoptic=False``: the MUSt3R part only (DINOv2 and the panoptic decoder are not
        run; ``panoptic`` of the output is None), for training the geometry first, as MUSt3R precedes PanSt3R.
        """
        B, V, _, H, W = imgs.shape
        check_image_size(H, W, self.config.patch_size)
        flat = imgs.reshape(B * V, *imgs.shape[2:])
        with _grad_if_trainable(self.must3r_encoder):
            x_enc, pos = self.encode(flat)
        T = x_enc.shape[1]
        x_enc_b, pos_b = x_enc.reshape(B, V, T, -1), pos.reshape(B, V, T, 2)
        with _grad_if_trainable(self.must3r_decoder):
            pointmaps_memory = None
            if memory_pass_pointmaps:
                memory, pointmaps_memory = self.build_memory_with_pointmaps(x_enc_b, pos_b, (H, W))
            else:
                memory = self.build_memory([x_enc_b[:, i] for i in range(V)], [pos_b[:, i] for i in range(V)])
            kv = self.must3r_decoder.memory_kv(memory)
            pointmaps, y_dec = self.must3r_decoder.render(x_enc_b, pos_b, kv, (H, W))
        tokens = {"encoder_tokens": x_enc_b, "decoder_tokens": y_dec}
        if self.descriptor_head is not None:
            desc = self.descriptor_head(x_enc, y_dec.reshape(B * V, T, -1), flat)
            tokens["descriptors_raw"] = desc.reshape(B, V, *desc.shape[1:])
        if not panoptic:
            return TrainingOutput(panoptic=None, pointmaps_raw=pointmaps, pointmaps_memory_raw=pointmaps_memory,
                                  **tokens)
        with _grad_if_trainable(self.dino_encoder):
            x_dino = self.dino_encoder(flat)
        f16, mask_f = self.panoptic_decoder.view_features(x_enc, y_dec.reshape(B * V, T, -1), x_dino, pos, flat)
        f16 = f16.reshape(B, V, *f16.shape[1:])
        mask_f = mask_f.reshape(B, V, *mask_f.shape[1:])
        out = self.panoptic_decoder.mask_transformer(
            [f16[:, i] for i in range(V)], [mask_f[:, i] for i in range(V)], [H > W] * V, class_embeddings
        )
        panoptic = _panoptic_in_image_orientation(panoptic_from_mask_transformer(out), H, W)
        return TrainingOutput(panoptic=panoptic, pointmaps_raw=pointmaps, pointmaps_memory_raw=pointmaps_memory,
                              **tokens)

    # -- inference ------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def forward_inference(
        self,
        images: Sequence[Tensor],
        class_embeddings: Float[Tensor, "K L"],
        options: InferenceOptions | None = None,
    ) -> InferenceOutput:
        """Segment and reconstruct a collection of views (official ``forward_inference_multi_ar``).

        Args:
            images: per view ``(3, H_v, W_v)`` in [-1, 1]; sides multiples of the patch size. Device and dtype of
                the computation come from the first image.
            class_embeddings: ``(K, lang_dim)`` text embeddings of the class names.
            options: keyframes, batching, autocast, output device, progress, portrait handling.
        """
        opts = options or InferenceOptions()
        if len(images) == 0:
            raise ValueError("forward_inference needs at least one image")
        for img in images:
            check_image_size(int(img.shape[-2]), int(img.shape[-1]), self.config.patch_size)
        if opts.portrait is PortraitHandling.AS_TRAINED:
            return self._forward_inference(images, class_embeddings, opts)
        rotated = [_is_portrait(img) for img in images]
        fed = [torch.rot90(img, 1, dims=(-2, -1)) if r else img for img, r in zip(images, rotated)]
        out = self._forward_inference(fed, class_embeddings, opts)
        world_rotated = rotated[out.keyframes[0]]
        views = [
            unrotate_view(pm, m, world_rotated) if r else (_rotate_world(pm) if world_rotated else pm, m)
            for pm, m, r in zip(out.pointmaps_raw, out.mask_logits, rotated)
        ]
        back = lambda maps: None if maps is None else tuple(  # noqa: E731  (pixels of a rotated view, rotated back)
            torch.rot90(m, -1, dims=(0, 1)) if r else m for m, r in zip(maps, rotated))
        return dataclasses.replace(
            out, pointmaps_raw=tuple(v[0] for v in views), mask_logits=tuple(v[1] for v in views),
            descriptors=back(out.descriptors), descriptor_conf=back(out.descriptor_conf),
        )

    def _forward_inference(
        self, images: Sequence[Tensor], class_embeddings: Tensor, opts: InferenceOptions
    ) -> InferenceOutput:
        device = images[0].device
        out_device = opts.output_device or device
        cache = self._encode_all(images, opts, device, out_device)
        descriptors = torch.stack([torch.nn.functional.normalize(x.float(), dim=-1).mean(0) for x in cache.x_enc])
        policy = opts.keyframes or default_keyframe_policy(len(images))
        keyframes = policy.select(descriptors)
        _check_keyframes(keyframes, len(images))
        logger.info("%d keyframes of %d views (%s), world frame = view %d", len(keyframes), len(images),
                    type(policy).__name__, keyframes[0])
        amp = _autocast(device, opts.autocast_dtype)
        with amp:
            memory = self.build_memory(
                [cache.x_enc[i][None].to(device) for i in keyframes],
                [cache.pos[i][None].to(device) for i in keyframes],
                opts.memory_init,
                opts.memory_step,
            )
            kv = self.must3r_decoder.memory_kv(memory)
        del memory
        pointmaps: dict[int, Tensor] = {}
        descriptors: dict[int, Tensor] = {}
        masks: dict[int, Tensor] = {}
        frame_tokens: dict[int, Tensor] = {}
        mask_feats: dict[int, Tensor] = {}
        rendered = _Rendered(pointmaps, descriptors)
        for batch in self._batches(keyframes, images, opts, "keyframes"):
            self._render_batch(batch, images, cache, kv, opts, rendered, frame_tokens, mask_feats, out_device)
        decoded = self.panoptic_decoder.mask_transformer(
            [frame_tokens[i] for i in keyframes],
            [mask_feats[i] for i in keyframes],
            [_is_portrait(images[i]) for i in keyframes],
            class_embeddings.to(device),
            with_aux=False,
        )
        for i, m in zip(keyframes, decoded.final.mask_logits):
            masks[i] = _to_image_orientation(m[0], images[i]).to(out_device)
        del frame_tokens, mask_feats
        others = [i for i in range(len(images)) if i not in set(keyframes)]
        for batch in self._batches(others, images, opts, "other views"):
            feats: dict[int, Tensor] = {}
            self._render_batch(batch, images, cache, kv, opts, rendered, {}, feats, out_device)
            pred = self.panoptic_decoder.mask_transformer.predict(
                decoded.queries, [feats[i] for i in batch], class_embeddings.to(device)
            )
            for i, m in zip(batch, pred.mask_logits):
                masks[i] = _to_image_orientation(m[0], images[i]).to(out_device)
        return InferenceOutput(
            pointmaps_raw=tuple(pointmaps[i] for i in range(len(images))),
            mask_logits=tuple(masks[i] for i in range(len(images))),
            class_logits=decoded.final.class_logits[0].to(out_device),
            queries=decoded.queries[:, 0].to(out_device),
            keyframes=tuple(keyframes),
            **_activated_descriptors(descriptors, len(images)),
        )

    def _encode_all(
        self, images: Sequence[Tensor], opts: InferenceOptions, device: torch.device, out_device: torch.device
    ) -> _ViewCache:
        cache = _ViewCache(x_enc=[torch.empty(0)] * len(images), pos=[torch.empty(0)] * len(images))
        for batch in self._batches(list(range(len(images))), images, opts, "encoder"):
            x, pos = self.encode(torch.stack([images[i] for i in batch]).to(device))
            for j, i in enumerate(batch):
                cache.x_enc[i] = x[j].to(out_device)
                cache.pos[i] = pos[j].to(out_device)
        return cache

    def _render_batch(
        self,
        batch: list[int],
        images: Sequence[Tensor],
        cache: _ViewCache,
        kv: MemoryKV,
        opts: InferenceOptions,
        rendered: _Rendered,
        frame_tokens: dict[int, Tensor],
        mask_feats: dict[int, Tensor],
        out_device: torch.device,
    ) -> None:
        """Render same-size views against the memory; store pointmaps, descriptors and (device-side) head
        features."""
        device = kv.keys[0].device
        imgs = torch.stack([images[i] for i in batch]).to(device)
        x_enc = torch.stack([cache.x_enc[i] for i in batch]).to(device)
        pos = torch.stack([cache.pos[i] for i in batch]).to(device)
        with _autocast(device, opts.autocast_dtype):
            pm, y_dec = self.must3r_decoder.render(x_enc[None], pos[None], kv, tuple(imgs.shape[-2:]))
            x_dino = self.dino_encoder(imgs)
        f16, mask_f = self.panoptic_decoder.view_features(x_enc, y_dec[0], x_dino, pos, imgs)
        desc = None if self.descriptor_head is None else self.descriptor_head(x_enc, y_dec[0], imgs)
        for j, i in enumerate(batch):
            rendered.pointmaps[i] = pm[0, j].float().to(out_device)
            if desc is not None:
                rendered.descriptors[i] = desc[j].to(out_device)
            frame_tokens[i] = f16[j : j + 1]
            mask_feats[i] = mask_f[j : j + 1]

    def _batches(
        self, indices: list[int], images: Sequence[Tensor], opts: InferenceOptions, desc: str
    ) -> Iterable[list[int]]:
        """Consecutive groups of at most ``batch_size`` same-size views, keeping the order of ``indices``, with a progress bar."""
        batches: list[list[int]] = []
        for i in indices:
            if batches and len(batches[-1]) < opts.batch_size and images[batches[-1][0]].shape == images[i].shape:
                batches[-1].append(i)
            else:
                batches.append([i])
        return tqdm(batches, desc=desc, disable=not opts.progress or not batches, leave=False)


def unrotate_view(
    pointmaps_raw: Float[Tensor, "W H 7"], mask_logits: Float[Tensor, "Q W2 H2"], world_rotated: bool
) -> tuple[Float[Tensor, "H W 7"], Float[Tensor, "Q H2 W2"]]:
    """Results of a view fed as ``rot90(img, 1)`` back in the view's own pixels and camera frame.

    Pixel (u', v') of the rotated image is pixel (u, v) = (W - 1 - v', u') of the original, so with the principal
    point at the centre the rotated camera sees x' = y, y' = -x: ``p = R p'`` with ``R = R_CAM_ROTATED``. Local
    points are rotated back; global points too when the world frame (keyframe #0) was itself a rotated view. The
    NORM_EXP activation preserves norms, so rotating the raw channels rotates the activated points.
    """
    pm = torch.rot90(pointmaps_raw, -1, dims=(0, 1))
    R = R_CAM_ROTATED.to(pm)
    local = pm[..., 3:6] @ R.T
    glob = pm[..., 0:3] @ R.T if world_rotated else pm[..., 0:3]
    return torch.cat([glob, local, pm[..., 6:]], dim=-1), torch.rot90(mask_logits, -1, dims=(-2, -1))


def _rotate_world(pointmaps_raw: Tensor) -> Tensor:
    """Global points of an unrotated view when the world frame is a rotated keyframe's camera."""
    glob = pointmaps_raw[..., 0:3] @ R_CAM_ROTATED.to(pointmaps_raw).T
    return torch.cat([glob, pointmaps_raw[..., 3:]], dim=-1)


def _grad_if_trainable(module: nn.Module):
    """No autograd graph through a component whose parameters are all frozen (official ``requires_grad`` flags)."""
    trainable = any(p.requires_grad for p in module.parameters())
    return nullcontext() if trainable else torch.no_grad()


def _check_keyframes(keyframes: list[int], num_views: int) -> None:
    if not keyframes or len(set(keyframes)) != len(keyframes) or not all(0 <= k < num_views for k in keyframes):
        raise ValueError(f"invalid keyframes {keyframes} for {num_views} views: need distinct indices in range")


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else nullcontext()


def _is_portrait(img: Tensor) -> bool:
    return int(img.shape[-2]) > int(img.shape[-1])


def _to_image_orientation(mask: Tensor, img: Tensor) -> Tensor:
    """Undo the transposed storage of portrait views (official ``landscape_only``): ``(..., W/2, H/2)`` -> H/2 x W/2."""
    H, W = int(img.shape[-2]), int(img.shape[-1])
    return _orient(mask, H, W)


def _orient(mask: Tensor, H: int, W: int) -> Tensor:
    if H != W and tuple(mask.shape[-2:]) == (W // 2, H // 2):
        return mask.transpose(-1, -2)
    return mask


def _panoptic_in_image_orientation(p: PanopticOutput, H: int, W: int) -> PanopticOutput:
    return PanopticOutput(
        class_logits=p.class_logits,
        mask_logits=_orient(p.mask_logits, H, W),
        aux=tuple(AuxPrediction(a.class_logits, _orient(a.mask_logits, H, W)) for a in p.aux),
        queries=p.queries,
    )


__all__ = ["InferenceOptions", "PanSt3R", "PanopticDecoder", "PortraitHandling", "unrotate_view"]
