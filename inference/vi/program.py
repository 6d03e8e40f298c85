"""Objectives as programs: a function that samples with `vi.sample` and returns a number.

    @vi.objective
    def elbo(params, observations, *args):
        q = vi.sample(guide, params, *args)                   # z ~ q_params, one gradient estimator per address
        log_p, _ = model.assess(ppl.choicemap.merge(q.choices, observations), *args)
        return log_p - q.score

    value, grads = elbo.value_and_grad(key, params, observations, *args)

The objective is the expectation of what the program returns, over every `vi.sample`
in it. `value_and_grad` returns an estimate of that expectation and an unbiased
estimate of its gradient, built from a surrogate whose gradient is the estimator
(the construction of stochastic computation graphs, Schulman et al. 2015):

    S = f + (stop(f) - b) (log q_R - stop(log q_R)) + Σ_{a in MVD} Σ_k (p_a(k) - stop(p_a(k))) stop(f_{a=k})

summed over the enumerated configurations e with weights p(e). Here f is the
program's value (pathwise gradients flow through `reparam` choices), log q_R the log
density of the `reinforce` choices, b a baseline that does not depend on them,
f_{a=k} the program run again with the `mvd` address a set to k (the same noise
elsewhere), and p(e) the probability of the `enum` choices' configuration e, whose
expectation is then exact. Each term's expectation is the gradient of E f for its
choices, so the sum is unbiased whatever the mix of estimators.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

import ppl
from ppl.choicemap import flatten

from .. import sharding
from .estimators import MVD, Enum, Reinforce, Reparam, candidates

__all__ = ["Objective", "objective", "random_key", "sample"]

_STACK: list = []  # the handlers of the programs being run, innermost last
MAX_CONFIGURATIONS = 4096


class _Record(NamedTuple):
    """What one `vi.sample` contributes to the surrogate."""

    log_q: jax.Array
    """log density of its reinforce choices."""
    log_p_enum: jax.Array
    """log probability of its enumerated choices' values."""
    log_p_mvd: dict
    """{address path: log probability of its value} for its mvd choices."""
    mvd_values: dict
    """{address path: sampled value} for its mvd choices."""


class _Handler:
    def __init__(self, key, overrides: dict, discover: bool = False):
        self.key, self.overrides, self.discover = key, overrides, discover
        self.records: dict[str, _Record] = {}
        self.specs: dict[str, dict] = {}  # discovery: {site: {path: (estimator, dtype, shape)}}
        self.count = 0  # vi.sample calls so far: the default name and the key of the next one

    def __enter__(self):
        _STACK.append(self)
        return self

    def __exit__(self, *exc):
        _STACK.pop()


