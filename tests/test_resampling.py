"""Resampling schemes: unbiased offspring counts, variance ordering, -inf weights, shapes, scale."""

import collections
import functools
import typing

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from inference import resampling
from inference.resampling import SCHEMES

N = 8
R = 20_000  # repetitions for the Monte Carlo checks


def _log_weights() -> jax.Array:
    """A fixed random weight vector with one -inf weight and one tiny (1e-4 relative) weight."""
    logw = 1.5 * jax.random.normal(jax.random.key(0), (N,))
    return logw.at[2].set(-jnp.inf).at[5].set(jnp.max(logw) + jnp.log(1e-4))


def _counts(scheme, logw: jax.Array, n: int, reps: int = R, seed: int = 1) -> np.ndarray:
    """Offspring counts, shape (reps, N), from `reps` independent resamplings."""

    @jax.jit
    def run(keys):
        ancestors = jax.vmap(lambda k: scheme(k, logw, n))(keys)
        return jax.vmap(lambda a: jnp.bincount(a, length=logw.shape[0]))(ancestors)

    return np.asarray(run(jax.random.split(jax.random.key(seed), reps)))


@functools.cache
def _counts_cached(name: str, n: int) -> np.ndarray:
    return _counts(SCHEMES[name], _log_weights(), n)


@pytest.mark.parametrize("n", [N, 13])
@pytest.mark.parametrize("name", list(SCHEMES))
def test_offspring_counts_are_unbiased(name, n):
    counts = _counts_cached(name, n)
    expected = n * np.asarray(jax.nn.softmax(_log_weights()))
    assert (counts.sum(axis=1) == n).all()
    assert (counts[:, 2] == 0).all(), "a -inf particle was selected"
    # Floor for counts that are (nearly) deterministic, where the empirical std is 0.
    se = np.maximum(counts.std(axis=0) / np.sqrt(R), 1e-4)
    z = np.abs(counts.mean(axis=0) - expected) / se
    assert (z < 5).all(), f"{name}: mean counts {counts.mean(axis=0)} vs n w = {expected} (z = {z})"
    if name == "residual":  # floor(n w_i) copies are guaranteed, the rest is random
        assert (counts >= np.floor(expected)).all()
        assert counts.std(axis=0).max() > 0


@pytest.mark.parametrize("name", ["stratified", "systematic", "residual"])
def test_lower_variance_than_multinomial(name):
    var = _counts_cached(name, N).var(axis=0).sum()
    var_multinomial = _counts_cached("multinomial", N).var(axis=0).sum()
    w = np.asarray(jax.nn.softmax(_log_weights()))
    # The multinomial estimate must itself match the theory sum_i N w_i (1 - w_i).
    assert var_multinomial == pytest.approx(N * (w * (1 - w)).sum(), rel=0.05)
    assert var < 0.8 * var_multinomial


@pytest.mark.parametrize("name", list(SCHEMES))
def test_shapes_dtypes_order_and_jit_vmap(name):
    scheme = SCHEMES[name]
    logw = _log_weights()
    batch = jnp.stack([logw, jnp.zeros(N), logw - 100.0])
    keys = jax.random.split(jax.random.key(3), 3)
    a = jax.jit(jax.vmap(functools.partial(scheme, n=3)))(keys, batch)  # n < N (n > N: above)
    assert a.shape == (3, 3) and a.dtype == jnp.int32
    assert (a >= 0).all() and (a < N).all() and (a[::2] != 2).all()
    assert (np.diff(a, axis=1) >= 0).all(), "ancestors are documented as nondecreasing"
    # vmap gives the same draws as resampling each particle system on its own.
    np.testing.assert_array_equal(a[1], jax.jit(scheme, static_argnums=2)(keys[1], batch[1], 3))


