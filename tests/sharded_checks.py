"""The particle and chain drivers under `mesh=` against one device, in a process of its own with D forced CPU devices.

`python sharded_checks.py D [check ...]` runs the named checks (all by default) and prints "ok"; tests/test_sharding.py
runs it for D = 4 and 8, because a process cannot change its number of devices once JAX has started.
"""

import os
import sys

if __name__ == "__main__":  # before JAX starts
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={sys.argv[1]}"

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from inference import importance, mcmc, pgibbs, sharded_resampling, sharding, smc, tempering
from inference.mcmc import kernels
from ppl import dist
from testbed import oracles
from testbed.lgssm import M0, P0, A, C, Q, R, lgssm

T = 25
FLAGS = jnp.arange(T) == 0
_, YS = oracles.lgssm_simulate(np.random.default_rng(0), T, A, C, Q, R, M0, P0)
OBS = {"steps": {"y": jnp.asarray(YS, jnp.float32)}}
LOG_Z = oracles.kalman_filter(YS, A, C, Q, R, M0, P0)[2]


def same(a, b, what):
    """Every leaf of `a` equal to `b`'s, bit for bit."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=what)


def split(tree, d, what):
    """Every leaf of `tree` spread over the mesh's d devices."""
    for x in jax.tree.leaves(tree):
        assert len(x.sharding.device_set) == d, (what, x.sharding)


def close(a, b, what):
    """Densities and sums over particles: one device's to float32 rounding. (XLA's CPU backend compiles a loop over
    N / D particles otherwise than one over N, and a log density can differ in its last bit.)"""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6, err_msg=what)


def check_smc(mesh, d):
    """`smc.run`: with the weights gathered, one device's draws by construction; by the prefix sum across devices, the
    same draws on this seed (at more particles float32 rounding moves some: see `inference.sharded_resampling`)."""
    one = smc.run(jax.random.key(0), lgssm, (FLAGS,), OBS, 256, ess_threshold=0.8)
    assert int(one.info.resampled.sum()) > 10  # resampling crossed devices
    for cumulative in ("gathered", "prefix_sum"):
        many = smc.run(jax.random.key(0), lgssm, (FLAGS,), OBS, 256, ess_threshold=0.8, mesh=mesh,
                       cumulative_weights=cumulative)
        same((one.info.resampled, one.history.ancestors, one.choices), (many.info.resampled, many.history.ancestors,
                                                                         many.choices), cumulative)
        close((one.log_weights, one.log_marginal_likelihood()), (many.log_weights, many.log_marginal_likelihood()),
              cumulative)
        split((many.log_weights, many.choices, many.carries), d, cumulative)


def check_schemes(mesh, d):
    """Every scheme (N -> N or N -> N / 2), with impossible particles: one device's ancestors, particles moved whole."""
    rng = np.random.default_rng(1)
    log_w = rng.normal(size=256).astype(np.float32) * 3
    log_w[rng.random(256) < 0.3] = -np.inf
    log_w = jax.device_put(log_w, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(sharding.axis(mesh))))
    particles = {"x": jnp.arange(256.0), "pair": jnp.arange(512).reshape(256, 2)}
    for scheme, n in (("systematic", 256), ("stratified", 128), ("multinomial", 256), ("residual", 128)):
        # one device's: on a copy of the weights on one device (on the sharded ones XLA would split its sums)
        one = sharded_resampling.resample(jax.random.key(2), jnp.asarray(np.asarray(log_w)), particles, scheme, None, n)
        many = jax.jit(lambda key, w, p, scheme=scheme, n=n: sharded_resampling.resample(
            key, w, sharding.shard(mesh, p, 256), scheme, mesh, n))(jax.random.key(2), log_w, particles)
        same((one.ancestors, one.tree), (many.ancestors, many.tree), scheme)
        split(many.tree, d, scheme)


