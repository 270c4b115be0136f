"""Class text embeddings as the official PanSt3R computes them (``model/text_encoder.py``, method.md section 1.8).

``embedding(name) = normalise(SiglipTextModel.pooler_output(tokenizer(prompt.format(name), padding="max_length")))``
with the prompt ``"This is a photo of {}."``; the released weights compare their queries against exactly these
vectors, so another prompt or padding shifts their class scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from panst3r_splat.core.text.siglip_folder import SiglipText, load_siglip_text

SIGLIP_PROMPT = "This is a photo of {}."
"""The official prompt template of the ``siglip`` text encoder."""


def format_prompts(names: list[str] | tuple[str, ...], prompt: str = SIGLIP_PROMPT) -> list[str]:
    """One text per class name (surrounding whitespace of a name dropped); ValueError on a bad template or name."""
    rest = prompt.replace("{}", "", 1)
    if "{}" not in prompt or "{" in rest or "}" in rest:
        raise ValueError(f"prompt {prompt!r} must contain '{{}}' exactly once (where the class name goes) and no "
                         "other braces")
    texts = []
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"class names must be non-empty strings, got {name!r}")
        texts.append(prompt.replace("{}", name.strip()))
    return texts


@torch.no_grad()
def embed_texts(text: SiglipText, texts: list[str], batch_size: int = 32) -> Float[Tensor, "K D"]:
    """L2-normalised pooler outputs of ``texts`` (float32, on the model's device), ``batch_size`` texts per call."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(text.model.parameters()).device
    starts = range(0, len(texts), batch_size)
    out = []
    for s in tqdm(starts, desc="class embeddings", unit="batch", leave=False, disable=len(starts) < 2):
        input_ids, attention_mask = text.tokenizer(texts[s : s + batch_size])
        mask = torch.from_numpy(attention_mask).to(device) if text.tokenizer.config.return_attention_mask else None
        out.append(text.model(torch.from_numpy(input_ids).to(device), mask))
    pooled = torch.cat(out)
    return pooled / pooled.norm(dim=-1, keepdim=True)


def siglip_class_embeddings(folder: str | Path, names: list[str] | tuple[str, ...], prompt: str = SIGLIP_PROMPT, *,
                            batch_size: int = 32, device: torch.device | str = "cpu") -> Float[np.ndarray, "K D"]:
    """Normalised SigLIP text embeddings of ``prompt.format(name)`` for every name, from a local SigLIP folder.

    Returns ``(K, D)`` float32, one row per name in order (D = 768 for siglip-base). Raises `SiglipFolderError` when
    the folder is unusable and ValueError on a bad prompt or name.
    """
    texts = format_prompts(names, prompt)
    text = load_siglip_text(folder, device)
    return embed_texts(text, texts, batch_size).cpu().numpy().astype(np.float32)
