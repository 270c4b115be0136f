"""Class sets from class names with SigLIP text embeddings from a local SigLIP folder (`classes`, `predict --siglip`).

    class_set = siglip_class_set(Path("siglip-base-patch16-224"), class_table.class_names())
    write_class_set_file(class_set, Path("classes.npz"))      # then: predict --classes classes.npz

The official checkpoints compare their queries against normalised SigLIP embeddings of "This is a photo of {name}."
(:mod:`panst3r_splat.core.text`); the result is the class-set file of CLI.md (``class_names``, ``class_embeddings``,
``class_ids``, ``isthing``). Dataset ids and thing flags come from the class table when every name is one of its
classes, else ids 1..K and every class a thing (the class-set file defaults).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from panst3r_splat.core.class_sets import ClassSet, class_set_for_names, save_class_set
from panst3r_splat.core.text import SIGLIP_PROMPT, siglip_class_embeddings
from panst3r_splat.pipeline.errors import UserError

log = logging.getLogger(__name__)


def read_names_file(path: Path) -> tuple[str, ...]:
    """Class names of a UTF-8 text file: one per line, surrounding spaces dropped, blank and ``#`` lines skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read the class-names file {path}: {err}; give a UTF-8 text file, one name a "
                        "line") from None
    names = tuple(s for s in (line.strip() for line in lines) if s and not s.startswith("#"))
    if not names:
        raise UserError(f"class-names file {path} lists no names; write one class name per line")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"class-names file {path} repeats {', '.join(map(repr, repeated[:5]))}; names must be unique")
    return names


def siglip_class_set(folder: Path, names: tuple[str, ...], *, prompt: str = SIGLIP_PROMPT,
                     device: torch.device = torch.device("cpu"), batch_size: int = 32) -> ClassSet:
    """The class set of ``names`` with SigLIP text embeddings from a local SigLIP folder (one-line `UserError`)."""
    start = time.perf_counter()
    try:
        embeddings = siglip_class_embeddings(folder, names, prompt, batch_size=batch_size, device=device)
        class_set = class_set_for_names(tuple(names), embeddings)
    except ValueError as err:  # SiglipFolderError included
        raise UserError(str(err)) from None
    log.info("classes: %d SigLIP embeddings (%d-d) from %s in %.1f s", len(class_set), embeddings.shape[1], folder,
             time.perf_counter() - start)
    return class_set


def check_class_set_out(out: Path) -> None:
    """Refuse, before any work, an ``--out`` that cannot be a class-set file."""
    out = Path(out)
    if out.suffix != ".npz":
        raise UserError(f"--out {out} must end in .npz (the class-set file is an .npz archive)")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name ending in .npz")


def write_class_set_file(class_set: ClassSet, out: Path) -> Path:
    """Write ``class_set`` as a ``--classes`` file at ``out`` (an ``.npz`` name; the parent folder is created)."""
    out = Path(out)
    check_class_set_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_class_set(class_set, out)
    return out


__all__ = ["check_class_set_out", "read_names_file", "siglip_class_set", "write_class_set_file"]
