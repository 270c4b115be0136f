"""Result and option types of the multi-view mask merges (method.md section 3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from jaxtyping import Float, Int
from torch import Tensor

WeightMode = Literal["exact", "mask_res"]
"""How the QUBO weight matrix is built. ``"exact"``: soft masks bilinearly upsampled to the image size, as the
official ``weight_from_masks`` does (the default, and what the parity fixture checks). ``"mask_res"``: the same
sums on the mask-resolution probabilities (4x fewer pixels, an approximation; the benchmark reports its error)."""


@dataclass(frozen=True)
class Segment:
    """One entry of COCO-panoptic ``segments_info``, plus the scores the merges compute."""

    id: int
    """Segment id in ``MergedPanoptic.panoptic`` (1..n, consecutive; 0 is void). The same in every view."""
    category_id: int
    """Index into the class axis of the class logits (``argmax_c sigmoid(logit_qc)``)."""
    isthing: bool
    """Countable object. All classes are things unless the caller passes an ``isthing`` table (official behaviour)."""
    score: float
    """``class_prob * mask_conf``: the quantity the QUBO void rule thresholds."""
    query_id: int
    """Index of the query (into the Q axis of the inputs) that made this segment. For fused stuff segments, the
    lowest of the fused queries. (The official QUBO output stores the index within the selected subset instead.)"""
    area: int
    """Number of pixels with this id, summed over all views."""
    class_prob: float
    """``max_c sigmoid(logit_qc)`` of the query."""
    mask_conf: float
    """Mean of ``MergedPanoptic.confidence`` over the segment's pixels (all views)."""


@dataclass(frozen=True)
class MergedPanoptic:
    """Per-view panoptic id maps whose ids name the same object in every view (one query = one object)."""

    panoptic: Int[Tensor, "V H W"]
    """int32 segment id per pixel, 0 = void."""
    confidence: Float[Tensor, "V H W"]
    """Soft mask probability of the winning query at each pixel. Void pixels: the standard merges write their
    ``void_confidence``; QUBO keeps the best selected mask's probability (as the official code does)."""
    segments: tuple[Segment, ...]
    """One entry per non-zero id, in id order."""


@dataclass(frozen=True)
class StandardConfig:
    """Options of the Mask2Former-style merge done jointly over all views (official ``panoptic_inference_v2``)."""

    cls_threshold: float = 0.1
    """Queries whose best class probability is not above this are discarded first."""
    mask_threshold: float = 0.25
    """A pixel joins its winning query's segment only where that query's mask probability reaches this."""
    overlap_threshold: float = 0.5
    """A query is kept if (its won pixels above ``mask_threshold``) / (its pixels >= 0.5) reaches this."""
    niters: int = 2
    """Rounds of argmax-and-filter; later rounds hand the pixels of rejected queries to kept ones."""
    void_confidence: float = 0.1
    """Confidence written at void pixels."""


STANDARD_V1 = StandardConfig(mask_threshold=0.5, overlap_threshold=0.8, niters=1)
"""Official ``panoptic_inference_v1``: the paper's "w/o QUBO" baseline."""
STANDARD_V2 = StandardConfig()
"""Official ``panoptic_inference_v2``: the default of the v2 checkpoint."""


@dataclass(frozen=True)
class QuboConfig:
    """Options of the QUBO merge (paper Eq. 3-4; official ``panoptic_inference_qubo``)."""

    penalty: float = 1.0
    """Overlap weight: the objective's lambda_p is ``1 + penalty`` (official default 1, so lambda_p = 2)."""
    lambda_reg: float = 1e-3
    """Weight of the ``mean(x)`` sparsity term of the official energy."""
    weights: WeightMode = "exact"
    """Weight-matrix mode, see ``WeightMode``."""
    prob_threshold: float = 0.01
    """Selected instances with ``class_prob * mask_conf`` below this become void."""
    exact_max_queries: int = 24
    """Solve exactly (exhaustive, meet in the middle) when at most this many queries stay undecided after the
    exact persistency reduction; otherwise anneal."""
    num_restarts: int = 32
    """Annealing chains, run side by side (the official code runs 20 one after the other)."""
    num_steps: int = 500
    """Single-flip proposals per chain. The official 10,000 is not needed here: annealing only seeds the local
    searches that follow."""
    t_start: float = 0.1
    """Initial annealing temperature (official T0 = 0.5, mostly a random walk for energies normalised to [0, 1])."""
    t_end: float = 1e-4
    """Final annealing temperature (official T_end); the schedule is geometric."""
    num_pair_polish: int = 8
    """The best this many distinct annealed states go on to pair flips and iterated local search."""
    ils_rounds: int = 30
    """Rounds of iterated local search (kick, descend, keep if lower)."""
    ils_perturbations: int = 64
    """Kicked copies of each state per round."""
    ils_flips: int = 6
    """Random bits flipped by one kick."""
