"""OpenMP's wait policy for the processes this package starts (before torch loads its OpenMP runtime).

torch's CPU wheel runs its parallel ops on GNU OpenMP, whose idle workers spin for milliseconds after each op by
default. The compiled rasteriser runs its kernels on its own threads right after torch ops (`splat.rasterize_numba`),
and on two cores a spinning OpenMP worker takes the core its second unit needs: with two threads, the kernels ran
1.1x faster than on one instead of 1.9x (20k Gaussians, 256x192), and a forward + backward took 36 ms instead of
21 ms. With the passive policy idle workers sleep at once; model inference (`scripts/evaluate_model.py`, two
threads) kept its speed, and the plain-torch reference rasteriser lost 10-20 % (numbers in `splat/design.md`).

Only a variable set before torch is imported counts (libgomp reads it when it loads), so the console command sets it
first thing; a value the user set is kept. Processes that import torch before this package (`ns-train`) keep
OpenMP's default: start them with `OMP_WAIT_POLICY=PASSIVE` to get the same effect (README, "2. nerfstudio").
"""

from __future__ import annotations

import os

WAIT_POLICY = "PASSIVE"


def quiet_openmp_waits() -> None:
    """Set `OMP_WAIT_POLICY=PASSIVE` unless the environment already sets it. Call before `import torch`."""
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
