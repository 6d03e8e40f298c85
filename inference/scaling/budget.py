"""What a budget buys each method: one policy for the in-JAX `Reasoner` and the served `RemoteReasoner`.

The budget N is the number of trajectories sampled side by side:

    pf, bon, majority, weighted  N particles
    pgibbs                       min(N, 4) particles, max(1, N // min(N, 4)) conditional SMC sweeps
    beam                         N particles in sqrt(N) beams of sqrt(N) children if N is a square; else N beams of 1

    plan("pgibbs", 8)   # Plan(n_particles=4, n_sweeps=2, beam_width=4)
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["Plan", "plan"]

GIBBS_PARTICLES = 4
"""The most particles of a particle Gibbs sweep: the rest of the budget goes to more sweeps."""


class Plan(NamedTuple):
    """The sizes of one method's run at one budget."""

    n_particles: int
    """Trajectories side by side (in each sweep, for particle Gibbs)."""
    n_sweeps: int
    """Conditional SMC sweeps of particle Gibbs; 1 for the other methods."""
    beam_width: int
    """Prefixes kept after each step, each given n_particles // beam_width children; n_particles (nothing pruned)
    for every method but beam search."""


def plan(method: str, budget: int) -> Plan:
    """The plan of `method` at `budget`. Methods other than "pgibbs" and "beam" (including the engines'
    shared importance-sampling run) get `budget` particles; callers check the method's name."""
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive int, got {budget!r}")
    if method == "pgibbs":
        n = min(budget, GIBBS_PARTICLES)
        return Plan(n, max(1, budget // n), n)
    root = math.isqrt(budget)
    return Plan(budget, 1, root if method == "beam" and root * root == budget else budget)
