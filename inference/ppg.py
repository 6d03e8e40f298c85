"""PaRIS particle Gibbs (Cardoso, Janati, Le Corff, Moulines & Olsson 2023): smoothing of additive functionals with
the bias of PaRIS at small N removed by a Markov chain of conditional sweeps.

Each iteration ℓ runs conditional PaRIS (`smc.conditional_paris`) with the current reference trajectory ζ_ℓ kept
among N particles, takes its estimate of E[Σ_t h_t | y], and draws ζ_{ℓ+1} by tracing a final particle back
through the sweep's backward draws. The references form a Markov chain that leaves the smoothing distribution
invariant, and the estimate is the average over the iterations after `burn_in`:

    res = pgibbs.ppg(key, model, args, obs, lambda x0, x1: x1, n_particles=16, n_backward=2,
                     num_iterations=50, burn_in=10)
    res.estimate, res.estimates

`step_score` is the additive functional of Fisher's identity, ∇_θ log p_θ(x_t, y_t | x_{t-1}), on which
`pgibbs.learn(..., method="ppg")` climbs the log-likelihood.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.display import tabulated, tree_rows

from . import inputs, smc
from ._jit import jit
from .progress import progress, progress_callback, shown
from .smc.dependence import dependent_outputs

__all__ = ["PPGResult", "check_params_free_carry", "ppg", "prefix_score", "score_sweep", "step_score"]


@tabulated
class PPGResult(NamedTuple):
    """The outcome of `ppg`."""

    estimate: Any
    """The smoothed expectation of the functional: the mean of `estimates` after `burn_in`."""
    estimates: Any
    """Each iteration's conditional PaRIS estimate, leaves (num_iterations, ...)."""
    log_marginal: jax.Array
    """Each iteration's conditional-SMC log Ẑ (-inf where the sweep failed and kept its reference)."""
    reference: dict
    """The last iteration's reference trajectory, a full choice map of the model."""

    def _tables(self) -> list:
        iterations = jax.tree.leaves(self.estimates)[0].shape[0]
        title = f"PPGResult: {iterations} sweeps, mean log Ẑ {float(np.mean(self.log_marginal)):.5g}"
        return [(title, ["functional", "smoothed expectation"], tree_rows(self.estimate))]


class _Settings(NamedTuple):
    config: smc.SMCConfig
    backward: smc.Backward
    num_iterations: int


@jit
def _ppg_program(key, model, args, observations, reference, functional, settings: _Settings, show):
    tick = progress_callback(settings.num_iterations, show)
    increment = smc.functional_increment(functional)

    def iteration(reference, inputs):
        i, k = inputs
        res, reference = smc.conditional_paris(k, model, args, observations, reference, increment,
                                               settings.backward, settings.config)
        tick(i)
        return reference, (res.estimate, res.log_marginal, res.bound_exceeded)

    n = settings.num_iterations
    reference, (estimates, log_marginal, exceeded) = jax.lax.scan(iteration, reference,
                                                                  (jnp.arange(n), jax.random.split(key, n)))
    return estimates, log_marginal, reference, jnp.any(exceeded)


def ppg(
    key: jax.Array,
    model: ppl.GenFn,
    args: tuple,
    observations: dict,
    functional: Callable[[Any, Any], Any],
    n_particles: int,
    n_backward: int = 2,
    num_iterations: int = 20,
    burn_in: int = 5,
    proposal: ppl.GenFn | None = None,
    log_density_bound: Callable[[Any, Any], jax.Array] | None = None,
    n_proposals: int = 16,
    progress_bar: bool = False,
) -> PPGResult:
    """PaRIS particle Gibbs: the smoothed expectation of Σ_t h(carry_{t-1}, carry_t) by `num_iterations`
    conditional PaRIS sweeps, averaged after `burn_in`.

    Args:
        key: a PRNG key.
        model: a state-space model whose carry is decided by the step's choices, its parameters given as
            arguments or observed (as in `smc.paris`).
        args: its arguments.
        observations: a choice map; the scan's block holds arrays with time first.
        functional: `functional(prev_carry, carry)` returns a pytree, h at one step (as in `smc.paris`).
        n_particles: N per sweep, the reference included (at least 2).
        num_iterations: sweeps; the first reference is a draw of `model.generate` given the observations.
        burn_in: sweeps whose estimates are left out of the average (the chain forgets its start within a few).
        n_backward: K, backward draws per particle and step.
        proposal: the filter's proposal, as in `smc.run`.
        log_density_bound: an upper bound of the step's log density over carries, for accept-reject backward
            draws (as in `smc.paris`); None for exact draws.
        n_proposals: accept-reject tries of a draw before its exact draw takes over.
        progress_bar: a tqdm bar advanced from inside the compiled program.

    Returns:
        A `PPGResult`. A sweep costs what one `smc.paris` run of N particles costs; the estimate's bias falls
        with the iterations where PaRIS's falls only with N (Cardoso et al. 2023, Theorem 3).
    """
    backward = smc.backward_settings(functional, n_backward, log_density_bound, n_proposals)
    num_iterations = inputs.count("num_iterations", num_iterations)
    burn_in = inputs.count("burn_in", burn_in, 0)
    if burn_in >= num_iterations:
        raise ValueError(f"burn_in ({burn_in}) leaves no iteration to average: make it less than "
                         f"num_iterations ({num_iterations})")
    config = smc.SMCConfig.of(inputs.count("n_particles", n_particles, 2), 1.0, record="none", proposal=proposal)
    args, observations = inputs.model_args(args), inputs.observations(observations)
    k_init, k_run = jax.random.split(key)
    reference = model.generate(k_init, observations, *args)[0].choices
    show = shown(progress_bar, key, args, observations)
    with progress(bool(show), num_iterations, "ppg"):
        estimates, log_marginal, reference, exceeded = _ppg_program(
            k_run, model, args, observations, reference, functional, _Settings(config, backward, num_iterations), show)
    smc.check_bound(exceeded)
    estimate = jax.tree.map(lambda x: jnp.mean(x[burn_in:], axis=0), estimates)
    return PPGResult(estimate, estimates, log_marginal, reference)


