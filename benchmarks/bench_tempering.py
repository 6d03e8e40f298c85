"""Adaptive tempering with tuned HMC moves (`tempering.temper`) beside blackjax's adaptive tempered SMC.

Model: the conjugate Gaussian linear regression of `testbed.linear_regression` (β ~ N(0, I_D), y = Xβ + N(0, I),
120 observations, data from a fixed seed), whose evidence is known exactly. Both samplers use the same particle
count, target ESS 0.5 for the next temperature, systematic resampling, and HMC moves with 10 leapfrog steps:

- ours: the default move (diagonal mass matrix from the particles' variance, step size towards acceptance 0.65,
  as many moves as the jump criterion asks, at most 20);
- blackjax 1.7: `adaptive_tempered_smc` under `inner_kernel_tuning`, the inverse mass matrix from the particles
  at every stage (`inverse_mass_matrix_from_particles`), `--blackjax-moves` moves a stage (10, its default), and a
  fixed step size chosen before timing from 0.05 ... 1.6 as the one whose pilot run's mean acceptance is closest
  to 0.65 (its tuning hook sees the new particles, not the last step size, so the step cannot follow the
  acceptance from stage to stage as ours does; the pilots are not timed).

Each side's whole run (all stages) is one compiled program, called once to compile and then `--runs` times with
fresh keys, timed with the result blocked on. Printed: the mean and sd of log Ẑ over the runs and the z-score of
mean log Ẑ + var/2 against the exact log Z, the median seconds a run, and the variance of log Ẑ times the seconds
(the cost of a given precision); the ratio blackjax / ours is the goal (≥ 1).

    pip install blackjax==1.7.1
    python benchmarks/bench_tempering.py [--dimensions 6,20] [--particles 2000] [--runs 10] [--blackjax-moves 10]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from inference import tempering
from testbed import linear_regression

LEAPFROG, TARGET_ACCEPTANCE = 10, 0.65


def ours(prob, n):
    program = jax.jit(lambda key: tempering.temper(key, linear_regression.regression, (prob.X,), prob.observations,
                                                   n).log_marginal)
    return program


def blackjax_sampler(prob, n, n_moves, step_size):
    """blackjax's adaptive tempered SMC, HMC moves at `step_size` with the mass matrix from the particles: a program
    key -> (log Ẑ, the mean acceptance rate over the stages)."""
    import blackjax
    from blackjax.smc.tuning.from_particles import inverse_mass_matrix_from_particles

    d = prob.X.shape[1]

    def log_prior(beta):
        return jnp.sum(norm.logpdf(beta, 0.0, linear_regression.PRIOR_SD))

    def log_likelihood(beta):
        return jnp.sum(norm.logpdf(prob.y, prob.X @ beta, linear_regression.NOISE_SD))

    def parameters(mass):
        return {"step_size": jnp.array([step_size]), "inverse_mass_matrix": mass[None],
                "num_integration_steps": jnp.array([LEAPFROG])}

    sampler = blackjax.inner_kernel_tuning(
        smc_algorithm=blackjax.adaptive_tempered_smc, logprior_fn=log_prior, loglikelihood_fn=log_likelihood,
        mcmc_step_fn=blackjax.hmc.build_kernel(), mcmc_init_fn=blackjax.hmc.init,
        resampling_fn=blackjax.smc.resampling.systematic,
        mcmc_parameter_update_fn=lambda key, state, info: parameters(
            jnp.diag(inverse_mass_matrix_from_particles(state.particles))),
        initial_parameter_value=parameters(jnp.ones(d)), num_mcmc_steps=n_moves, target_ess=0.5)

    @jax.jit
    def program(key):
        k_init, k_run = jax.random.split(key)
        state = sampler.init(jax.random.normal(k_init, (n, d)) * linear_regression.PRIOR_SD)

        def more(carry):
            return carry[0].sampler_state.tempering_param < 1.0

        def stage(carry):
            state, log_z, acceptance, stages, key = carry
            key, k = jax.random.split(key)
            state, info = sampler.step(k, state)
            return (state, log_z + info.log_likelihood_increment,
                    acceptance + jnp.mean(info.update_info.acceptance_rate), stages + 1, key)

        _, log_z, acceptance, stages, _ = jax.lax.while_loop(more, stage, (state, 0.0, 0.0, 0, k_run))
        return log_z, acceptance / stages

    return program


def tuned_blackjax(prob, n, n_moves, steps=(0.05, 0.1, 0.2, 0.4, 0.8, 1.6)):
    """blackjax's sampler at the fixed step size (of `steps`) whose mean acceptance over a pilot run is closest to
    0.65, the rate ours aims at; the pilots are not timed."""
    pilots = {step: float(blackjax_sampler(prob, n, n_moves, step)(jax.random.key(99))[1]) for step in steps}
    step = min(pilots, key=lambda s: abs(pilots[s] - TARGET_ACCEPTANCE))
    program = blackjax_sampler(prob, n, n_moves, step)
    return lambda key: program(key)[0], step, pilots[step]


def measure(program, runs: int, seed: int) -> tuple[np.ndarray, float]:
    jax.block_until_ready(program(jax.random.key(seed)))  # compiles
    log_z, seconds = [], []
    for i in range(runs):
        t0 = time.perf_counter()
        log_z.append(float(jax.block_until_ready(program(jax.random.key(seed + 1 + i)))))
        seconds.append(time.perf_counter() - t0)
    return np.array(log_z), float(np.median(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dimensions", default="6,20")
    parser.add_argument("--particles", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--blackjax-moves", type=int, default=10)
    a = parser.parse_args()
    import blackjax

    print(f"jax {jax.__version__}, blackjax {blackjax.__version__}, {jax.devices()[0].platform}, "
          f"N = {a.particles}, {a.runs} runs")
    print("| D | sampler | mean log Ẑ − log Z | sd log Ẑ | z of mean + var/2 | s / run | var × s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for d in [int(x) for x in a.dimensions.split(",")]:
        prob = linear_regression.problem(d)
        blackjax_program, step, acceptance = tuned_blackjax(prob, a.particles, a.blackjax_moves)
        print(f"(D = {d}: blackjax's step size {step}, pilot acceptance {acceptance:.2f})")
        rows = {"ours": measure(ours(prob, a.particles), a.runs, 0),
                "blackjax": measure(blackjax_program, a.runs, 0)}
        cost = {name: log_z.var(ddof=1) * seconds for name, (log_z, seconds) in rows.items()}
        for name, (log_z, seconds) in rows.items():
            z = (log_z.mean() + log_z.var() / 2 - prob.log_evidence) / (log_z.std(ddof=1) / np.sqrt(len(log_z)))
            ratio = f"{cost['blackjax'] / cost['ours']:.2f}" if name == "ours" else ""
            print(f"| {d} | {name} | {log_z.mean() - prob.log_evidence:+.3f} | {log_z.std(ddof=1):.3f} | {z:+.2f} "
                  f"| {seconds:.3f} | {cost[name]:.2e} | {ratio} |")


if __name__ == "__main__":
    main()
