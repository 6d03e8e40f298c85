"""Jitted GFI calls of a model with > 1,000 choices against the same density hand-written in JAX.

Model: hierarchical linear regression, 3 global parameters, J = 50 group
effects (ppl.vmap), N = 2,000 observations (ppl.vmap): 2,053 choices.

    python benchmarks/bench_gfi.py [--repeats 7]

Prints time per call and the ratio ours / hand-written
(goal <= 1.05) for: assess (log joint), generate (sample latents, score the
observations), the gradient of assess, and each of those over a batch of 256
(every row of a batch scores the same observations on both sides). The two sides
take turns, twice each, and each time is the median of all its own blocks of
calls. Also prints compile times.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

import ppl
from ppl import dist

J, N = 50, 2000


@ppl.gen
def group_effect(tau):
    return dist.Normal(0.0, tau) @ "b"


@ppl.gen
def observation(x, g, alpha, beta, effects, sigma):
    return dist.Normal(alpha + beta * x + effects[g], sigma) @ "y"


@ppl.gen
def model(xs, groups):
    alpha = dist.Normal(0.0, 5.0) @ "alpha"
    beta = dist.Normal(0.0, 5.0) @ "beta"
    tau = dist.HalfNormal(1.0) @ "tau"
    sigma = dist.HalfNormal(1.0) @ "sigma"
    effects = ppl.repeat(group_effect, J)(tau) @ "groups"
    return ppl.vmap(observation, in_axes=(0, 0, None, None, None, None))(xs, groups, alpha, beta, effects, sigma) @ "obs"


def halfnormal_logpdf(x, scale):
    return jnp.where(x >= 0, jnp.log(2.0) + norm.logpdf(x, 0.0, scale), -jnp.inf)


def hand_log_joint(c, xs, groups, ys):
    b = c["groups"]["b"]
    mean = c["alpha"] + c["beta"] * xs + b[groups]
    return (
        norm.logpdf(c["alpha"], 0.0, 5.0)
        + norm.logpdf(c["beta"], 0.0, 5.0)
        + halfnormal_logpdf(c["tau"], 1.0)
        + halfnormal_logpdf(c["sigma"], 1.0)
        + jnp.sum(norm.logpdf(b, 0.0, c["tau"]))
        + jnp.sum(norm.logpdf(ys, mean, c["sigma"]))
    )


def hand_generate(key, xs, groups, ys):
    """Sample the latents from the prior; the weight is the likelihood of ys."""
    k = jax.random.split(key, 5)
    alpha = 5.0 * jax.random.normal(k[0])
    beta = 5.0 * jax.random.normal(k[1])
    tau = jnp.abs(jax.random.normal(k[2]))
    sigma = jnp.abs(jax.random.normal(k[3]))
    b = tau * jax.random.normal(k[4], (J,))
    return jnp.sum(norm.logpdf(ys, alpha + beta * xs + b[groups], sigma))


def first_call(fn, *args) -> float:
    """Seconds of the first call: tracing and compilation included."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def per_call(fn, *args, repeats: int, number: int) -> list[float]:
    """Seconds per call of `repeats` blocks of `number` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            out = fn(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t0) / number)
    return times


def side_by_side(f_ours, f_hand, x, repeats: int, number: int) -> tuple[float, float, float, float]:
    """(compile ours, compile hand, median per call ours, median per call hand): the two take turns, twice each,
    and each median is over all of its own blocks, by the same rule for both."""
    c_o, c_h = first_call(f_ours, x), first_call(f_hand, x)
    ours, hand = [], []
    for _ in range(2):
        ours += per_call(f_ours, x, repeats=repeats, number=number)
        hand += per_call(f_hand, x, repeats=repeats, number=number)
    return c_o, c_h, float(np.median(ours)), float(np.median(hand))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()

    key = jax.random.key(0)
    xs = jax.random.normal(key, (N,))
    groups = jax.random.randint(jax.random.key(1), (N,), 0, J)
    truth = model.simulate(jax.random.key(2), xs, groups)
    ys = truth["obs", "y"]
    obs = {"obs": {"y": ys}}
    choices = truth.choices
    keys = jax.random.split(key, args.batch)
    # the batch's latents vary; every row scores the same observed ys, as the hand-written density does
    batch_choices = jax.vmap(lambda k: {**model.simulate(k, xs, groups).choices, "obs": {"y": ys}})(keys)
    n_choices = sum(np.size(leaf) for leaf in jax.tree.leaves(choices))

    ours = {
        "assess": jax.jit(lambda c: model.assess(c, xs, groups)[0]),
        "generate": jax.jit(lambda k: model.generate(k, obs, xs, groups)[1]),
        "grad assess": jax.jit(jax.grad(lambda c: model.assess(c, xs, groups)[0])),
    }
    hand = {
        "assess": jax.jit(lambda c: hand_log_joint(c, xs, groups, ys)),
        "generate": jax.jit(lambda k: hand_generate(k, xs, groups, ys)),
        "grad assess": jax.jit(jax.grad(lambda c: hand_log_joint(c, xs, groups, ys))),
    }
    inputs = {"assess": choices, "generate": key, "grad assess": choices}
    batch_inputs = {"assess": batch_choices, "generate": keys, "grad assess": batch_choices}

    print(f"model: hierarchical regression, {n_choices} choices; median of {args.repeats} repeats")
    print(f"{'call':<24}{'ours (us)':>12}{'hand (us)':>12}{'ratio':>8}{'compile ours (s)':>18}{'compile hand (s)':>18}")
    for name, ours_fn in ours.items():
        for batched in (False, True):
            f_ours = jax.jit(jax.vmap(ours_fn)) if batched else ours_fn
            f_hand = jax.jit(jax.vmap(hand[name])) if batched else hand[name]
            x = batch_inputs[name] if batched else inputs[name]
            number = 20 if batched else 200
            c_o, c_h, t_o, t_h = side_by_side(f_ours, f_hand, x, args.repeats, number)
            label = f"{name}{f' x{args.batch}' if batched else ''}"
            print(f"{label:<24}{t_o * 1e6:>12.1f}{t_h * 1e6:>12.1f}{t_o / t_h:>8.3f}{c_o:>18.3f}{c_h:>18.3f}")

    # the public methods compile themselves (equinox.filter_jit): dispatch cost of an eager call
    model.assess(choices, xs, groups)
    t_public = np.median(per_call(lambda c: model.assess(c, xs, groups)[0], choices, repeats=args.repeats, number=200))
    t_jit = np.median(per_call(ours["assess"], choices, repeats=args.repeats, number=200))
    print(f"\neager model.assess(...) call: {t_public * 1e6:.1f} us (inside jax.jit: {t_jit * 1e6:.1f} us)")


if __name__ == "__main__":
    main()
