"""Particles and chains split across devices (`mesh=`) give one device's results: on 4 and 8 forced CPU devices,
and in two processes on loopback under `jax.distributed`. The checks run in processes of their own (`sharded_checks.py`,
`multihost_checks.py`): a process cannot change its number of devices once JAX has started."""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from inference import sharding, smc

TESTS = pathlib.Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
ENV.pop("XLA_FLAGS", None)  # each check sets its own device count

# what the default suite runs on each device count (about 40 s of CPU in all); the slow tests run the rest
FAST = {4: ["smc", "schemes", "islands", "csmc", "importance", "errors"], 8: ["smc", "islands", "chains"]}
SLOW = {4: ["tempering", "paris", "island_evidence", "chains", "hmc_chains"],
        8: ["schemes", "csmc", "importance", "errors", "tempering", "paris", "island_evidence", "hmc_chains"]}


def _checks(devices: int, names: list[str]) -> None:
    out = subprocess.run([sys.executable, "sharded_checks.py", str(devices), *names], env=ENV, cwd=TESTS,
                         capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout[-3000:] + out.stderr[-5000:]


@pytest.mark.parametrize("devices", [4, 8])
def test_particle_drivers_match_one_device(devices):
    _checks(devices, FAST[devices])


@pytest.mark.slow
@pytest.mark.parametrize("devices", [4, 8])
def test_more_particle_drivers_match_one_device(devices):
    _checks(devices, SLOW[devices])


def test_two_processes_match_one_process():
    """Two processes of 2 CPU devices each, JAX's CPU collectives (gloo) between them: each holds half the particles,
    and the gathered result is one device's."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    processes = [subprocess.Popen([sys.executable, "multihost_checks.py", str(i), str(port)], env=ENV, cwd=TESTS,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in processes]
    for p, (stdout, stderr) in zip(processes, outs):
        assert p.returncode == 0 and stdout.strip().endswith("ok"), stdout[-3000:] + stderr[-5000:]


def test_a_mesh_of_one_device_runs_the_collectives_as_one_device():
    """The sharded programs (shard_map, the ring, the prefix sum) on this process's one device."""
    from sharded_checks import FLAGS, OBS, lgssm

    one = smc.run(jax.random.key(0), lgssm, (FLAGS,), OBS, 64, ess_threshold=0.8)
    mesh = smc.run(jax.random.key(0), lgssm, (FLAGS,), OBS, 64, ess_threshold=0.8, mesh=1)
    np.testing.assert_array_equal(one.history.ancestors, mesh.history.ancestors)
    np.testing.assert_array_equal(one.choices["steps"]["x"], mesh.choices["steps"]["x"])


def test_mesh_argument_errors_name_the_fix():
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        sharding.mesh_of(len(jax.devices()) + 1)
    with pytest.raises(ValueError, match="one axis"):
        sharding.mesh_of(jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("a", "b")))
    with pytest.raises(TypeError, match="Mesh, a device count or None"):
        sharding.mesh_of("gpu")
    with pytest.raises(ValueError, match="n_particles \\(10\\) must be a multiple .* use n_particles=12"):
        sharding.check_size(jax.sharding.Mesh(np.array(jax.devices()[:1] * 4), ("p",)), 10, "n_particles")
    with pytest.raises(ValueError, match="resampling_scope='island' .* needs mesh="):
        smc.SMCConfig(8, resampling_scope="island")
    with pytest.raises(ValueError, match="cumulative_weights"):
        smc.SMCConfig(8, cumulative_weights="psum")