def _scan_args(space: ppl.StateSpace, prefix: dict, params: Any, args: tuple) -> tuple:
    """The scan's arguments as a function of the parameters, the prefix's choices given."""
    return space.generate_prefix(jax.random.key(0), prefix, (params, *args)).scan_args


def step_score(space: ppl.StateSpace, prefix: dict, params: Any, args: tuple) -> Callable:
    """∇_θ log p_θ(x_t, y_t | carry_{t-1}), Fisher's identity's additive functional, as a PaRIS increment for the
    model `model(params, *args)` with its prefix's choices `prefix` (the carry before step 0 is the scan's
    initial carry, which may depend on θ)."""

    def increment(prev_carry, choices_t, carry_t, t):
        def log_density(p):
            scan_args = _scan_args(space, prefix, p, args)
            carry = jax.tree.map(lambda first, c: jnp.where(t == 0, first, c), scan_args[0], prev_carry)
            return space.step.assess(choices_t, *space.step_args(scan_args, t, carry))[0]

        return jax.grad(log_density)(params)

    return increment


def prefix_score(space: ppl.StateSpace, prefix: dict, params: Any, args: tuple) -> Any:
    """∇_θ of the log density of the choices before the scan (zero where there are none)."""
    return jax.grad(lambda p: space.generate_prefix(jax.random.key(0), prefix, (p, *args)).weight)(params)


def check_params_free_carry(space: ppl.StateSpace, prefix: dict, params: Any, args: tuple, choices_0: Any) -> None:
    """Refuse a step whose carry depends on θ beyond its choices: `step_score` holds the carry fixed."""
    def carry(p):
        scan_args = _scan_args(space, prefix, p, args)
        trace, _ = space.step.generate(jax.random.key(0), choices_0, *space.step_args(scan_args, 0, scan_args[0]))
        return jax.tree.leaves(space.next_carry(trace.retval))

    if any(dependent_outputs(carry, params)):
        raise ValueError('learn(method="ppg") needs a step whose carry is its choices, not a function of the '
                         'parameters too (return the latent state itself); method="msc" has no such limit')


def score_sweep(key: jax.Array, model: ppl.GenFn, params: Any, args: tuple, observations: dict, reference: dict,
                n_particles: int, n_backward: int) -> tuple[Any, dict, jax.Array]:
    """One sweep of PaRIS particle Gibbs on the score: conditional PaRIS at `params` with `reference` kept, its
    estimate of Σ_t ∇_θ log p_θ(x_t, y_t | x_{t-1}) plus the prefix's score (Fisher's identity), the next
    reference and the sweep's log Ẑ. Iterated at a fixed θ, the average estimates ∇_θ log p_θ(y)."""
    space = ppl.state_space(model, (params, *args))
    prefix = ppl.choicemap.outside(reference, space.path)
    steps = ppl.choicemap.subconstraint(reference, space.path)
    check_params_free_carry(space, prefix, params, args, jax.tree.map(lambda x: x[0], steps))
    config = smc.SMCConfig.of(n_particles, 1.0, record="none")
    res, reference = smc.conditional_paris(key, model, (params, *args), observations, reference,
                                           step_score(space, prefix, params, args), smc.Backward(n_backward), config)
    score = jax.tree.map(jnp.add, res.estimate, prefix_score(space, prefix, params, args))
    return score, reference, res.log_marginal
