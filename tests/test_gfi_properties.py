"""The GFI identities, checked on many random model structures (every combinator)."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from random_models import build, specs

import ppl

# Fixed examples (derandomize) so CI is reproducible; no shrinking, since every example compiles.
SETTINGS = settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
U = jnp.float32(0.3)


def close(a, b, tol=2e-4):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


@SETTINGS
@given(specs(), st.integers(0, 2**30))
def test_identities_hold_for_random_models(spec, seed):
    model = build(spec)
    k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
    tr = model.simulate(k1, U)
    assert jnp.isfinite(tr.score)

    # assess of the full choice map is the trace's score
    logp, retval = model.assess(tr.choices, U)
    close(logp, tr.score)
    close(retval, tr.retval)

    # generate with all choices constrained: weight == assess, same choices
    tr_g, w = model.generate(k2, tr.choices, U)
    close(w, logp)
    close(tr_g.score, tr.score)
    jax.tree.map(close, ppl.choicemap.unmask(tr_g.choices), ppl.choicemap.unmask(tr.choices))

    # generate with nothing constrained: weight 0 (only factors count)
    tr_p, w_p = model.generate(k2, None, U)
    close(w_p, model.project(tr_p, ppl.sel.none()))

    # update to another full choice map: weight == new score - old score,
    # even when a cond changes branch (all new choices are constrained)
    other = model.simulate(k3, U)
    tr_u, w_u, _ = model.update(k4, tr, other.choices, U)
    close(w_u, other.score - tr.score, tol=1e-3)
    close(tr_u.score, other.score, tol=1e-3)

    # update with nothing new, and regenerate of nothing, leave the trace alone
    tr_same, w_same, _discard = model.update(k4, tr, None, U)
    close(w_same, 0.0)
    close(tr_same.score, tr.score)
    tr_r, w_r = model.regenerate(k4, tr, ppl.sel.none(), U)
    close(w_r, 0.0)
    close(tr_r.score, tr.score)

    # project: everything selected is the score
    close(model.project(tr, ppl.sel()), tr.score)


@SETTINGS
@given(specs(), st.integers(0, 2**30))
def test_identities_hold_under_vmap_and_jit(spec, seed):
    model = build(spec)
    keys = jax.random.split(jax.random.key(seed), 3)

    traces = jax.vmap(lambda k: model.simulate(k, U))(keys)
    logps = jax.vmap(lambda c: model.assess(c, U)[0])(traces.choices)
    close(logps, traces.score)
    weights = jax.jit(jax.vmap(lambda k, c: model.generate(k, c, U)[1]))(keys, traces.choices)
    close(weights, logps)

    # element i of a batched trace is a trace in its own right
    one = jax.tree.map(lambda x: x[1], traces)
    close(model.assess(one.choices, U)[0], traces.score[1])
    close(model.assess(ppl.choicemap.index(traces.choices, 1), U)[0], traces.score[1])

    # update and regenerate, vmapped and jitted, against the unbatched calls
    @jax.jit
    def moves(k, tr):
        _, w_u, _ = model.update(k, tr, None, U)
        tr_r, w_r = model.regenerate(k, tr, ppl.sel(), U)
        return w_u, w_r, tr_r.score

    w_u, w_r, _ = jax.vmap(moves)(keys, traces)
    close(w_u, jnp.zeros(3))
    # regenerating everything from the prior: the MH ratio is the ratio of factors
    factors = jax.vmap(lambda t: model.project(t, ppl.sel.none()))(traces)
    _, _, _new_scores = jax.vmap(moves)(keys, traces)
    regenerated = jax.vmap(lambda k, t: model.regenerate(k, t, ppl.sel(), U)[0])(keys, traces)
    new_factors = jax.vmap(lambda t: model.project(t, ppl.sel.none()))(regenerated)
    close(w_r, new_factors - factors, tol=1e-3)
