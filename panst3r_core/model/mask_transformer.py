"""Mask transformer: queries shared across all views decode multi-view masks and open-vocabulary classes.

Follows panst3r/model/mask_transformer.py (adapted from Mask2Former), single feature level:

- keys/values: the frame tokens of *all* views concatenated (view-major, row-major inside a view) plus
  ``level_embed[0]``; the sine positional encoding of each view's grid is added to the keys (no view embedding, so
  cross-view association comes from the features alone);
- each layer: masked cross-attention (the previous prediction's mask logits, bilinearly resized to the token grid,
  mask out positions with ``sigmoid < 0.5``; rows masked everywhere are un-masked), self-attention, FFN; post-norm;
- heads on ``decoder_norm(q)``: class logits ``exp(s) * cos(lang_embed(q), t_c)``, mask logits
  ``mask_embed(q) . F_v`` per view; predictions after the initial queries and after every layer (deep supervision).

Views are passed as sequences so views of different sizes can be decoded jointly (as the official multi-aspect
inference does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from panst3r_splat.core.model.config import MaskTransformerConfig


@dataclass(frozen=True)
class QueryPrediction:
    """Predictions of one set of queries."""

    class_logits: Float[Tensor, "B Q K"]
    """Per-query class logits (sigmoid scores in training)."""
    mask_logits: tuple[Tensor, ...]
    """Per view, ``(B, Q, H2, W2)`` mask logits at stride 2 (in the views' storage orientation)."""


@dataclass(frozen=True)
class MaskTransformerOutput:
    """Final prediction, the deep-supervision predictions and the decoded queries."""

    final: QueryPrediction
    """After the last layer."""
    aux: tuple[QueryPrediction, ...]
    """From the initial queries and after every layer but the last (``aux_outputs``); empty without ``with_aux``."""
    queries: Float[Tensor, "Q B D"]
    """Query states after the last layer, before ``decoder_norm`` (``out_queries``), detached."""


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention over the queries, with the query positional embedding on q and k."""

    def __init__(self, d_model: int, nhead: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, query_pos: Tensor) -> Tensor:
        q = k = tgt + query_pos
        return self.norm(tgt + self.self_attn(q, k, value=tgt)[0])


class CrossAttentionLayer(nn.Module):
    """Post-norm masked cross-attention from the queries to the frame tokens."""

    def __init__(self, d_model: int, nhead: int) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, memory: Tensor, attn_mask: Tensor | None, pos: Tensor, query_pos: Tensor) -> Tensor:
        out = self.multihead_attn(query=tgt + query_pos, key=memory + pos, value=memory, attn_mask=attn_mask)[0]
        return self.norm(tgt + out)


class FFNLayer(nn.Module):
    """Post-norm ReLU feed-forward."""

    def __init__(self, d_model: int, dim_feedforward: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor) -> Tensor:
        return self.norm(tgt + self.linear2(F.relu(self.linear1(tgt))))


class MLP(nn.Module):
    """Linear layers with ReLU between them (``mask_embed``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def sine_position_embedding(h: int, w: int, num_pos_feats: int, device: torch.device) -> Float[Tensor, "T C"]:
    """DETR sine encoding of an h x w grid, normalised to 2*pi, channels ``[y | x]``, row-major tokens.

    Matches ``PositionEmbeddingSine(num_pos_feats, normalize=True)`` (temperature 10000): channel pairs
    (sin, cos) share a frequency.
    """
    eps, scale = 1e-6, 2 * math.pi
    y_embed = torch.arange(1, h + 1, dtype=torch.float32, device=device)[:, None].expand(h, w)
    x_embed = torch.arange(1, w + 1, dtype=torch.float32, device=device)[None, :].expand(h, w)
    y_embed = y_embed / (h + eps) * scale
    x_embed = x_embed / (w + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=device)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos_x = x_embed[:, :, None] / dim_t
    pos_y = y_embed[:, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, 0::2].sin(), pos_x[:, :, 1::2].cos()), dim=3).flatten(2)
    pos_y = torch.stack((pos_y[:, :, 0::2].sin(), pos_y[:, :, 1::2].cos()), dim=3).flatten(2)
    return torch.cat((pos_y, pos_x), dim=2).reshape(h * w, -1)