@pytest.mark.parametrize("name", list(SCHEMES))
def test_minus_inf_weights(name):
    scheme = SCHEMES[name]
    inf = -jnp.inf
    # Trailing, leading and interleaved -inf weights, a single survivor, and no survivor at all.
    cases = jnp.array(
        [
            [0.0, 1.0, inf, inf, inf],
            [inf, inf, 0.0, 0.5, 0.2],
            [inf, 3.0, inf, 2.0, inf],
            [inf, inf, 7.0, inf, inf],
            [inf, inf, inf, inf, inf],
        ]
    )

    @jax.jit
    def ancestors(keys):
        return jax.vmap(jax.vmap(scheme, in_axes=(0, None)), in_axes=(None, 0))(keys, cases)

    a = np.asarray(ancestors(jax.random.split(jax.random.key(7), 2_000)))  # (case, rep, particle)
    assert a.dtype == np.int32 and (a >= 0).all() and (a < cases.shape[1]).all()
    selected = np.take_along_axis(np.isfinite(np.asarray(cases))[:, None, :], a, axis=2)
    assert selected[:-1].all(), "a -inf particle was selected"
    # With no survivor the indices are meaningless; callers detect it as documented.
    assert not jnp.isfinite(jax.nn.logsumexp(cases[-1]))


def test_boundary_uniforms_land_on_last_positive_weight():
    # u == 1 (float32 rounding of (n - 1 + U) / n) must not select a trailing zero weight.
    weights = jnp.array([1.0, 2.0, 0.0, 0.0])
    u = jnp.array([0.0, 1 / 3 - 1e-6, 1 / 3 + 1e-6, 1.0, 1.5])
    np.testing.assert_array_equal(resampling._search(weights, u), [0, 0, 1, 1, 1])


def test_ess():
    # float(): from pytest 9.2, approx reads array-likes through .flat, which JAX arrays lack
    assert float(resampling.ess(jnp.zeros(N))) == pytest.approx(N, rel=1e-5)
    assert float(resampling.ess(jnp.full(N, -3.7))) == pytest.approx(N, rel=1e-5)
    one_hot = jnp.full(N, -jnp.inf).at[3].set(0.0)
    assert float(resampling.ess(one_hot)) == pytest.approx(1.0, rel=1e-6)
    assert resampling.ess(jnp.full(N, -jnp.inf)) == 0.0  # no weight at all: ESS 0, not NaN
    assert jnp.all(resampling.weights(jnp.full(N, -jnp.inf)) == 0.0)
    logw = _log_weights()
    w = np.asarray(jax.nn.softmax(logw), dtype=np.float64)
    assert float(resampling.ess(logw)) == pytest.approx(1 / (w**2).sum(), rel=1e-5)
    for shift in (-1e3, 50.0, 1e3):  # exp(1e3) overflows: only a log-space ESS survives
        assert float(resampling.ess(logw + shift)) == pytest.approx(float(resampling.ess(logw)), rel=1e-4)


def test_normalize():
    logw = _log_weights() + 1e3
    normed = resampling.normalize(logw)
    assert float(jax.nn.logsumexp(normed)) == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(jnp.exp(normed), jax.nn.softmax(logw), rtol=1e-5, atol=1e-12)
    assert normed[2] == -jnp.inf


def _max_intermediate_size(jaxpr) -> int:
    """Largest array anywhere in a jaxpr, sub-jaxprs (while loops, pjit) included."""
    biggest = 0
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            biggest = max(biggest, int(np.prod(getattr(var.aval, "shape", ()))))
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if isinstance(inner, jax.extend.core.Jaxpr):
                    biggest = max(biggest, _max_intermediate_size(inner))
    return biggest


@pytest.mark.parametrize("name", list(SCHEMES))
def test_memory_is_linear(name):
    big = 1_000_000
    jaxpr = jax.make_jaxpr(SCHEMES[name])(jax.random.key(0), jnp.zeros(big))
    assert jaxpr.out_avals[0].shape == (big,)  # n defaults to N
    assert _max_intermediate_size(jaxpr.jaxpr) <= 2 * big


def test_systematic_large_n():
    big = 1_000_000
    logw = jax.random.normal(jax.random.key(5), (big,)).at[-10:].set(-jnp.inf)
    a = jax.jit(resampling.systematic)(jax.random.key(6), logw)
    assert a.shape == (big,) and a.dtype == jnp.int32
    assert int(a.max()) < big - 10
    # Systematic resampling gives every particle floor(N w_i) or ceil(N w_i) offspring, up to
    # float32 rounding of the cumulative weights.
    counts = jnp.bincount(a, length=big)
    assert float(jnp.max(jnp.abs(counts - big * jax.nn.softmax(logw)))) < 2.0


