"""One of two processes that run `smc.run` and `mcmc.nuts` on a mesh over both processes' devices (2 forced CPU devices each, JAX's CPU
collectives between them; resampling by the prefix sum across devices), against the same run on this process's first
device alone.

`python multihost_checks.py PROCESS_ID PORT` (tests/test_sharding.py starts both on loopback) prints "ok".
"""

import os
import sys

if __name__ == "__main__":  # before JAX starts
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils


def main(process: int, port: int) -> None:
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process,
                               initialization_timeout=120)
    # after initialize: these imports make arrays, which starts JAX's backend
    from sharded_checks import FLAGS, OBS, close, normal_mean, same

    from inference import mcmc, smc
    from testbed.lgssm import lgssm

    assert jax.process_count() == 2 and len(jax.devices()) == 4 and len(jax.local_devices()) == 2
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("particles",))
    n = 256
    masks, mean_obs = jnp.ones(6, bool), {"y": jnp.linspace(-1.0, 2.0, 6)}
    one = smc.run(jax.random.key(0), lgssm, (FLAGS,), OBS, n, ess_threshold=0.8)  # on this process's first device
    many = smc.run(jax.random.key(0), lgssm, (FLAGS,), OBS, n, ess_threshold=0.8, mesh=mesh)
    # this process holds half the particles: the blocks of its two devices
    mine = [i for i, device in enumerate(mesh.devices) if device.process_index == process]
    held = sorted((shard.index[0].start, shard.data.shape[0]) for shard in many.log_weights.addressable_shards)
    assert held == [(i * n // 4, n // 4) for i in mine], held
    ancestors, choices, log_w = multihost_utils.process_allgather(
        (many.history.ancestors, many.choices, many.log_weights), tiled=True)
    same((one.history.ancestors, one.choices), (ancestors, choices), "two processes")
    close((one.log_weights, one.log_marginal_likelihood()), (log_w, many.log_marginal_likelihood()), "two processes")

    # NUTS chains, 2 a device: the draws are copied whole to both processes (sharding.readable), so ArviZ reads them
    chains = [mcmc.nuts(jax.random.key(1), normal_mean, (masks,), mean_obs, num_chains=8, num_warmup=0, num_samples=20,
                        progress_bar=False, check_convergence=False, mesh=m) for m in (None, mesh)]
    same(chains[0].samples, chains[1].samples, "chains on two processes")
    assert chains[1].summary().shape[0] == 1
    print("ok", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
