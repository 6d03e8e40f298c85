"""Particles sharded across devices give the same result as on one device (4 CPU devices)."""

import os
import pathlib
import subprocess
import sys

SCRIPT = r'''
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
import jax, numpy as np
from jax.sharding import Mesh
from test_smc import lgssm, FLAGS, OBS
from inference import smc

assert len(jax.devices()) == 4, jax.devices()
mesh = Mesh(np.array(jax.devices()), ("particles",))
one = smc.run(jax.random.key(0), lgssm, (FLAGS,), OBS, 1024, ess_threshold=0.8)
sharded = smc.run(jax.random.key(0), lgssm, (FLAGS,), OBS, 1024, ess_threshold=0.8, mesh=mesh,
                  cumulative_weights="gathered")
assert len(sharded.log_weights.sharding.device_set) == 4
assert len(sharded.choices["steps"]["x"].sharding.device_set) == 4
assert int(one.info.resampled.sum()) > 3  # resampling crossed shards
np.testing.assert_array_equal(np.asarray(one.info.resampled), np.asarray(sharded.info.resampled))
np.testing.assert_array_equal(np.asarray(one.choices["steps"]["x"]), np.asarray(sharded.choices["steps"]["x"]))
# sums over particles are reduced per shard first: equal up to float32 rounding
np.testing.assert_allclose(np.asarray(one.log_weights), np.asarray(sharded.log_weights), rtol=1e-5, atol=1e-5)
np.testing.assert_allclose(float(one.log_marginal_likelihood()), float(sharded.log_marginal_likelihood()), rtol=1e-6)
print("sharded ok")
'''


def test_sharded_particles_match_one_device():
    tests = pathlib.Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, cwd=tests, check=False)
    assert out.returncode == 0 and "sharded ok" in out.stdout, out.stdout + out.stderr
