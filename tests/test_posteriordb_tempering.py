"""Adaptive tempering with its default HMC moves against the posteriordb reference posteriors whose priors are
proper (tempering starts from prior draws): eight schools (non-centred), a Bayesian linear regression with a
noise scale (sblrc) and an AR(5) (arK).

Eight runs of 2,000 particles each; the Monte Carlo error of a posterior mean is the spread of the runs' means.
For every parameter z = (mean - mean_ref) / sqrt(var(run means) / runs + mcse_ref²) must satisfy |z| < 5 (t with
7 degrees of freedom, Bonferroni over the parameters near 1e-3), and the sd must be within 15% of the reference.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from inference import tempering
from testbed import posteriordb

pytestmark = pytest.mark.shared_data  # reads ../shared/data/posteriordb

# sblrc and arK take 230 s and 440 s on two cores (their priors are far wider than their posteriors: many stages)
PROPER_PRIORS = ["eight_schools-eight_schools_noncentered", pytest.param("sblrc-blr", marks=pytest.mark.slow),
                 pytest.param("arK-arK", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", PROPER_PRIORS)
def test_tempering_matches_reference(name):
    post = posteriordb.load(name)
    runs = 8
    run = jax.jit(jax.vmap(lambda k: tempering.temper(k, post.model, post.args, post.observations, 2000)))
    res = run(jax.random.split(jax.random.key(0), runs))
    assert not np.any(np.asarray(res.failed))
    for param, draws in post.stan_draws(res.choices).items():  # (run, particle)
        ref = post.reference[param]
        means = draws.mean(axis=1)
        z = (means.mean() - ref["mean"]) / np.sqrt(means.var(ddof=1) / runs + ref["mcse_mean"] ** 2)
        assert abs(z) < 5, f"{param}: mean {means.mean():.5g} vs reference {ref['mean']:.5g} (z = {z:.2f})"
        sd = draws.std(axis=1).mean()
        assert abs(sd / ref["sd"] - 1) < 0.15, f"{param}: sd {sd:.5g} vs reference {ref['sd']:.5g}"