def check_islands(mesh, d):
    """Island resampling stays on each device while the devices' total weights are even, and keeps the total; once one
    device holds all the weight it resamples globally."""
    n = 16 * d
    particles = jnp.arange(n)
    resample = jax.jit(lambda w: sharded_resampling.resample(jax.random.key(3), w, particles, "systematic", mesh,
                                                             scope="island"))
    even = jnp.asarray(np.random.default_rng(2).normal(size=n), jnp.float32)
    local = resample(even)
    assert np.all(np.asarray(local.ancestors) // 16 == np.arange(n) // 16)
    island_totals = jax.nn.logsumexp(even.reshape(d, 16), axis=1)
    np.testing.assert_allclose(local.log_weights, np.repeat(island_totals - np.log(16), 16), rtol=1e-6)
    close(local.log_total, jax.nn.logsumexp(even), "island total")
    one_island = jnp.where(jnp.arange(n) // 16 == 1, even, -jnp.inf)
    exchanged = resample(one_island)
    assert np.all(np.asarray(exchanged.ancestors) // 16 == 1) and np.all(exchanged.log_weights == 0)


def check_island_evidence(mesh, d):
    """Island resampling keeps log Ẑ unbiased (the Kalman filter's exact value; 8 particles a device)."""
    run = jax.jit(lambda k: smc.run(k, lgssm, (FLAGS,), OBS, 8 * d, mesh=mesh, resampling_scope="island",
                                    return_traces=False).log_marginal_likelihood())
    log_z = np.array([float(run(k)) for k in jax.random.split(jax.random.key(4), 300)], np.float64)
    se = np.sqrt(log_z.var() / len(log_z) + log_z.var() ** 2 / (2 * (len(log_z) - 1)))
    assert abs(log_z.mean() + log_z.var() / 2 - LOG_Z) < 4 * se, (log_z.mean(), log_z.var(), LOG_Z)


def check_csmc(mesh, d):
    """`smc.csmc` with exact ancestor sampling: one device's run bit for bit (its draws use all N weights)."""
    reference = jax.tree.map(lambda x: x[0], smc.run(jax.random.key(5), lgssm, (FLAGS,), OBS, 8).traces.choices)
    one = smc.csmc(jax.random.key(6), lgssm, (FLAGS,), OBS, reference, 8 * d)
    many = smc.csmc(jax.random.key(6), lgssm, (FLAGS,), OBS, reference, 8 * d, mesh=mesh)
    same((one.history.ancestors, one.choices), (many.history.ancestors, many.choices), "csmc")
    close((one.log_weights, one.log_marginal_likelihood()), (many.log_weights, many.log_marginal_likelihood()), "csmc")
    split((many.log_weights, many.choices), d, "csmc")


def check_importance(mesh, d):
    """`importance.run`: each device its own particles, one device's draws (to rounding with the bar, whose chunks
    of particles XLA compiles otherwise)."""
    one = importance.run(jax.random.key(7), lgssm, (FLAGS,), OBS, 64 * d)
    many = importance.run(jax.random.key(7), lgssm, (FLAGS,), OBS, 64 * d, mesh=d)
    same(one.choices, many.choices, "importance")
    close(one.log_weights, many.log_weights, "importance")
    split((many.traces, many.log_weights), d, "importance")
    shown = importance.run(jax.random.key(7), lgssm, (FLAGS,), OBS, 64 * d, mesh=d, progress_bar=True)
    close((one.choices, one.log_weights), (shown.choices, shown.log_weights), "importance with the bar")


@ppl.gen
def normal_mean(masks):
    mu = dist.Normal(0.0, 3.0) @ "mu"
    dist.Normal(mu, 1.0).mask(masks) @ "y"


def check_tempering(mesh, d):
    """`tempering.temper` and `anneal` with a Metropolis-Hastings move: one device's particles on this seed (β and the
    evidence are set by sums over particles, equal to rounding)."""
    obs, masks = {"y": jnp.linspace(-1.0, 2.0, 6)}, jnp.arange(6) < jnp.arange(1, 4)[:, None]
    move = {"kernel": kernels.mh(ppl.sel("mu")), "n_mcmc": 2, "progress_bar": False}
    for name, run in (("temper", lambda **kw: tempering.temper(jax.random.key(8), normal_mean, (masks[-1],), obs,
                                                                 8 * d, **move, **kw)),
                      ("anneal", lambda **kw: tempering.anneal(jax.random.key(9), normal_mean, (masks,), obs, 8 * d,
                                                                 **move, **kw))):
        one, many = run(), run(mesh=mesh)
        same((one.choices, one.n_stages), (many.choices, many.n_stages), name)
        close((one.schedule, one.log_marginal), (many.schedule, many.log_marginal), name)
        split(many.choices, d, name)


def check_chains(mesh, d):
    """`mcmc.nuts` (no warm-up: adaptation's sums may round otherwise per block) and `pgibbs.run`: 2 chains a device,
    one device's draws bit for bit; a chain count that does not split is refused."""
    obs, masks = {"y": jnp.linspace(-1.0, 2.0, 6)}, jnp.ones(6, bool)
    runs = {"nuts": lambda mesh: mcmc.nuts(jax.random.key(11), normal_mean, (masks,), obs, num_chains=2 * d,
                                           num_warmup=0, num_samples=20, progress_bar=False, check_convergence=False,
                                           mesh=mesh),
            "pgibbs": lambda mesh: pgibbs.run(jax.random.key(12), lgssm, (FLAGS,), OBS, 4, num_samples=10,
                                              num_chains=2 * d, progress_bar=False, check_convergence=False,
                                              mesh=mesh)}
    for name, run in runs.items():
        many = run(mesh)
        same(run(None).samples, many.samples, name)
        split(many.samples, d, name)
    try:
        mcmc.run(jax.random.key(0), kernels.mh(ppl.sel("mu")), normal_mean, (masks,), obs, 2, num_chains=2 * d + 1,
                 mesh=mesh)
    except ValueError as e:
        assert f"num_chains={3 * d}" in str(e), e
    else:
        raise AssertionError("a chain count that does not split was accepted")


def check_hmc_chains(mesh, d):
    """`mcmc.run` with HMC: one device's draws to 1e-4 after 30 draws (XLA fuses a device's leapfrog loop over its
    block otherwise than the one over all chains, and it rounds differently in the last bit)."""
    kernel = kernels.hmc(ppl.sel("mu"), 0.1, 5)
    obs, masks = {"y": jnp.linspace(-1.0, 2.0, 6)}, jnp.ones(6, bool)
    one, many = (mcmc.run(jax.random.key(13), kernel, normal_mean, (masks,), obs, 30, num_chains=2 * d,
                          progress_bar=False, check_convergence=False, mesh=m).samples for m in (None, mesh))
    np.testing.assert_allclose(one["mu"], many["mu"], rtol=1e-4)
    split(many, d, "hmc chains")


def check_paris(mesh, d):
    """`smc.paris`: the particles' statistics and weights, and the estimate (a weighted sum), one device's to rounding."""
    one = smc.paris(jax.random.key(10), lgssm, (FLAGS,), OBS, lambda prev, x: x, 8 * d)
    many = smc.paris(jax.random.key(10), lgssm, (FLAGS,), OBS, lambda prev, x: x, 8 * d, mesh=mesh)
    close((one.statistics, one.log_weights, one.estimate), (many.statistics, many.log_weights, many.estimate), "paris")
    split(many.statistics, d, "paris")


def check_errors(mesh, d):
    """A particle count that does not split evenly is refused, naming the argument and a count that would."""
    for call in (lambda: smc.run(jax.random.key(0), lgssm, (FLAGS,), OBS, 8 * d + 1, mesh=mesh),
                 lambda: importance.run(jax.random.key(0), lgssm, (FLAGS,), OBS, 8 * d + 1, mesh=d)):
        try:
            call()
        except ValueError as e:
            assert "n_particles" in str(e) and f"n_particles={8 * d + d}" in str(e), e
        else:
            raise AssertionError("a particle count that does not split was accepted")


CHECKS = {name[len("check_"):]: f for name, f in globals().items() if name.startswith("check_")}

if __name__ == "__main__":
    d = int(sys.argv[1])
    assert len(jax.devices()) == d, jax.devices()
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("particles",))
    for name in sys.argv[2:] or CHECKS:
        CHECKS[name](mesh, d)
    print("ok")