def sample(gen_fn: ppl.GenFn, *args: Any, name: str | None = None, estimators: dict | None = None) -> ppl.Trace:
    """Sample a trace of `gen_fn(*args)` inside an objective program.

    Args:
        gen_fn: a generative function (a guide, or any distribution of the program).
        *args: its arguments (the variational parameters among them).
        name: the site's name, unique in the program (default: "sample0", "sample1", ... in call order).
        estimators: {address: estimator} (`vi.reparam`, `vi.reinforce`, `vi.enum(values)`,
            `vi.mvd(values)`); addresses not listed get `reparam` if floating-point, else `reinforce`.

    Returns:
        The trace; its `score` and choices are differentiable where the estimators say so.
    """
    if not _STACK:
        raise RuntimeError("vi.sample is only valid inside an @vi.objective program; call the objective's "
                           "estimate or value_and_grad instead of the program itself")
    handler = _STACK[-1]
    name = f"sample{handler.count}" if name is None else name
    if name in handler.records:
        raise ValueError(f"two vi.sample calls are named {name!r}; give each a distinct name")
    # every site folds in its index: a key used as it is by one site and derived from by another would make
    # their randomness dependent (k's random bits at counter 1 are the XOR of fold_in(k, 1)'s two words)
    key = jax.random.fold_in(handler.key, handler.count)
    handler.count += 1
    spec = _classify(gen_fn, key, args, estimators or {}, name)
    if handler.discover:
        handler.specs[name] = spec
    constraints = dict(handler.overrides.get(name, {}))
    continuous_reinforce = [p for p, (e, dtype, _) in spec.items() if isinstance(e, Reinforce)
                            and jnp.issubdtype(dtype, jnp.floating)]
    if continuous_reinforce:  # the score-function choices must not carry a pathwise gradient
        first = gen_fn.simulate(key, *args)
        constraints.update({p: jax.lax.stop_gradient(ppl.choicemap.subconstraint(first.choices, p))
                            for p in continuous_reinforce})
    trace, _ = gen_fn.generate(key, ppl.choicemap.nest(constraints), *args)
    factors = trace.project(ppl.sel.none())  # project adds every factor; keep the choices' densities only

    def log_density(paths):
        if not paths:
            return jnp.zeros(())
        selection = ppl.sel.none()
        for p in paths:
            selection = selection | ppl.sel(*p)
        return trace.project(selection) - factors

    by_kind = {kind: [p for p, (e, _, _) in spec.items() if isinstance(e, kind)] for kind in (Reinforce, Enum, MVD)}
    handler.records[name] = _Record(
        log_density(by_kind[Reinforce]),
        log_density(by_kind[Enum]),
        {p: log_density([p]) for p in by_kind[MVD]},
        {p: jax.lax.stop_gradient(ppl.choicemap.subconstraint(trace.choices, p)) for p in by_kind[MVD]},
    )
    return trace


def random_key() -> jax.Array:
    """A fresh PRNG key inside an objective program, for randomness outside `vi.sample` (e.g. an SMC run).

    Choices drawn with it get no gradient estimator of their own: only pathwise gradients
    flow through them.
    """
    if not _STACK:
        raise RuntimeError("vi.random_key is only valid inside an @vi.objective program")
    handler = _STACK[-1]
    handler.count += 1
    return jax.random.fold_in(handler.key, handler.count - 1)


def _classify(gen_fn, key, args, estimators: dict, site: str) -> dict:
    """{address path: (estimator, dtype, shape)} for every choice of the site."""
    shapes = jax.eval_shape(lambda k: gen_fn.simulate(k, *args).choices, key)
    given = {ppl.address_path(a): e for a, e in estimators.items()}
    spec = {}
    for path, sds in flatten(shapes if isinstance(shapes, dict) else {}):
        default = Reparam() if jnp.issubdtype(sds.dtype, jnp.floating) else Reinforce()
        estimator = given.pop(path, default)
        if not isinstance(estimator, (Reparam, Reinforce, Enum, MVD)):
            raise TypeError(f"the estimator for {site}/{'/'.join(map(str, path))} is {estimator!r}; use vi.reparam, "
                            "vi.reinforce, vi.enum(values) or vi.mvd(values)")
        if isinstance(estimator, Reparam) and not jnp.issubdtype(sds.dtype, jnp.floating):
            raise ValueError(f"{site}/{'/'.join(map(str, path))} is discrete and has no pathwise gradient; use "
                             "vi.reinforce, vi.enum(values) or vi.mvd(values)")
        spec[path] = (estimator, sds.dtype, sds.shape)
    if given:
        raise ValueError(f"estimators given for addresses that {site} does not sample: "
                         f"{['/'.join(map(str, p)) for p in given]}")
    return spec


class _Discrete(NamedTuple):
    site: str
    path: tuple
    values: jax.Array  # (K, *shape) candidate values


