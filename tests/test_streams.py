"""`ppl.Streams`: one shared key, independent per-execution streams, the same values batched or not."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from ppl import dist, streams


def draw(key, i, shape=(3,)):
    return jax.random.normal(streams.as_key(ppl.Streams(key, i)), shape)


def test_batched_draws_equal_one_at_a_time():
    key = jax.random.key(0)
    one_by_one = np.stack([draw(key, i) for i in range(6)])
    np.testing.assert_array_equal(jax.vmap(draw, (None, 0))(key, jnp.arange(6)), one_by_one)


def test_streams_of_different_keys_batched():
    # the keys differ per row: the general (not shared-key) path of the batched hash
    keys = jax.random.split(jax.random.key(1), 4)
    one_by_one = np.stack([draw(keys[i], i) for i in range(4)])
    np.testing.assert_array_equal(jax.vmap(draw)(keys, jnp.arange(4)), one_by_one)
    nested = jax.vmap(lambda k: jax.vmap(draw, (None, 0))(k, jnp.arange(3)))(keys)
    np.testing.assert_array_equal(nested, np.stack([[draw(k, i) for i in range(3)] for k in keys]))


def test_an_empty_batch_of_streams():
    assert jax.vmap(draw, (None, 0))(jax.random.key(0), jnp.arange(0)).shape == (0, 3)


def test_stream_zero_is_the_plain_key():
    key = jax.random.key(2)
    np.testing.assert_array_equal(draw(key, 0), jax.random.normal(key, (3,)))


def test_streams_are_independent_standard_normals():
    n = 20_000
    x = np.asarray(jax.vmap(lambda i: draw(jax.random.key(3), i, (2,)))(jnp.arange(n)))
    assert stats.kstest(x.ravel(), "norm").pvalue > 1e-3
    # neighbouring streams, and the two values within a stream, are uncorrelated: |r| < 4 / sqrt(n)
    assert abs(np.corrcoef(x[:-1, 0], x[1:, 0])[0, 1]) < 4 / np.sqrt(n)
    assert abs(np.corrcoef(x[:, 0], x[:, 1])[0, 1]) < 4 / np.sqrt(n)


def test_keys_derived_from_a_stream_differ_from_every_stream():
    key = jax.random.key(4)
    children = jax.random.split(streams.as_key(ppl.Streams(key, 1)), 3)
    child_draws = np.stack([jax.random.normal(c, (3,)) for c in children])
    stream_draws = np.stack([draw(key, i) for i in range(4)])
    assert not np.isin(child_draws, stream_draws).any()
    assert np.unique(child_draws).size == child_draws.size


@ppl.gen
def inner(mu):
    return dist.Normal(mu, 1.0) @ "z"


@ppl.gen
def walk_step(c, x):
    return dist.Normal(c + x, 1.0) @ "c"


@ppl.gen
def model(xs):
    # draws at the top level, inside ppl.repeat (a vmap over split keys) and inside ppl.scan
    mu = dist.Normal(0.0, 1.0) @ "mu"
    zs = ppl.repeat(inner, 3)(mu) @ "zs"
    path = ppl.scan(walk_step, in_axes=(0,))(mu, xs) @ "walk"
    return dist.Normal(mu + jnp.sum(zs) + path[-1], 1.0) @ "y"


@pytest.mark.parametrize("method", ["simulate", "generate"])
def test_gfi_with_streams_matches_one_call_per_stream(method):
    key = jax.random.key(5)

    def run(i):
        k = ppl.Streams(key, i)
        return model.simulate(k, jnp.zeros(2)) if method == "simulate" else model.generate(k, {"y": 1.0}, jnp.zeros(2))[0]

    batched = jax.vmap(run)(jnp.arange(5))
    for i in range(5):
        single = run(i)
        for a, b in zip(jax.tree.leaves(batched.choices), jax.tree.leaves(single.choices)):
            np.testing.assert_allclose(a[i], b, rtol=1e-6)
    # the streams differ from one another
    assert np.unique(np.asarray(batched.choices["mu"])).size == 5


def test_other_key_implementations_fall_back_to_fold_in():
    key = jax.random.key(6, impl="rbg")
    np.testing.assert_array_equal(draw(key, 2), jax.random.normal(jax.random.fold_in(key, 2), (3,)))


def test_a_stream_is_a_key_for_the_gfi_but_not_other_objects():
    tr = inner.simulate(ppl.Streams(jax.random.key(7), 3), 0.0)
    assert np.isfinite(tr.score)
    with pytest.raises(ppl.ModelError, match="PRNG key"):
        inner.simulate(3, 0.0)


def test_unused_key_first_made_inside_a_trace_is_a_value():
    """`unused_key` is cached on first use; made first inside `jit`, it must cache a key, not the trace's tracer
    (which later calls would leak). A fresh process, so that this is the first use."""
    import subprocess
    import sys

    code = ("import jax\nfrom ppl import streams\n"
            "jax.jit(lambda x: jax.random.key_data(streams.unused_key()).sum() + x)(1)\n"
            "assert not isinstance(streams.unused_key(), jax.core.Tracer)\n"
            "print(jax.random.key_data(streams.unused_key()) + 1)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
