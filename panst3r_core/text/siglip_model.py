"""The SigLIP text tower in plain torch: ``SiglipTextModel`` of Hugging Face transformers, forward pass only.

Source: transformers ``models/siglip/modeling_siglip.py`` (``SiglipTextEmbeddings``, ``SiglipAttention``,
``SiglipMLP``, ``SiglipEncoderLayer``, ``SiglipTextModel``). Module and parameter names mirror the Hugging Face ones,
so a checkpoint's ``text_model.*`` keys load with the prefix removed. The official PanSt3R class embedding is the
L2-normalised ``pooler_output`` of this model (method.md section 1.8).

Shapes: ``K`` texts (one per class), ``T`` tokens (the padded length), ``D`` channels, ``P`` pooler output
(``projection_size``, = ``D`` in SigLIP).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

GELU_APPROXIMATIONS = {"gelu_pytorch_tanh": "tanh", "gelu_new": "tanh", "gelu": "none"}
"""The ``hidden_act`` values we implement (SigLIP uses ``gelu_pytorch_tanh``) and their ``F.gelu`` mode."""


@dataclass(frozen=True)
class SiglipTextConfig:
    """Sizes of the text tower; the defaults are ``transformers.SiglipTextConfig``'s (= siglip-base-patch16-224)."""

    vocab_size: int = 32000
    """Rows of the token embedding."""
    hidden_size: int = 768
    """Width ``D`` of the transformer."""
    intermediate_size: int = 3072
    """Width of the MLP."""
    num_hidden_layers: int = 12
    """Encoder layers."""
    num_attention_heads: int = 12
    """Heads of every self-attention (must divide ``hidden_size``)."""
    max_position_embeddings: int = 64
    """Learned positions; the longest token sequence."""
    hidden_act: str = "gelu_pytorch_tanh"
    """MLP activation, one of ``GELU_APPROXIMATIONS``."""
    layer_norm_eps: float = 1e-6
    """Epsilon of every layer norm."""
    projection_size: int | None = None
    """Output width of the pooler ``head``; None = ``hidden_size`` (configs written before transformers 4.48)."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                             f"{self.num_attention_heads}")
        if self.hidden_act not in GELU_APPROXIMATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not supported (known: "
                             f"{', '.join(GELU_APPROXIMATIONS)})")
        if self.projection_size is not None and (not isinstance(self.projection_size, int) or self.projection_size < 1):
            raise ValueError(f"projection_size must be a positive integer, got {self.projection_size!r}")

    @property
    def output_size(self) -> int:
        """Width of the pooler output (the class-embedding width)."""
        return self.projection_size or self.hidden_size


class SiglipTextEmbeddings(nn.Module):
    """Token embedding plus learned absolute position embedding."""

    def __init__(self, config: SiglipTextConfig) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)

    def forward(self, input_ids: Int[Tensor, "K T"]) -> Float[Tensor, "K T D"]:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.token_embedding(input_ids) + self.position_embedding(positions)[None]


class SiglipAttention(nn.Module):
    """Bidirectional multi-head self-attention with separate q/k/v/out projections (scale ``head_dim ** -0.5``)."""

    def __init__(self, config: SiglipTextConfig) -> None:
        super().__init__()
        D = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.q_proj = nn.Linear(D, D)
        self.k_proj = nn.Linear(D, D)
        self.v_proj = nn.Linear(D, D)
        self.out_proj = nn.Linear(D, D)

    def forward(self, x: Float[Tensor, "K T D"], key_mask: Bool[Tensor, "K T"] | None) -> Float[Tensor, "K T D"]:
        K, T, D = x.shape

        def heads(t: Tensor) -> Tensor:
            return t.view(K, T, self.num_heads, D // self.num_heads).transpose(1, 2)  # [K, heads, T, D/heads]

        mask = None if key_mask is None else key_mask[:, None, None, :]  # [K, 1, 1, T], True = attend
        out = F.scaled_dot_product_attention(heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)),
                                             attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(K, T, D))


class SiglipMLP(nn.Module):
    """``fc2(gelu(fc1(x)))``."""

    def __init__(self, config: SiglipTextConfig) -> None:
        super().__init__()
        self.approximate = GELU_APPROXIMATIONS[config.hidden_act]
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: Float[Tensor, "K T D"]) -> Float[Tensor, "K T D"]:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class SiglipEncoderLayer(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, config: SiglipTextConfig) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = SiglipAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = SiglipMLP(config)

    def forward(self, x: Float[Tensor, "K T D"], key_mask: Bool[Tensor, "K T"] | None) -> Float[Tensor, "K T D"]:
        x = x + self.self_attn(self.layer_norm1(x), key_mask)
        return x + self.mlp(self.layer_norm2(x))


class SiglipEncoder(nn.Module):
    """The stack of encoder layers (``encoder.layers.N``)."""

    def __init__(self, config: SiglipTextConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(SiglipEncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: Float[Tensor, "K T D"], key_mask: Bool[Tensor, "K T"] | None) -> Float[Tensor, "K T D"]:
        for layer in self.layers:
            x = layer(x, key_mask)
        return x


class SiglipTextTransformer(nn.Module):
    """The text tower; `forward` returns the pooler output (un-normalised)."""

    def __init__(self, config: SiglipTextConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = SiglipTextEmbeddings(config)
        self.encoder = SiglipEncoder(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.head = nn.Linear(config.hidden_size, config.output_size)

    def forward(self, input_ids: Int[Tensor, "K T"],
                attention_mask: Int[Tensor, "K T"] | None = None) -> Float[Tensor, "K P"]:
        """Pooler output: the final-normed hidden state of the **last** position (padding under max_length padding,
        as SigLIP was trained) through ``head``. ``attention_mask`` (1 = token, 0 = padding) hides padded keys, as
        transformers does when the tokenizer returns one; the official SigLIP tokenizer returns none."""
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"{input_ids.shape[1]} tokens exceed max_position_embeddings "
                             f"{self.config.max_position_embeddings}")
        key_mask = None if attention_mask is None else attention_mask.bool()
        hidden = self.encoder(self.embeddings(input_ids), key_mask)
        return self.head(self.final_layer_norm(hidden)[:, -1])
