"""SMC samplers for static models: tempering, and a sequence of targets (data annealing).

Tempering (Neal 2001; Del Moral, Doucet & Jasra 2006) moves particles from the
prior to the posterior through γ_β(x) = p(x) L(x)^β, 0 = β_0 < ... < β_K = 1,
where L(x) is the likelihood of the observations (with all factors). Each
stage picks β_{k+1} by bisection so that the ESS of the incremental weights
(β_{k+1} - β_k) log L(x) is `target_ess`·N (Jasra et al. 2011), resamples, and
moves the particles with an `inference.mcmc.kernels` kernel on
`ppl.Tempered(model, β_{k+1}, observed)`, the generative function whose density
is γ_{β_{k+1}}, so that the moves leave it invariant. Then
log Ẑ = Σ_k log mean_i exp((β_{k+1} - β_k) log L(x_i)).

The default move is HMC tuned per stage from the particles (`moves.AdaptiveHMC`):
mass matrix from their variance, step size towards an acceptance rate, as many
moves as it takes the particles to jump their own spread. Waste-free SMC (Dau &
Chopin 2022) is an option. Stages whose moves accept almost nothing, or leave the
particles where they were, are recorded (`TemperingResult.stuck`) and warned about.

A sequence of targets (`anneal`) is the same model under a sequence of argument
values, args_0, ..., args_K (stacked along a leading axis): for data annealing,
a mask that lets in more observations at each stage (`dist.X(...).mask(m) @ "y"`);
for a user-chosen temperature schedule, a β argument. The incremental weight
is the `update` weight from args_k to args_{k+1}.
"""

from .moves import AdaptiveHMC, KernelMoves, MoveReport
from .result import TemperingResult, TemperingWarning
from .samplers import anneal, temper

__all__ = ["AdaptiveHMC", "KernelMoves", "MoveReport", "TemperingResult", "TemperingWarning", "anneal", "temper"]
