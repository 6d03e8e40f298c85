"""Random model structures for property tests of the generative function interface.

A spec is a small tree; `build(spec)` turns it into a generative function that
takes one float `u` and returns one float, so specs nest freely:

- ("normal",) / ("gamma",) / ("bernoulli",) / ("categorical",) / ("mvnormal",): one choice at "v"
  whose parameters depend on `u`;
- ("seq", [specs]): a @ppl.gen calling each child at "c0", "c1", ... (and a ppl.factor);
- ("vmap", spec, n) / ("repeat", spec, n): n copies;
- ("scan", spec, T): T steps threading the float;
- ("cond", spec_a, spec_b): a Bernoulli picks the branch.
"""

from __future__ import annotations

import jax.numpy as jnp
from hypothesis import strategies as st

import ppl
from ppl import dist

LEAVES = ["normal", "gamma", "bernoulli", "categorical", "mvnormal"]


def specs(max_depth: int = 3):
    leaf = st.sampled_from(LEAVES).map(lambda k: (k,))

    def extend(children):
        return st.one_of(
            st.lists(children, min_size=1, max_size=3).map(lambda cs: ("seq", cs)),
            st.tuples(st.just("vmap"), children, st.integers(0, 3)),
            st.tuples(st.just("repeat"), children, st.integers(1, 3)),
            st.tuples(st.just("scan"), children, st.integers(0, 3)),
            st.tuples(st.just("cond"), children, children),
        )

    return st.recursive(leaf, extend, max_leaves=6).map(lambda s: s if s[0] == "seq" else ("seq", [s]))


def _leaf(kind: str) -> ppl.GenFn:
    @ppl.gen
    def leaf(u):
        u = jnp.tanh(u)  # keep parameters in a sane range however deep the nesting
        if kind == "normal":
            v = dist.Normal(u, 1.5) @ "v"
        elif kind == "gamma":
            v = dist.Gamma(2.0 + u, 1.0) @ "v"
        elif kind == "bernoulli":
            v = dist.Bernoulli(logits=u) @ "v"
        elif kind == "categorical":
            v = dist.Categorical(logits=jnp.stack([u, -u, 0.5 * u])) @ "v"
        else:
            v = jnp.sum(dist.MultivariateNormal(jnp.stack([u, -u]), jnp.array([[1.0, 0.3], [0.3, 2.0]])) @ "v")
        return jnp.asarray(v, jnp.float32)

    return leaf


def build(spec) -> ppl.GenFn:
    kind = spec[0]
    if kind in LEAVES:
        return _leaf(kind)
    if kind == "seq":
        children = [build(c) for c in spec[1]]

        @ppl.gen
        def seq(u):
            total = u
            for i, child in enumerate(children):
                total = total + 0.5 * (child(total) @ f"c{i}")
            ppl.factor(-0.1 * total**2)
            return total

        return seq
    if kind in ("vmap", "repeat"):
        inner, n = build(spec[1]), spec[2]

        @ppl.gen
        def plate(u):
            if kind == "vmap":
                values = ppl.vmap(inner)(u + jnp.arange(n, dtype=jnp.float32)) @ "xs"
            else:
                values = ppl.repeat(inner, n)(u) @ "xs"
            return u + jnp.sum(values)

        return plate
    if kind == "scan":
        inner, T = build(spec[1]), spec[2]

        @ppl.gen
        def chain(u):
            carries = ppl.scan(inner, length=T)(u) @ "steps"
            return u + jnp.sum(carries)

        return chain
    if kind == "cond":
        a, b = _under("a", build(spec[1])), _under("b", build(spec[2]))

        @ppl.gen
        def branch(u):
            flip = dist.Bernoulli(0.4) @ "flip"
            return ppl.cond(a, b)(flip == 1, u) @ "br"

        return branch
    raise ValueError(spec)


def _under(address: str, inner: ppl.GenFn) -> ppl.GenFn:
    """`inner` called at `address`, so two branches never share an address."""

    @ppl.gen
    def wrapped(u):
        return inner(u) @ address

    return wrapped