def test_get():
    for name, scheme in SCHEMES.items():
        assert resampling.get(name) is scheme
    with pytest.raises(ValueError, match="unknown resampling scheme 'sytematic'") as info:
        resampling.get("sytematic")
    for name in SCHEMES:
        assert name in str(info.value)


def test_scheme_name_lists_exactly_the_names_get_accepts():
    assert typing.get_args(resampling.SchemeName) == tuple(SCHEMES)


def test_categorical_draws_are_iid_with_the_weights():
    """`categorical` (unsorted draws, used by CSMC and ancestor sampling): each draw ~ w, independently."""
    from scipy import stats

    logw = _log_weights()
    w = np.asarray(jax.nn.softmax(logw), np.float64)
    draws = np.asarray(jax.jit(lambda k: resampling.categorical(k, logw, 2 * R))(jax.random.key(3))).reshape(R, 2)
    assert not (draws == 2).any(), "a -inf particle was drawn"
    live = np.flatnonzero(w > 1e-3)  # chi-square needs expected counts well above 5
    for column in draws.T:
        counts = np.bincount(column, minlength=N)[live]
        assert stats.chisquare(counts, counts.sum() * w[live] / w[live].sum()).pvalue > 1e-3
    # independence of successive draws: the joint table of (first, second) factorises
    both = np.isin(draws, live).all(axis=1)
    index = np.searchsorted(live, draws[both])
    table = np.zeros((live.size, live.size))
    np.add.at(table, (index[:, 0], index[:, 1]), 1)
    assert stats.chi2_contingency(table).pvalue > 1e-3


def test_a_single_categorical_draw_has_the_weights_law():
    """`categorical(..., 1)` (one pass over the CDF, no binary search; picks CSMC's new path) draws ~ w."""
    from scipy import stats

    logw = _log_weights()
    w = np.asarray(jax.nn.softmax(logw), np.float64)
    draws = np.asarray(jax.jit(jax.vmap(lambda k: resampling.categorical(k, logw, 1)[0]))(
        jax.random.split(jax.random.key(4), R)))
    assert not (draws == 2).any(), "a -inf particle was drawn"
    live = np.flatnonzero(w > 1e-3)
    counts = np.bincount(draws, minlength=N)
    assert stats.chisquare(counts[live], counts[live].sum() * w[live] / w[live].sum()).pvalue > 1e-3


W_COND = np.array([0.1, 0.35, 0.2, 0.05, 0.3])


def _conditional_systematic_law(ancestor: int) -> dict:
    """{(slot, *ancestors): probability} of a systematic draw of W_COND and a uniform slot, given that the
    slot drew `ancestor`, from a fine grid of the shared uniform."""
    n = len(W_COND)
    grid = (np.arange(200_000) + 0.5) / 200_000
    table = np.minimum(np.searchsorted(np.cumsum(W_COND), (np.arange(n) + grid[:, None]) / n, side="right"), n - 1)
    law = collections.Counter()
    for slot in range(n):
        law.update((slot, *map(int, row)) for row in table[table[:, slot] == ancestor])
    total = sum(law.values())
    return {k: v / total for k, v in law.items()}


def _check_law(slots, ancestors, law: dict):
    from scipy import stats

    observed = collections.Counter((int(s), *map(int, a)) for s, a in zip(slots, ancestors))
    assert set(observed) <= set(law), set(observed) - set(law)
    keys = sorted(law)
    if len(keys) == 1:  # a light particle (n w < 1) makes one outcome certain
        assert observed[keys[0]] == len(slots)
        return
    expected = len(slots) * np.array([law[k] for k in keys])
    assert stats.chisquare([observed[k] for k in keys], expected).pvalue > 1e-3, (keys, observed, expected)