class Objective(eqx.Module):
    """A stochastic objective E[program(params, *args)], with unbiased gradient estimates."""

    program: Callable
    """A function, or a callable pytree (as `vi.elbo`'s is): under `equinox.filter_jit` its array leaves are
    traced and the others static, so an objective rebuilt from the same function and settings reuses a
    compiled program."""

    def __call__(self, *args, **kwargs):
        raise TypeError("an objective is estimated, not called: use .estimate(key, params, *args) or "
                        ".value_and_grad(key, params, *args)")

    def _discrete(self, key, params, args) -> tuple[list[_Discrete], list[_Discrete]]:
        """The enumerated and the mvd addresses, with their candidate values, found by running the program
        once in the caller's trace (so candidate values built inside the program are usable; the run's
        outputs are unused and compiled away)."""
        with _Handler(key, {}, discover=True) as handler:
            self.program(params, *args)
        found: dict = {Enum: [], MVD: []}
        for site, spec in handler.specs.items():
            for path, (estimator, dtype, shape) in spec.items():
                if isinstance(estimator, (Enum, MVD)):
                    where = f"{site}/{'/'.join(map(str, path))}"
                    values = candidates(estimator, jnp.zeros(shape, dtype), where)
                    found[type(estimator)].append(_Discrete(site, path, values))
        return found[Enum], found[MVD]

    def _run(self, key, params, args, overrides: dict):
        with _Handler(key, overrides) as handler:
            value = self.program(params, *args)
        value = jnp.asarray(value)
        if value.shape != ():
            raise ValueError(f"an objective program must return a scalar, got shape {value.shape}")
        return value, handler.records

    def _raw(self, key, params, args, enumerated: list[_Discrete], mvds: list[_Discrete]):
        """Per enumerated configuration e: (f, log q_R, log p(e), the mvd term)."""
        sizes = [d.values.shape[0] for d in enumerated]
        n_config = math.prod(sizes)
        if n_config > MAX_CONFIGURATIONS:
            raise ValueError(f"enumerating {[f'{d.site}/{d.path}' for d in enumerated]} means {n_config} runs of "
                             f"the program (more than {MAX_CONFIGURATIONS}); use vi.reinforce or vi.mvd for some")
        grid = jnp.array(list(itertools.product(*[range(k) for k in sizes])), jnp.int32).reshape(n_config, -1)

        def overrides_of(row, extra=()):
            out: dict = {}
            for d, i in zip(enumerated, row):
                out.setdefault(d.site, {})[d.path] = d.values[i]
            for (site, path), value in extra:
                out.setdefault(site, {})[path] = value
            return out

        def base(row):
            f, records = self._run(key, params, args, overrides_of(row))
            log_q = sum(r.log_q for r in records.values())
            log_p = sum(r.log_p_enum for r in records.values())
            mvd_values = [records[d.site].mvd_values[d.path] for d in mvds]
            return f, log_q, log_p, mvd_values

        f, log_q, log_p, mvd_values = jax.vmap(base)(grid)
        term = jnp.zeros_like(f)
        for j, d in enumerate(mvds):
            def alternative(row, sampled, value, j=j, d=d):
                extra = [((m.site, m.path), value if i == j else sampled[i]) for i, m in enumerate(mvds)]
                f_k, records = self._run(key, params, args, overrides_of(row, extra))
                return f_k, records[d.site].log_p_mvd[d.path]

            f_k, log_p_k = jax.vmap(lambda row, sampled: jax.vmap(lambda v: alternative(row, sampled, v))(d.values))(
                grid, mvd_values)
            p_k = jnp.exp(log_p_k)
            p_k = eqx.error_if(p_k, jnp.abs(jnp.sum(p_k, axis=1) - 1.0) > 1e-3,
                               f"the values given to vi.mvd at {d.site}/{'/'.join(map(str, d.path))} do not cover "
                               "its support (their probabilities do not sum to one)")
            term = term + jnp.sum((p_k - jax.lax.stop_gradient(p_k)) * jax.lax.stop_gradient(f_k), axis=1)
        if enumerated:
            total = jnp.sum(jnp.exp(log_p))
            log_p = eqx.error_if(log_p, jnp.abs(total - 1.0) > 1e-3,
                                 f"the values given to vi.enum at {[f'{d.site}/{d.path}' for d in enumerated]} do not "
                                 "cover the support (their probabilities do not sum to one)")
        return f, log_q, log_p, term

    def _replicas(self, key, params, args, num_samples, mesh):
        """The `num_samples` runs' raw terms, stacked; under a mesh each device runs its block of them."""
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        mesh = sharding.mesh_of(mesh)
        sharding.check_size(mesh, num_samples, "num_samples")
        enumerated, mvds = self._discrete(key, params, args)
        if num_samples == 1:  # no split: one hash fewer per step
            return jax.tree.map(lambda x: x[None], self._raw(key, params, args, enumerated, mvds))
        keys = sharding.shard(mesh, jax.random.split(key, num_samples), num_samples)
        runs = jax.vmap(lambda k: self._raw(k, params, args, enumerated, mvds))(keys)
        return sharding.shard(mesh, runs, num_samples)

    def estimate(self, key: jax.Array, params: Any, *args, num_samples: int = 1,
                 mesh: jax.sharding.Mesh | int | None = None) -> jax.Array:
        """An unbiased estimate of the objective: the mean of `num_samples` independent runs (split across
        `mesh`'s devices, see `value_and_grad`)."""
        f, _, log_p, _ = self._replicas(key, params, args, num_samples, mesh)
        return jnp.mean(jnp.sum(jnp.exp(log_p) * f, axis=1))

    def value_and_grad(self, key: jax.Array, params: Any, *args, num_samples: int = 1,
                       baseline: Any = None, mesh: jax.sharding.Mesh | int | None = None) -> tuple[jax.Array, Any]:
        """(estimate of the objective, unbiased estimate of its gradient with respect to `params`).

        Args:
            num_samples: independent runs averaged (M).
            baseline: subtracted from f in the reinforce term: None (none), a number (a
                constant or a moving average kept by the caller), or "loo" (leave-one-out:
                each run's baseline is the mean of the other M - 1 runs' values; M >= 2).
            mesh: a one-axis `jax.sharding.Mesh` or a device count D (`inference.sharding`): the M runs
                are split in D blocks, one per device (M a multiple of D), and their means (the value,
                the gradient, the "loo" baseline's sum) are reduced across devices. Each run is the one
                device's, bit for bit; the means add the same numbers in another order, so they equal
                one device's up to float32 rounding.
        """
        if isinstance(baseline, str) and (baseline != "loo" or num_samples < 2):
            raise ValueError('baseline is None, a number, or "loo" (which needs num_samples >= 2); '
                             f"got {baseline!r} with num_samples={num_samples}")

        def surrogate(params):
            f, log_q, log_p, term = self._replicas(key, params, args, num_samples, mesh)
            w = jnp.exp(log_p)
            values = jax.lax.stop_gradient(jnp.sum(w * f, axis=1))  # each run's estimate (M,)
            if isinstance(baseline, str):
                b = (jnp.sum(values) - values) / (num_samples - 1)
            else:
                b = jnp.zeros(num_samples) if baseline is None else jnp.broadcast_to(baseline, (num_samples,))
            b = jax.lax.stop_gradient(b)[:, None]
            f_stop = jax.lax.stop_gradient(f)
            runs = f + (f_stop - b) * (log_q - jax.lax.stop_gradient(log_q)) + term
            return jnp.mean(jnp.sum(w * runs, axis=1)), jnp.mean(values)

        (_, value), grads = jax.value_and_grad(surrogate, has_aux=True)(params)
        return value, grads


def objective(program: Callable) -> Objective:
    """Make `program(params, *args) -> scalar` an objective (usable as a decorator)."""
    if not callable(program):
        raise TypeError(f"vi.objective wraps a function, got {program!r}")
    return Objective(program)
