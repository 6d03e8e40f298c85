"""Chains split across devices (`mesh=` on mcmc.nuts, mcmc.run, pgibbs.run) give one device's draws (4 and 8 CPU
devices, each in a subprocess: the device count is fixed when JAX starts)."""

import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = r'''
import os, sys
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={sys.argv[1]}"
import jax, jax.numpy as jnp, numpy as np
import ppl
from inference import mcmc, pgibbs
from inference.mcmc import kernels
from test_mcmc import normal_scale
from test_pgibbs import ar_model, data

D = int(sys.argv[1])
assert len(jax.devices()) == D, jax.devices()
obs = {"y": jnp.linspace(-1.0, 2.0, 20)}
flags, _, ar_obs = data(12, seed=0)
runs = {
    # no warm-up: adaptation's reductions may round differently per block shape (docs/scale_out.md)
    "nuts": lambda mesh: mcmc.nuts(jax.random.key(1), normal_scale, (20,), obs, num_chains=8, num_warmup=0,
                                   num_samples=30, progress_bar=False, check_convergence=False, mesh=mesh).samples,
    "run": lambda mesh: mcmc.run(jax.random.key(2), kernels.hmc(ppl.sel("mu") | ppl.sel("sigma"), 0.1, 5), normal_scale, (20,),
                                 obs, 30, num_chains=8, init="uniform", progress_bar=False, check_convergence=False,
                                 mesh=mesh).samples,
    "pgibbs": lambda mesh: pgibbs.run(jax.random.key(3), ar_model, (flags,), ar_obs, n_particles=5, num_samples=20,
                                      num_chains=8, progress_bar=False, check_convergence=False, mesh=mesh).samples,
}
# HMC's leapfrog loop is fused differently in the partitioned program and rounds differently in the last bit
TOLERANCE = {"run": 1e-4}
for name, run in runs.items():
    one, sharded = run(None), run(D)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(sharded)):
        assert len(b.sharding.device_set) == D, (name, b.sharding)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=TOLERANCE.get(name, 0), atol=0, err_msg=name)
for bad, message in ((lambda: runs["run"](3), "num_chains (8) must be a multiple"),
                     (lambda: runs["nuts"](2 * D), "XLA_FLAGS")):
    try:
        bad()
        raise AssertionError("no error")
    except ValueError as e:
        assert message in str(e), e
print("chains sharded ok")
'''


@pytest.mark.parametrize("devices", [4, 8])
def test_sharded_chains_match_one_device(devices):
    tests = pathlib.Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(devices)], env=env, capture_output=True, text=True,
                         cwd=tests, check=False)
    assert out.returncode == 0 and "chains sharded ok" in out.stdout, out.stdout + out.stderr[-5000:]


PROCESS = r'''
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")  # collectives between CPU processes
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{sys.argv[2]}", num_processes=2, process_id=int(sys.argv[1]))
import jax.numpy as jnp, numpy as np
from inference import mcmc
from test_mcmc import normal_scale

assert len(jax.devices()) == 4 and len(jax.local_devices()) == 2
mesh = jax.sharding.Mesh(np.array(jax.devices()), ("chains",))  # two devices in each process
obs = {"y": jnp.linspace(-1.0, 2.0, 20)}
run = lambda mesh: mcmc.nuts(jax.random.key(1), normal_scale, (20,), obs, num_chains=8, num_warmup=0, num_samples=30,
                             progress_bar=False, check_convergence=False, mesh=mesh)
both, alone = run(mesh), run(None)  # alone: this process's own device
for a, b in zip(jax.tree.leaves(alone.samples), jax.tree.leaves(both.samples)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
assert both.summary().shape[0] == 2  # every process reads the draws (ArviZ)
print("two processes ok")
'''


def test_chains_across_two_processes_match_one():
    """`jax.distributed` on loopback: two CPU processes of two devices each run 8 NUTS chains, 2 a device."""
    import socket

    tests = pathlib.Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent), os.environ.get("PYTHONPATH", "")])}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, "-c", PROCESS, str(i), str(port)], env=env, cwd=tests,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and "two processes ok" in out, out + err[-5000:]