@pytest.mark.parametrize("ancestor", [0, 1, 3, 4])
def test_conditional_systematic_has_the_conditional_law(ancestor):
    """(slot, ancestors) against the exact law of a systematic draw and a uniform slot given that the slot drew
    `ancestor`; the slot holds `ancestor` exactly."""
    draw = jax.jit(jax.vmap(lambda k: resampling.conditional_systematic(k, jnp.log(jnp.asarray(W_COND)), ancestor)))
    ancestors, slots = map(np.asarray, draw(jax.random.split(jax.random.key(ancestor), R)))
    assert np.all(ancestors[np.arange(R), slots] == ancestor)
    _check_law(slots, ancestors, _conditional_systematic_law(ancestor))


def test_ancestor_sampled_systematic_mixes_the_conditional_laws():
    """The ancestor is drawn with the ancestor weights, then the rest as `conditional_systematic` given it."""
    ancestor_w = np.array([0.3, 0.1, 0.0, 0.4, 0.2])
    draw = jax.jit(jax.vmap(lambda k: resampling.ancestor_sampled_systematic(
        k, jnp.log(jnp.asarray(W_COND)), jnp.log(jnp.asarray(ancestor_w)))))
    ancestors, slots = map(np.asarray, draw(jax.random.split(jax.random.key(5), R)))
    law = collections.Counter()
    for a, p in enumerate(ancestor_w):
        if p > 0:
            law.update({k: p * q for k, q in _conditional_systematic_law(a).items()})
    _check_law(slots, ancestors, law)


@pytest.mark.parametrize("shape", [(100,), (1000,), (2, 4097)])
def test_prefix_sum_is_a_cumsum(shape):
    """The CDF helper (blocked on a CPU from 512 entries on) against a float64 cumsum, to float32 rounding."""
    x = np.random.default_rng(0).exponential(size=shape).astype(np.float32)
    exact = np.cumsum(x.astype(np.float64), axis=-1)
    got = np.asarray(jax.jit(resampling.prefix_sum)(jnp.asarray(x)), np.float64)
    np.testing.assert_allclose(got, exact, rtol=2e-6)


@pytest.mark.parametrize("n", [7, 1000, 5000])
def test_max_of_float_bits_is_the_max(n):
    """The integer-bit maximum (below 4,096 entries) equals jnp.max exactly: negatives, -0.0, -inf, +inf."""
    rng = np.random.default_rng(n)
    cases = [rng.normal(size=n) * 50, -rng.exponential(size=n), np.full(n, -np.inf),
             np.r_[np.full(n - 1, -np.inf), -3.5], np.r_[rng.normal(size=n - 1), np.inf], np.r_[np.full(n - 1, -1.0), -0.0]]
    for x in cases:
        x = jnp.asarray(x, jnp.float32)
        got = jax.jit(resampling.max_of)(x)
        assert got == jnp.max(x) and jnp.signbit(got) == jnp.signbit(jnp.max(x)), (x, got)


def test_draw_one_takes_the_first_positive_weight_past_the_point_and_never_a_zero_one():
    """The single inverse-CDF draw of ancestor sampling: zero weights are skipped even where rounding gave them a
    sliver of the CDF, and a point at (or rounded past) the total goes to the last positive weight."""
    w = jnp.asarray([0.0, 0.5, 0.0, 0.5, 0.0])
    cdf = jnp.asarray([0.0, 0.5, 0.50001, 1.0, 1.0])  # a parallel prefix sum's rounding at the zero weight
    draw = jax.jit(lambda u: resampling._draw_one(w, cdf, u))
    assert [int(draw(u)) for u in (0.0, 0.49, 0.5, 0.99, 1.0)] == [1, 1, 3, 3, 3]
    assert int(resampling._draw_one(jnp.zeros(4), jnp.zeros(4), 0.3)) == 0  # nothing to draw: a valid index


@pytest.mark.parametrize("n", [7, 1000])
def test_maxes_are_each_arrays_max(n):
    """One variadic reduction gives each array's own maximum, -inf and +inf included."""
    rng = np.random.default_rng(n)
    arrays = [rng.normal(size=n) * 50, np.full(n, -np.inf), np.r_[rng.normal(size=n - 1), np.inf]]
    got = jax.jit(resampling._maxes)(*map(jnp.float32, arrays))
    assert [float(g) for g in got] == [float(np.max(np.float32(a))) for a in arrays]
