"""Progress bars advanced from inside the compiled programs of smc.run, tempering, importance and mcmc.

Each driver runs with its bar on twice (the second call, with another key and the same shapes, must
compile nothing), then with it off (compiling nothing either: whether the bar shows is a value the program
reads, not a setting it is compiled for; smc.run and importance.run are the exceptions, see docs/smc.md): the bar ends at its
total, moved there by the program's callbacks (about 100 updates at most; nothing fills it on exit), and the
results are those of the run without it.
"""

from __future__ import annotations

import io
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_compile_reuse import compilations, masked_model
from tqdm.std import tqdm

import ppl
from inference import importance, mcmc, progress, smc, tempering
from inference.mcmc import kernels
from ppl import dist
from testbed import lgssm, linear_regression


class Recorder(tqdm):
    """A tqdm bar that writes to a string and keeps every position it was moved to."""

    bars: ClassVar[list] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, file=io.StringIO(), **kwargs)
        self.initial_total, self.positions, self.postfixes = self.total, [], []
        Recorder.bars.append(self)

    def update(self, n=1):
        super().update(n)
        self.positions.append(self.n)

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        self.postfixes.append(dict(ordered_dict or {}, **kwargs))
        super().set_postfix(ordered_dict, refresh, **kwargs)


@pytest.fixture
def bars(monkeypatch):
    """The bars the drivers open, recorded."""
    monkeypatch.setattr(progress, "tqdm", Recorder)
    Recorder.bars = []
    yield Recorder.bars
    progress.BAR.clear()


def twice_with_the_bar(run, toggling_compiles: bool = False):
    """`run(seed, progress_bar)` with the bar on for seeds 0 and 1 (the second compiling nothing), then off for
    seed 1 (compiling nothing unless `toggling_compiles`): (the bar-on result of seed 1, the bar-off one)."""
    jax.block_until_ready(run(0, True))
    with compilations() as compiled:
        on = jax.block_until_ready(run(1, True))
    assert not compiled, f"the second call with the bar compiled again: {compiled}"
    with compilations() as compiled:
        off = jax.block_until_ready(run(1, False))
    assert toggling_compiles or not compiled, f"turning the bar off compiled again: {compiled}"
    return on, off


def assert_equal_trees(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


YS, LG_ARGS, LG_OBS = lgssm.simulated(250, 0)


def test_smc_run_advances_its_bar_once_a_step_and_learns_the_total_from_the_program(bars):
    on, off = twice_with_the_bar(lambda seed, bar: smc.run(jax.random.key(seed), lgssm.lgssm, LG_ARGS, LG_OBS, 32,
                                                           return_traces="history", progress_bar=bar),
                                 toggling_compiles=True)
    assert len(bars) == 2  # none for the run without the bar
    bar = bars[-1]
    assert bar.initial_total is None and bar.total == 250 and bar.n == 250
    assert bar.positions == list(range(2, 251, 2))  # 250 steps: every other one, 125 updates
    assert_equal_trees((on.log_weights, on.log_marginal, on.info, on.history),
                       (off.log_weights, off.log_marginal, off.info, off.history))


def test_smc_run_without_the_bar_moves_no_bar(bars):
    """A bar left in `BAR` is not moved by a run whose bar is off: its program has no callback."""
    progress.BAR["bar"] = Recorder(total=None)
    smc.run(jax.random.key(0), lgssm.lgssm, LG_ARGS, LG_OBS, 8).log_marginal.block_until_ready()
    jax.effects_barrier()
    assert bars[0].positions == []
    assert smc.run.__kwdefaults__ is None and smc.run.__defaults__[-1] is False  # off unless asked for


REGRESSION = linear_regression.problem(2, 20)


def test_temper_shows_beta_from_zero_to_one_and_the_stage(bars):
    on, off = twice_with_the_bar(lambda seed, bar: tempering.temper(
        jax.random.key(seed), linear_regression.regression, (REGRESSION.X,), REGRESSION.observations, 64, n_mcmc=2,
        progress_bar=bar))
    bar, n_stages = bars[-1], int(on.n_stages)
    assert bar.total == 1.0 and bar.n == 1.0 and len(bar.positions) == n_stages
    np.testing.assert_allclose(bar.positions, np.asarray(on.schedule[:n_stages]), rtol=1e-6)
    assert bar.postfixes[-1] == {"stage": n_stages}
    assert_equal_trees(on, off)


def test_temper_inside_a_callers_jit_shows_no_bar(bars):
    run = jax.jit(lambda k: tempering.temper(k, linear_regression.regression, (REGRESSION.X,),
                                             REGRESSION.observations, 16, n_mcmc=1, max_stages=3).log_marginal_likelihood())
    run(jax.random.key(0)).block_until_ready()
    assert bars == []


def test_anneal_counts_its_stages(bars):
    masks = jnp.arange(5)[:, None] > jnp.arange(4)[None, :]  # stage k sees k data points
    obs = {"data": {"y": jnp.array([0.8, 1.9, 1.2, 0.3])}}
    on, off = twice_with_the_bar(lambda seed, bar: tempering.anneal(jax.random.key(seed), masked_model, (masks,), obs,
                                                                    32, n_mcmc=2, progress_bar=bar))
    bar = bars[-1]
    assert bar.total == 4 and bar.positions == [1, 2, 3, 4]
    assert_equal_trees(on, off)


IS_YS, IS_ARGS, IS_OBS = lgssm.simulated(20, 1)


def test_importance_in_chunks_gives_the_same_particles(bars):
    n = 1003  # chunks of 11: 91 of them, the last one padded
    on, off = twice_with_the_bar(lambda seed, bar: importance.run(jax.random.key(seed), lgssm.lgssm, IS_ARGS, IS_OBS,
                                                                  n, progress_bar=bar), toggling_compiles=True)
    bar = bars[-1]
    assert bar.total == n and bar.positions == [*range(11, n, 11), n]
    # the same draws (each particle has its own stream); XLA compiles a batch of 11 with other code for some
    # transcendental functions than one of 1003, so the last bits may differ
    assert on.log_weights.shape == (n,)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
                 (on.log_weights, on.choices), (off.log_weights, off.choices))


def test_mcmc_bar_is_moved_to_its_total_by_the_program(bars):
    @ppl.gen
    def normal():
        mu = dist.Normal(0.0, 1.0) @ "mu"
        dist.Normal(mu, 1.0) @ "y"

    mcmc.run(jax.random.key(0), kernels.mh(ppl.sel("mu")), normal, (), {"y": 0.5}, num_samples=151,
             num_warmup=50, num_chains=2, check_convergence=False)
    bar = bars[-1]
    assert bar.total == 201 and bar.n == 201 and len(bar.positions) == 101  # every other iteration, and the last
