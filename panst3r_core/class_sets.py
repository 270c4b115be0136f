"""Class sets, in one place: the class vocabulary a model segments with (``predict --classes``, a checkpoint's
own set, the built-in 21 classes) and its file format.

A :class:`ClassSet` holds names, text embeddings, dataset label ids and thing flags. Its file (``--classes``) is an
``.npz`` without pickles (:func:`load_class_set`, :func:`save_class_set`); ``pipeline/stages/classes.py`` writes one from a
local SigLIP model. The class table itself (ids, names, thing/stuff) is ``class_table``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import no_type_check
from pathlib import Path

import numpy as np
from jaxtyping import Bool, Float32, Int32

from panst3r_splat.core import class_table
from panst3r_splat.core.arrays import coerce_array
from panst3r_splat.core.atomic_io import atomic_output

log = logging.getLogger(__name__)


@no_type_check  # construction coerces and validates its inputs itself (__post_init__, one-line errors)
@dataclass(frozen=True)
class ClassSet:
    """A class vocabulary: names, text embeddings, dataset label ids and thing/stuff flags."""

    class_names: tuple[str, ...]
    class_embeddings: Float32[np.ndarray, "K D"]
    """Text embeddings (official: normalised SigLIP pooler outputs of "This is a photo of {name}.")."""
    class_ids: Int32[np.ndarray, "K"]
    """Dataset label id of each class, 1..255 (0 is void); written to ``pred_semantics``."""
    isthing: Bool[np.ndarray, "K"]

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.class_names)
        object.__setattr__(self, "class_names", names)
        K = len(names)
        emb = coerce_array("class_embeddings", self.class_embeddings, np.float32, 2)
        ids = coerce_array("class_ids", self.class_ids, np.int32, 1)
        thing = coerce_array("isthing", self.isthing, np.bool_, 1)
        object.__setattr__(self, "class_embeddings", emb)
        object.__setattr__(self, "class_ids", ids)
        object.__setattr__(self, "isthing", thing)
        if K == 0:
            raise ValueError("a class set needs at least one class")
        if len(set(names)) != K:
            raise ValueError("class names must be unique")
        if emb.shape[0] != K or ids.shape != (K,) or thing.shape != (K,):
            raise ValueError(
                f"class set sizes disagree: {K} names, class_embeddings {emb.shape}, class_ids {ids.shape}, "
                f"isthing {thing.shape}"
            )
        if not np.isfinite(emb).all() or (np.linalg.norm(emb, axis=1) == 0).any():
            raise ValueError("class_embeddings must be finite and non-zero")
        if ids.min() < 1 or ids.max() > 255 or len(np.unique(ids)) != K:
            raise ValueError("class_ids must be distinct integers in 1..255 (0 is void)")

    def __len__(self) -> int:
        return len(self.class_names)


def load_class_set(path: str | Path) -> ClassSet:
    """Read a ``--classes`` file: ``.npz`` with ``class_names`` (K,) str and ``class_embeddings`` (K, D) float,
    optional ``class_ids`` (K,) int (default index + 1) and ``isthing`` (K,) bool (default all True)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"class-set file {path} not found: give an .npz with class_names and class_embeddings")
    optional = ("class_names", "class_embeddings", "class_ids", "isthing")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in optional if k in npz.files}
    except ValueError as err:  # object arrays need pickle, which we refuse
        raise ValueError(f"cannot read class-set file {path} without pickle: {err}; store names as str arrays") from err
    except Exception as err:  # not a zip / truncated
        raise ValueError(f"cannot read class-set file {path}: {err}; give an .npz written by numpy.savez") from err
    missing = [k for k in ("class_names", "class_embeddings") if k not in data]
    if missing:
        raise ValueError(f"class-set file {path} lacks {', '.join(missing)}")
    names = data["class_names"]
    if names.ndim != 1 or names.dtype.kind != "U":
        raise ValueError(f"{path}: class_names must be a 1-D string array, got {names.dtype} {names.shape}")
    K = len(names)
    try:
        return ClassSet(
            class_names=tuple(names.tolist()),
            class_embeddings=data["class_embeddings"],
            class_ids=data.get("class_ids", np.arange(1, K + 1, dtype=np.int32)),
            isthing=data.get("isthing", np.ones(K, dtype=bool)),
        )
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def save_class_set(class_set: ClassSet, path: str | Path) -> None:
    """Write a class set in the ``--classes`` format at exactly ``path`` (no ``.npz`` appended), atomically."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
        np.savez(
            f,
            class_names=np.array(class_set.class_names, dtype=str),
            class_embeddings=class_set.class_embeddings,
            class_ids=class_set.class_ids,
            isthing=class_set.isthing,
        )


def _hashed_gaussians(seed: str, count: int) -> np.ndarray:
    """``count`` standard-normal numbers derived from SHA-256 of ``seed`` (Box-Muller), identical everywhere."""
    words: list[int] = []
    block = 0
    while len(words) < 2 * count:
        digest = hashlib.sha256(f"{seed}/{block}".encode()).digest()
        words.extend(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4))
        block += 1
    u = (np.array(words[: 2 * count], dtype=np.float64) + 0.5) / 2.0**32  # in (0, 1)
    u1, u2 = u[0::2], u[1::2]
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def builtin_class_embeddings(embedding_dim: int) -> Float32[np.ndarray, "K D"]:
    """Fixed L2-normalised stand-in text embeddings of the 21 built-in classes.

    These are not language embeddings: they are deterministic pseudo-random directions (SHA-256 of the class name,
    so identical on every machine and NumPy version), made orthonormal when ``embedding_dim >= 21``. The built-in
    model learns its projection of queries onto them, exactly as the official model projects onto SigLIP vectors.
    """
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
    rows = np.stack(
        [_hashed_gaussians(f"panst3r-splat builtin class {c.id} {c.name}", embedding_dim) for c in class_table.CLASSES]
    )
    if embedding_dim >= len(rows):
        q, r = np.linalg.qr(rows.T)  # Gram-Schmidt in class order
        rows = (q * np.sign(np.diag(r))[None, :]).T
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float32)


def builtin_class_set(embedding_dim: int = 768) -> ClassSet:
    """The project's class set: the 21 classes of ``class_table`` (ids 1..21, thing flags from the table) with the
    fixed embeddings of :func:`builtin_class_embeddings`."""
    return ClassSet(
        class_names=tuple(c.name for c in class_table.CLASSES),
        class_embeddings=builtin_class_embeddings(embedding_dim),
        class_ids=np.array([c.id for c in class_table.CLASSES], dtype=np.int32),
        isthing=np.array([c.isthing for c in class_table.CLASSES], dtype=bool),
    )


def class_set_for_names(names: tuple[str, ...], embeddings: np.ndarray) -> ClassSet:
    """A class set of ``names``: class-table ids and thing flags when every name is a table class, else ids 1..K and
    every class a thing. ValueError when the arrays disagree (see `ClassSet`)."""
    K = len(names)
    if all(n in class_table.CLASS_BY_NAME for n in names):
        ids = np.array([class_table.CLASS_BY_NAME[n].id for n in names], dtype=np.int32)
        isthing = np.array([class_table.CLASS_BY_NAME[n].isthing for n in names], dtype=bool)
    else:
        log.info("class names are not all in the class table: ids 1..%d, every class a thing", K)
        ids = np.arange(1, K + 1, dtype=np.int32)
        isthing = np.ones(K, dtype=bool)
    return ClassSet(class_names=names, class_embeddings=embeddings, class_ids=ids, isthing=isthing)


__all__ = ["ClassSet", "builtin_class_embeddings", "builtin_class_set", "class_set_for_names", "load_class_set",
           "save_class_set"]
