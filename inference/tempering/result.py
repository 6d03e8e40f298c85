"""What a tempering or annealing run returns, and the warning it raises when its moves did not do their job."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import numpy as np

import ppl
from ppl.display import tabulated

from ..draws import Draws, Posterior
from ..weighted import particle_draws

if TYPE_CHECKING:
    import arviz

__all__ = ["TemperingResult", "TemperingWarning", "warn_on_poor_moves"]

POOR_ACCEPTANCE = 0.1


class TemperingWarning(UserWarning):
    """An SMC sampler's stage whose moves accepted almost nothing or left the particles near where they started."""


@tabulated
class TemperingResult(eqx.Module):
    """Equally weighted particles from the final target, the evidence estimate, and each stage's record."""

    traces: ppl.Trace
    log_marginal: jax.Array
    schedule: jax.Array
    """The temperatures (tempering) or stage indices reached, padded with the last value."""
    n_stages: jax.Array
    acceptance: jax.Array
    """Each stage's mean acceptance probability of its moves."""
    failed: jax.Array
    n_moves: jax.Array
    """Moves each particle made at each stage."""
    jump: jax.Array
    """Each stage's mean squared jump of the particles in units of their variance, in the coordinate that moved least
    (NaN for a user's kernel)."""
    step_size: jax.Array
    """Each stage's HMC step size at its end (NaN for a user's kernel)."""
    stuck: jax.Array
    """Each stage whose moves accepted under 10% or whose jump stayed under its target (True: look at it)."""
    posterior: Posterior | None = None
    """The model, arguments and observations of the final target."""

    def log_marginal_likelihood(self) -> jax.Array:
        return self.log_marginal

    @property
    def choices(self) -> Any:
        return self.traces.choices

    def draws(self) -> Draws:
        """The particles' latents (equally weighted) as one chain of N draws."""
        return particle_draws(self.traces, self.posterior)

    def to_arviz(self, posterior_predictive: bool = False, key: jax.Array | None = None) -> arviz.InferenceData:
        """`draws().to_arviz(...)`: posterior, log_likelihood, observed_data, and posterior_predictive when asked."""
        return self.draws().to_arviz(posterior_predictive, key)

    def _tables(self) -> list:
        n_stages = int(self.n_stages)
        title = (f"TemperingResult: {self.traces.score.shape[0]} particles, {n_stages} stages, "
                 f"log Ẑ {float(self.log_marginal):.5g}"
                 + (" (failed)" if bool(self.failed) else ""))
        stages = [(i, float(self.schedule[i]), float(self.acceptance[i]), int(self.n_moves[i]), float(self.jump[i]),
                   float(self.step_size[i]), bool(self.stuck[i])) for i in range(n_stages)]
        return [(title, ["stage", "β or target", "acceptance", "moves", "jump", "step size", "stuck"], stages)]


def warn_on_poor_moves(result: TemperingResult) -> None:
    """A `TemperingWarning` naming the stages whose moves did poorly (a run inside a caller's jit is not checked)."""
    if isinstance(result.stuck, jax.core.Tracer) or result.stuck.ndim != 1:
        return
    n = int(result.n_stages)
    stuck = np.flatnonzero(np.asarray(result.stuck)[:n])
    if stuck.size:
        acceptance = np.asarray(result.acceptance)[stuck]
        shown = ", ".join(f"{i} (acceptance {a:.2f})" for i, a in zip(stuck[:5], acceptance[:5]))
        more = f" and {stuck.size - 5} more" if stuck.size > 5 else ""
        warnings.warn(
            f"the moves of {stuck.size} of {n} stages accepted under {POOR_ACCEPTANCE:.0%} or left the particles "
            f"near their start: stages {shown}{more}. The particles may not represent the target: use more "
            "particles, a higher target_ess (smaller steps between temperatures), more moves (n_mcmc or max_moves), "
            "or a kernel suited to the model (kernel=); result.acceptance and result.jump have every stage's",
            TemperingWarning, stacklevel=3)
