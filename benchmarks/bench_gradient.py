"""The gradient of a posterior's unconstrained log density: ours (`model.assess` on `ppl.Unconstrained` leaves, as
`mcmc.nuts` computes it) against NumPyro's `potential_fn`, on every posteriordb model of `bench_nuts.py`.

    python benchmarks/bench_gradient.py [--models kidiq,eight_schools,...] [--repeats 9]

Each side runs 200 gradient steps in one jitted `fori_loop` (what a NUTS trajectory does), alone and vmapped over
4 chains; the two take turns, and each time is the median of its own repeats. It separates the cost of a gradient
from the rest of a NUTS run, which `bench_nuts.py` measures. Both sides map the same unconstrained point (the
flattened addresses in the same order) and the two gradients are checked equal first: the models are twins.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import initialize_model
from numpyro_posteriordb import MODELS

import ppl
from ppl import unconstrained
from testbed import posteriordb

STEPS, CHAINS = 200, 4


def gradients(name: str):
    """(ours, NumPyro's): each a function of a flat unconstrained position to the potential's gradient, and a start."""
    folder, np_model = MODELS[name]
    post = posteriordb.load(folder)
    info = initialize_model(jax.random.key(0), np_model, model_args=post.args, model_kwargs=post.observations)
    z_np, unravel_np = ravel_pytree(info.param_info.z)
    trace = unconstrained.init_uniform(jax.random.key(0), post.model, post.args, post.observations)
    u = ppl.choicemap.latents(unconstrained.unconstrain(post.model, post.args, trace.choices), post.observations)
    z_ours, unravel = ravel_pytree(u)

    def ours(z):
        choices = ppl.choicemap.merge(unconstrained.wrap(unravel(z)), post.observations)
        return -post.model.assess(choices, *post.args)[0]

    grad_ours, grad_np = jax.grad(ours), jax.grad(lambda z: info.potential_fn(unravel_np(z)))
    if z_ours.shape != z_np.shape or not np.allclose(grad_ours(z_ours), grad_np(z_ours), rtol=1e-3, atol=1e-3):
        raise AssertionError(f"{name}: the NumPyro twin's gradient differs from ours at the same point")
    return (grad_ours, z_ours), (grad_np, z_np)


def loop(grad, chains: bool):
    step = jax.vmap(grad) if chains else grad
    return jax.jit(lambda z: jax.lax.fori_loop(0, STEPS, lambda i, x: x - 1e-6 * step(x), z))


def seconds(fn, x, number: int = 20) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        out = fn(x)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    print(f"{STEPS} gradients in a jitted loop; jax {jax.__version__}; median of {args.repeats} repeats")
    print(f"{'model':<15}{'chains':>7}{'ours (us)':>11}{'numpyro (us)':>14}{'ratio ours/numpyro':>20}")
    for name in args.models.split(","):
        (g_ours, z_ours), (g_np, z_np) = gradients(name)
        for chains in (False, True):
            x_ours = jnp.stack([z_ours + 0.01 * i for i in range(CHAINS)]) if chains else z_ours
            x_np = jnp.stack([z_np + 0.01 * i for i in range(CHAINS)]) if chains else z_np
            f_ours, f_np = loop(g_ours, chains), loop(g_np, chains)
            jax.block_until_ready((f_ours(x_ours), f_np(x_np)))
            ours, theirs = [], []
            for _ in range(args.repeats):  # the two take turns
                ours.append(seconds(f_ours, x_ours))
                theirs.append(seconds(f_np, x_np))
            o, n = np.median(ours), np.median(theirs)
            print(f"{name:<15}{CHAINS if chains else 1:>7}{o * 1e6:>11.1f}{n * 1e6:>14.1f}{o / n:>20.3f}")


if __name__ == "__main__":
    main()
