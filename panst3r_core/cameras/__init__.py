"""Classical cameras from matches (issue #17): intrinsics from local pointmaps, dense-descriptor matching, two-view
geometry, rotation averaging, translations and scales, refinement. See ``design.md``."""

from panst3r_splat.core.cameras.matching import MatchingOptions, PairMatches, match_descriptors
from panst3r_splat.core.cameras.solver import (
    CameraSolution,
    SolverOptions,
    solve_cameras,
    solve_cameras_from_descriptors,
)

__all__ = [
    "CameraSolution", "MatchingOptions", "PairMatches", "SolverOptions", "match_descriptors", "solve_cameras",
    "solve_cameras_from_descriptors",
]
