"""The SigLIP tokenizer: ``transformers.SiglipTokenizer`` called with ``padding="max_length", truncation=True``.

Source: transformers ``models/siglip/tokenization_siglip.py`` (the same in 4.57 and 5.x; checked against both on the
test fixture). For one text:

1. ``"▁" + text`` (any ``▁`` in the text read as a space), then the big_vision canonicalisation: lowercase when
   ``do_lower_case``, ASCII punctuation removed, whitespace runs collapsed to one space, stripped;
2. sentencepiece pieces of ``unk_token + canonical`` with the pieces of ``unk_token`` alone dropped from the front
   (how transformers keeps the word-start marker; the model's own normaliser runs inside sentencepiece);
3. truncated to ``max_length - 1`` pieces, ``eos_token`` appended, padded with ``pad_token`` to ``max_length``.

Texts that contain a special token (``</s>``, ``<unk>``) are refused: transformers splits them out as single ids,
which this tokenizer does not reproduce.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm
from jaxtyping import Int64

SPIECE_UNDERLINE = "\u2581"
_PUNCTUATION = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True)
class SiglipTokenizerConfig:
    """The ``tokenizer_config.json`` settings that change the ids; defaults are ``SiglipTokenizer``'s."""

    do_lower_case: bool = True
    """Lowercase before tokenising."""
    model_max_length: int = 64
    """Every text is padded (or truncated) to this many tokens."""
    eos_token: str = "</s>"
    """Appended to every text."""
    pad_token: str = "</s>"
    """Fills the padding."""
    unk_token: str = "<unk>"
    """Unknown piece (also the prefix trick of step 2)."""
    return_attention_mask: bool = True
    """Whether the tokenizer returns an attention mask (``"attention_mask" in model_input_names``); the official
    SigLIP folders list only ``input_ids``, so their text model attends to the padding."""


def canonicalize_text(text: str, do_lower_case: bool) -> str:
    """big_vision's text canonicalisation as ``SiglipTokenizer.canonicalize_text`` applies it."""
    if do_lower_case:
        text = text.lower()
    text = text.translate(_PUNCTUATION)
    return re.sub(r"\s+", " ", text).strip()


class SiglipTokenizer:
    """Token ids of texts for the SigLIP text tower (see the module docstring for the exact steps)."""

    def __init__(self, spiece_model: Path, config: SiglipTokenizerConfig) -> None:
        """``spiece_model``: the folder's ``spiece.model``; raises ValueError when it cannot be read or lacks a
        special token of ``config``."""
        self.config = config
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(str(spiece_model))
        except (OSError, RuntimeError) as err:
            raise ValueError(f"cannot read the sentencepiece model {spiece_model}: {err}") from None
        ids = {}
        for name in ("eos_token", "pad_token", "unk_token"):
            token = getattr(config, name)
            index = self.sp.PieceToId(token)
            if self.sp.IdToPiece(index) != token:
                raise ValueError(f"{name} {token!r} is not a piece of {spiece_model}")
            ids[name] = index
        self.eos_id, self.pad_id = ids["eos_token"], ids["pad_token"]
        self.unk_pieces = len(self.sp.EncodeAsIds(config.unk_token))
        self.special_tokens = (config.eos_token, config.pad_token, config.unk_token)

    @property
    def max_length(self) -> int:
        """Length of every encoded text."""
        return self.config.model_max_length

    def encode(self, text: str) -> list[int]:
        """Ids of one text, ``eos`` included, truncated, not padded."""
        found = [t for t in self.special_tokens if t in text]
        if found:
            raise ValueError(f"text {text!r} contains the special token {found[0]!r}; remove it")
        canonical = canonicalize_text(SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " "),
                                      self.config.do_lower_case)
        ids = self.sp.EncodeAsIds(self.config.unk_token + canonical)
        if len(ids) >= self.unk_pieces:
            ids = ids[self.unk_pieces:]
        return ids[: self.max_length - 1] + [self.eos_id]

    def __call__(self, texts: list[str]) -> tuple[Int64[np.ndarray, "K T"], Int64[np.ndarray, "K T"]]:
        """``(input_ids, attention_mask)`` of the texts, padded to ``max_length`` (1 = token, 0 = padding)."""
        input_ids = np.full((len(texts), self.max_length), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(texts), self.max_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = self.encode(text)
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        return input_ids, attention_mask
