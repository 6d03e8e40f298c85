"""`vi.fit` and `scaling.Reasoner.solve_batch` with `mesh=`: the same results as on one device, in a subprocess with
8 forced CPU devices (meshes of 4 and 8 of them), since a process's device count is fixed when JAX starts."""

import os
import pathlib
import re
import subprocess
import sys

import jax
import pytest

import ppl
from inference.scaling import bench

VI = r'''
import re
import jax, jax.numpy as jnp, numpy as np, optax
import ppl
from ppl import dist
from inference import vi


@ppl.gen
def model():
    z = dist.Normal(0.0, 1.0) @ "z"
    dist.Normal(z, 0.5) @ "x"


@ppl.gen
def guide(p):
    dist.Normal(p["loc"], jnp.exp(p["log_scale"])) @ "z"


params, obs = {"loc": jnp.zeros(()), "log_scale": jnp.zeros(())}, {"x": jnp.array(1.3)}
elbo = vi.elbo(model, guide)
key = jax.random.key(0)
close = lambda a, b: jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)
# one run a device: each device's run is the one device's, and the mean of 4 adds them in the same order
assert elbo.estimate(key, params, obs, num_samples=4) == elbo.estimate(key, params, obs, num_samples=4, mesh=4)
gradient = {mesh: jax.jit(lambda p, mesh=mesh: elbo.value_and_grad(key, p, obs, num_samples=16, mesh=mesh))
            for mesh in (None, 4)}
close(gradient[None](params), gradient[4](params))  # 4 runs a device: the sum over devices adds in another order
assert "all-reduce" in gradient[4].lower(params).compile().as_text()  # the gradient is summed across devices
fits = [vi.fit(jax.random.key(1), elbo, params, obs, optimizer=optax.adam(0.05), steps=30, num_samples=16,
               progress_bar=False, mesh=mesh) for mesh in (None, 8)]
close(fits[0].params, fits[1].params)
close(fits[0].values, fits[1].values)
assert len(fits[1].params["loc"].sharding.device_set) == 8 and fits[1].params["loc"].sharding.is_fully_replicated
for bad, error in ((dict(num_samples=12, mesh=8), "num_samples \(12\) must be a multiple"),
                   (dict(num_samples=8, mesh=16), "asks for 16 devices")):
    try:
        vi.fit(key, elbo, params, obs, optimizer=optax.adam(0.05), steps=1, progress_bar=False, **bad)
        raise AssertionError(f"{bad} was accepted")
    except ValueError as e:
        assert re.search(error, str(e)), e
print("vi ok")
'''

SCALING = r'''
import sys
import jax, numpy as np
import ppl
from inference import scaling

methods, count = tuple(sys.argv[1].split(",")), int(sys.argv[2])  # the methods, and the questions (= devices)
reasoner = scaling.Reasoner(ppl.lm.load(), n_steps=1, step_tokens=4)
questions = [p.question for p in scaling.load_problems(scaling.default_data_path(), count, 10)]
keys = jax.random.split(jax.random.key(1), count)
placed = []  # the candidates solve_batch waits for: where they were computed
wait = jax.block_until_ready
jax.block_until_ready = lambda x: placed.append(x.states.tokens.sharding) or wait(x)
one, sharded = (reasoner.solve_batch(keys, questions, methods, budget=2, mesh=mesh) for mesh in (None, count))
assert all(len(p.device_set) == count and not p.is_fully_replicated for p in placed[len(placed) // 2:]), placed
for a, b in zip(one, sharded):  # a question's particles stay on its device: nothing is reduced across devices
    for method in methods:
        x, y = a[method], b[method]
        assert x.texts == y.texts and x.answer == y.answer and x.tokens_generated == y.tokens_generated, method
        np.testing.assert_array_equal(x.log_weights, y.log_weights)
try:
    reasoner.solve_batch(keys[:3], questions[:3], methods, budget=2, mesh=count)
    raise AssertionError("3 questions were accepted")
except ValueError as e:
    assert f"len(questions) (3) must be a multiple of the mesh's {count} devices" in str(e), e
print("scaling ok")
'''


def _run(*argv: str) -> str:
    """Run `python -c argv...` with 8 CPU devices; its output."""
    tests = pathlib.Path(__file__).resolve().parent
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "PYTHONPATH": os.pathsep.join([str(tests.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", *argv], env=env, capture_output=True, text=True, cwd=tests,
                         check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_vi_samples_on_4_and_8_devices_and_questions_on_4_match_one_device():
    """One process (JAX's start is paid once): the VI checks, then particle filtering on 4 questions."""
    out = _run(VI + SCALING, "pf", "4")
    assert "vi ok" in out and "scaling ok" in out, out


@pytest.mark.slow
def test_every_scaling_method_with_questions_on_8_devices_matches_one_device():
    out = _run(SCALING, "pf,pgibbs,beam,weighted", "8")
    assert "scaling ok" in out, out


@pytest.mark.parametrize("argv, message", [
    (["--devices", "2", "--problems", "3"], r"--devices 2: --batch \(2\) and --problems \(3\) must be multiples of it"),
    (["--devices", "2", "--batch", "3"], r"--devices 2: --batch \(3\) and --problems \(10\) must be multiples of it"),
    (["--devices", str(jax.device_count() + 1), "--problems", str(jax.device_count() + 1)],
     "set XLA_FLAGS=--xla_force_host_platform_device_count=" + str(jax.device_count() + 1)),
])
def test_bench_devices_are_checked_before_the_model_loads(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(ppl.lm, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert re.search(message, capsys.readouterr().err)
