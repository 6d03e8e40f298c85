"""ppl.unconstrained and ppl.Unconstrained leaves: exact densities with Jacobians, round trips, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from ppl import dist, unconstrained


@ppl.gen
def model(n):
    s = dist.HalfNormal(1.0) @ "s"
    w = dist.Dirichlet(jnp.ones(3)) @ "w"
    b = dist.Uniform(0.0, s) @ "b"  # a support that depends on another choice
    dist.Categorical(w) @ "z"
    dist.Normal(b, s).expand((n,)) @ "y"


def test_density_of_unconstrained_values_is_exact():
    u = {"s": jnp.asarray(0.3), "w": jnp.array([0.2, -0.5]), "b": jnp.asarray(-1.1)}
    obs = {"z": jnp.asarray(2), "y": jnp.array([0.1, 0.4])}
    logp, _ = model.assess(ppl.choicemap.merge(unconstrained.wrap(u), obs), 2)
    # by hand: s = exp(u), b = s * sigmoid(u), w = stick-breaking(u) (numpyro's biject_to(simplex))
    s = np.exp(0.3)
    b = s / (1 + np.exp(1.1))
    w_t = dist.Dirichlet(jnp.ones(3)).to_constrained
    w = np.asarray(w_t(u["w"]))
    log_jac_w = float(w_t.log_abs_det_jacobian(u["w"], jnp.asarray(w)))
    expected = (
        stats.halfnorm.logpdf(s) + 0.3  # log ds/du = u
        + stats.dirichlet.logpdf(w, np.ones(3)) + log_jac_w
        + stats.uniform.logpdf(b, 0, s) + np.log(s) + np.log(b / s) + np.log(1 - b / s)
        + np.log(w[2])
        + stats.norm.logpdf([0.1, 0.4], b, s).sum()
    )
    np.testing.assert_allclose(float(logp), expected, rtol=1e-5)
    x = unconstrained.constrain(model, (2,), u, obs)
    np.testing.assert_allclose([float(x["s"]), float(x["b"])], [s, b], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(x["w"]), w, rtol=1e-5)


def test_round_trip_and_discrete_kept():
    tr = model.simulate(jax.random.key(3), 4)
    u = unconstrained.unconstrain(model, (4,), tr.choices)
    assert u["w"].shape == (2,) and u["z"].dtype == tr["z"].dtype and int(u["z"]) == int(tr["z"])
    latents = {k: u[k] for k in ("s", "w", "b")}
    back = unconstrained.constrain(model, (4,), latents, {"z": tr["z"], "y": tr["y"]})
    for k in ("s", "w", "b"):
        np.testing.assert_allclose(np.asarray(back[k]), np.asarray(tr[k]), rtol=1e-4, atol=1e-6)


def test_init_uniform_covers_improper_priors():
    @ppl.gen
    def flat():
        return dist.ImproperUniform(dist.constraints.ordered_vector, (), (3,)) @ "o"

    o = jax.vmap(lambda k: unconstrained.init_uniform(k, flat, (), None)["o"])(jax.random.split(jax.random.key(0), 50))
    assert o.shape == (50, 3) and bool(jnp.all(jnp.diff(o, axis=1) > 0))
    first = np.asarray(o[:, 0])
    assert first.min() >= -2 and first.max() <= 2 and first.std() > 0.5  # uniform in (-2, 2) on the unconstrained scale


def test_bad_unconstrained_values_are_named():
    obs = {"z": jnp.asarray(0), "y": jnp.zeros(2)}
    with pytest.raises(ppl.ModelError, match="unconstrained values of shape"):
        model.assess(ppl.choicemap.merge(unconstrained.wrap({"s": 0.1, "w": jnp.zeros(3), "b": 0.0}), obs), 2)
    with pytest.raises(ppl.ModelError, match="discrete"):
        model.assess({"s": 1.0, "w": jnp.ones(3) / 3, "b": 0.5, "z": ppl.Unconstrained(jnp.asarray(0)),
                      "y": jnp.zeros(2)}, 2)
