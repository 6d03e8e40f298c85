"""NUTS against the posteriordb reference posteriors (Stan, ESS ~10,000 per parameter).

For every parameter: z = (mean_run - mean_ref) / sqrt(sd_ref² / ESS_run + mcse_ref²) must
satisfy |z| < 4, and the run's sd must be within 10% of the reference sd (ESS_run is
ArviZ's bulk ESS of the run). 4 chains, 1,000 warm-up and 1,000 draws, fixed seed.
"""

from __future__ import annotations

import arviz as az
import jax
import numpy as np
import pytest

from inference import mcmc
from testbed import posteriordb

pytestmark = pytest.mark.shared_data  # every test here reads ../shared/data/posteriordb


@pytest.mark.parametrize("name", posteriordb.NAMES)
def test_nuts_matches_reference(name):
    post = posteriordb.load(name)
    res = mcmc.nuts(jax.random.key(0), post.model, post.args, post.observations, progress_bar=False)
    assert res.diagnostics()["max_rhat"] < 1.01
    for param, draws in post.stan_draws(res.samples).items():
        ref = post.reference[param]
        ess = float(az.ess(np.asarray(draws)))
        z = (draws.mean() - ref["mean"]) / np.sqrt(ref["sd"] ** 2 / ess + ref["mcse_mean"] ** 2)
        assert abs(z) < 4, f"{param}: mean {draws.mean():.5g} vs reference {ref['mean']:.5g} (z = {z:.2f})"
        assert abs(draws.std() / ref["sd"] - 1) < 0.1, f"{param}: sd {draws.std():.5g} vs reference {ref['sd']:.5g}"