class MaskTransformer(nn.Module):
    """Queries, layers and prediction heads (state_dict keys as ``panoptic_decoder.mask_transformer``)."""

    def __init__(self, config: MaskTransformerConfig) -> None:
        super().__init__()
        self.config = config
        D = config.hidden_dim
        self.num_heads = config.num_heads
        self.self_attn_layers = nn.ModuleList(SelfAttentionLayer(D, config.num_heads) for _ in range(config.dec_layers))
        self.cross_attn_layers = nn.ModuleList(
            CrossAttentionLayer(D, config.num_heads) for _ in range(config.dec_layers)
        )
        self.ffn_layers = nn.ModuleList(FFNLayer(D, config.ff_dim) for _ in range(config.dec_layers))
        self.decoder_norm = nn.LayerNorm(D)
        self.query_feat = nn.Embedding(config.num_queries, D)
        self.query_embed = nn.Embedding(config.num_queries, D)
        self.level_embed = nn.Embedding(1, D)
        self.input_proj = nn.ModuleList(
            [nn.Sequential() if config.fpn_dim == D else nn.Conv2d(config.fpn_dim, D, kernel_size=1)]
        )
        self.lang_embed = nn.Linear(D, config.lang_dim)
        self.cls_logit_scale = nn.Parameter(torch.ones([]))
        self.mask_embed = MLP(D, D, config.mask_dim, 3)

    # -- keys -----------------------------------------------------------------------------------------------------

    def _keys(
        self, frame_tokens: Sequence[Tensor], portrait: Sequence[bool]
    ) -> tuple[Float[Tensor, "S B D"], Float[Tensor, "S B D"]]:
        """Concatenated key tokens and their positional encodings.

        For a portrait view with ``landscape_only`` the official code takes the encoding of the transposed
        (portrait) grid while the tokens are stored transposed (``get_pe_with_transpose``); reproduced as is.
        """
        src, pos = [], []
        npf = self.config.hidden_dim // 2
        for tokens, is_portrait in zip(frame_tokens, portrait):
            B, _, h, w = tokens.shape
            proj = self.input_proj[0](tokens).flatten(2).permute(2, 0, 1)  # [hw, B, D]
            src.append(proj + self.level_embed.weight[0][None, None])
            if self.config.landscape_only and is_portrait:
                pe = sine_position_embedding(w, h, npf, tokens.device)
            else:
                pe = sine_position_embedding(h, w, npf, tokens.device)
            pos.append(pe[:, None, :].to(proj.dtype).expand(-1, B, -1))
        return torch.cat(src, dim=0), torch.cat(pos, dim=0)

    # -- heads ----------------------------------------------------------------------------------------------------

    def predict(
        self,
        queries: Float[Tensor, "Q B D"],
        mask_features: Sequence[Tensor],
        class_embeddings: Float[Tensor, "K L"],
    ) -> QueryPrediction:
        """Class and per-view mask logits of ``queries`` on the given mask features (also how decoded queries are
        applied to new views)."""
        out = self.decoder_norm(queries).transpose(0, 1)  # [B, Q, D]
        lang = self.lang_embed(out)
        lang = lang / (lang.norm(dim=-1, keepdim=True) + 1e-7)
        text = class_embeddings.to(lang.dtype)
        text = text / text.norm(dim=-1, keepdim=True)
        class_logits = self.cls_logit_scale.exp() * lang @ text.unsqueeze(0).transpose(1, 2)
        mask_embed = self.mask_embed(out)  # [B, Q, Cm]
        masks = tuple(torch.einsum("bqc,bchw->bqhw", mask_embed, mf.to(mask_embed.dtype)) for mf in mask_features)
        return QueryPrediction(class_logits=class_logits, mask_logits=masks)

    def _attention_mask(self, mask_logits: Sequence[Tensor], grids: Sequence[tuple[int, int]]) -> Tensor:
        """``(B*heads, Q, S)`` boolean mask, True = not allowed, from the previous mask logits."""
        parts = [
            F.interpolate(m, size=hw, mode="bilinear", align_corners=False).flatten(2) for m, hw in zip(mask_logits, grids)
        ]
        mask = torch.cat(parts, dim=2).detach().sigmoid() < 0.5  # [B, Q, S]
        mask = mask & ~mask.all(dim=-1, keepdim=True)  # a query masked everywhere attends everywhere
        return mask.repeat_interleave(self.num_heads, dim=0)

    # -- forward --------------------------------------------------------------------------------------------------

    def forward(
        self,
        frame_tokens: Sequence[Tensor],
        mask_features: Sequence[Tensor],
        portrait: Sequence[bool],
        class_embeddings: Float[Tensor, "K L"],
        with_aux: bool = True,
    ) -> MaskTransformerOutput:
        """Decode the queries jointly over all views.

        Args:
            frame_tokens: per view ``(B, C16, h, w)`` stride-16 tokens (storage orientation).
            mask_features: per view ``(B, Cm, H2, W2)`` stride-2 features (storage orientation).
            portrait: per view, whether the image is taller than wide.
            class_embeddings: ``(K, lang_dim)`` text embeddings (normalised here).
            with_aux: keep the deep-supervision predictions (training); inference drops them, which bounds memory
                to one prediction over all views.
        """
        src, pos = self._keys(frame_tokens, portrait)
        grids = [tuple(t.shape[-2:]) for t in frame_tokens]
        B = src.shape[1]
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, B, 1)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, B, 1)
        pred = self.predict(output, mask_features, class_embeddings)
        aux: list[QueryPrediction] = []
        for layer in range(self.config.dec_layers):
            attn_mask = self._attention_mask(pred.mask_logits, grids)
            if with_aux:
                aux.append(pred)
            del pred
            output = self.cross_attn_layers[layer](output, src, attn_mask, pos, query_pos)
            output = self.self_attn_layers[layer](output, query_pos)
            output = self.ffn_layers[layer](output)
            pred = self.predict(output, mask_features, class_embeddings)
        return MaskTransformerOutput(final=pred, aux=tuple(aux), queries=output.detach())
