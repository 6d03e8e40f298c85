"""Distributions as leaf generative functions, backed by numpyro.

`ppl.dist.Normal(0.0, 1.0)` builds `numpyro.distributions.Normal(0.0, 1.0)` and
wraps it in a `Distribution`, so it can be used as `dist.Normal(0.0, 1.0) @ "x"`.
Every density comes from numpyro's `log_prob`, summed over batch and event
dimensions (a batched distribution at one address is one choice holding an array).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd

from . import streams
from .choicemap import Masked, Unconstrained
from .core import Call, GenFn, Trace
from .errors import ModelError
from .selection import Selection

__all__ = ["ChoiceTrace", "Distribution", "wrap"]


# How leaves treat unconstrained space, set by `ppl.unconstrained` around a run of a model:
# None (normal), ("uniform", radius): unsampled continuous choices are drawn uniformly
# in (-radius, radius) on the unconstrained space (Stan's and numpyro's default MCMC
# initialisation, which also works for improper priors), "inverse": constrained
# values are mapped to the unconstrained space and the trace holds those, or "pointwise"
# (set by `ppl.log_densities`): a constrained choice's trace holds its log density per batch element.
_LEAF_MODE: contextvars.ContextVar = contextvars.ContextVar("ppl_leaf_mode", default=None)


@contextlib.contextmanager
def leaf_mode(mode):
    """Run the model's leaves in `mode` (see `_LEAF_MODE`); for `ppl.unconstrained` and `ppl.log_densities`."""
    token = _LEAF_MODE.set(mode)
    try:
        yield
    finally:
        _LEAF_MODE.reset(token)


class ChoiceTrace(Trace):
    """The trace of one random choice: its value and log density."""

    value: Any
    log_density: jax.Array

    @property
    def choices(self):
        return self.value

    @property
    def score(self):
        return self.log_density

    @property
    def retval(self):
        return self.value

    def project(self, selection: Selection):
        return self.log_density if selection.selects_here() else jnp.zeros(())

    def log_densities(self):
        return self.log_density


class _InverseTrace(ChoiceTrace):
    """A choice whose `choices` are its unconstrained value (the model still sees `value`)."""

    unconstrained: Any

    @property
    def choices(self):
        return self.unconstrained


class Distribution(GenFn):
    """A numpyro distribution as a generative function with one random choice."""

    dist: nd.Distribution

    def __matmul__(self, address) -> Any:
        return Call(self, ()) @ address

    def __repr__(self) -> str:
        return f"ppl.dist.{type(self.dist).__name__}(batch_shape={self.dist.batch_shape}, event_shape={self.dist.event_shape})"

    # --- numpyro's distribution API, kept wrapped ---

    @property
    def support(self):
        """The numpyro constraint on this distribution's values."""
        return self.dist.support

    @property
    def to_constrained(self):
        """The numpyro bijection from unconstrained reals to the support (for HMC, VI)."""
        return nd.biject_to(self.dist.support)

    @property
    def shape(self) -> tuple:
        """The shape of one value: `batch_shape + event_shape`."""
        return tuple(self.dist.batch_shape) + tuple(self.dist.event_shape)

    @property
    def is_discrete(self) -> bool:
        return bool(self.dist.support.is_discrete)

    def mask(self, mask) -> Distribution:
        """Mask out batch elements: their log density counts as 0."""
        return Distribution(self.dist.mask(mask))

    def expand(self, batch_shape) -> Distribution:
        return Distribution(self.dist.expand(batch_shape))

    def to_event(self, reinterpreted_batch_ndims=None) -> Distribution:
        return Distribution(self.dist.to_event(reinterpreted_batch_ndims))

    def validate(self) -> Distribution:
        """This distribution, after raising a `ModelError` if a concrete parameter is outside its constraint."""
        _valid_parameters(self.dist)
        return self

    def log_prob(self, value) -> jax.Array:
        """Total log density of `value` (summed over batch and event dimensions).

        It is -inf, not NaN, where `value` is outside the support (masked-out elements aside), or where a traced
        parameter is outside its constraint: a scale that is an observed or sampled value outside its own
        support, say, where the joint density is 0. A concrete parameter outside its constraint raises.
        """
        valid = jnp.all(_in_support(self.dist, value)) & _valid_parameters(self.dist)
        return jnp.where(valid, jnp.sum(self.dist.log_prob(value)), -jnp.inf)

    def elementwise_log_prob(self, value) -> jax.Array:
        """The log density of each batch element of `value` (event dimensions summed), shape `batch_shape`:
        -inf where the element is outside the support or a traced parameter outside its constraint."""
        valid = _in_support(self.dist, value) & _valid_parameters(self.dist)
        return jnp.where(valid, self.dist.log_prob(value), -jnp.inf)

    # --- the GFI ---

    def _from_unconstrained(self, u) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(x, log p(x), log |dx/du|) for an unconstrained value `u`. x is in the support by construction, so only
        the parameters are checked: a support check would cost every gradient of NUTS a pass over x for nothing."""
        transform = self.to_constrained
        x = transform(u)
        logp = jnp.where(_valid_parameters(self.dist), jnp.sum(self.dist.log_prob(x)), -jnp.inf)
        return x, logp, jnp.sum(transform.log_abs_det_jacobian(u, x))

    def _simulate(self, key, args):
        mode = _LEAF_MODE.get()
        if isinstance(mode, tuple) and not self.is_discrete:
            radius = mode[1]
            shape = self.to_constrained.inverse_shape(self.shape)
            value = self.to_constrained(jax.random.uniform(streams.as_key(key), shape, minval=-radius, maxval=radius))
        else:
            value = self._sample(key)
        return ChoiceTrace(value, self.log_prob(value))

    def _sample(self, key):
        try:
            return self.dist.sample(streams.as_key(key))
        except NotImplementedError:  # a sampler that takes Threefry keys only (jax.random.poisson)
            return self.dist.sample(streams.as_threefry_key(key))

    def _assess(self, choices, args):
        value = self._checked(choices, "value")
        if isinstance(value, Unconstrained):
            x, logp, log_jac = self._from_unconstrained(value.value)
            return logp + log_jac, x
        if isinstance(value, Masked):
            value = value.value
        return self.log_prob(value), value

    def _generate(self, key, constraints, args):
        if constraints is None:
            return self._simulate(key, args), jnp.zeros(())
        value = self._checked(constraints, "constraint")
        if isinstance(value, Unconstrained):
            x, logp, log_jac = self._from_unconstrained(value.value)
            return ChoiceTrace(x, logp), logp + log_jac
        if _LEAF_MODE.get() == "inverse" and not self.is_discrete and not isinstance(value, Masked):
            return _InverseTrace(value, jnp.zeros(()), self.to_constrained.inv(value)), jnp.zeros(())
        if isinstance(value, Masked):
            sampled = self._sample(key)
            chosen = jnp.where(value.valid, value.value, sampled)
            logp = self.log_prob(chosen)
            return ChoiceTrace(chosen, logp), jnp.where(value.valid, logp, 0.0)
        logp = self.log_prob(value)
        if _LEAF_MODE.get() == "pointwise":
            return ChoiceTrace(value, self.elementwise_log_prob(value)), logp
        return ChoiceTrace(value, logp), logp

    def _update(self, key, trace, constraints, args):
        if constraints is None:
            logp = self.log_prob(trace.value)
            return ChoiceTrace(trace.value, logp), logp - trace.score, None
        value = self._checked(constraints, "constraint")
        if isinstance(value, Unconstrained):
            raise ModelError(
                "update takes values on the constrained scale; map ppl.Unconstrained values with "
                "ppl.unconstrained.constrain first (or use generate/assess, which accept them)"
            )
        if isinstance(value, Masked):
            chosen = jnp.where(value.valid, value.value, trace.value)
            logp = self.log_prob(chosen)
            return ChoiceTrace(chosen, logp), logp - trace.score, Masked(trace.value, value.valid)
        logp = self.log_prob(value)
        return ChoiceTrace(value, logp), logp - trace.score, trace.value

    def _regenerate(self, key, trace, selection, args):
        if selection.selects_here():
            return self._simulate(key, args), jnp.zeros(())
        logp = self.log_prob(trace.value)
        return ChoiceTrace(trace.value, logp), logp - trace.score

    def _checked(self, value, what: str):
        """Check a constraint's shape and dtype against the distribution."""
        if isinstance(value, dict):
            raise ModelError(
                f"the {what} here is a dict, but this address holds a single {type(self.dist).__name__} "
                f"value of shape {self.shape}; give an array (a dict is for a call of a @ppl.gen function)"
            )
        if isinstance(value, Unconstrained):
            return Unconstrained(self._checked_unconstrained(value.value, what))
        inner = value.value if isinstance(value, Masked) else value
        arr = inner if isinstance(inner, jax.Array) else jnp.asarray(inner)
        if tuple(arr.shape) != self.shape:
            raise ModelError(
                f"the {what} has shape {tuple(arr.shape)} but {type(self.dist).__name__} here has values of shape "
                f"{self.shape} (batch {tuple(self.dist.batch_shape)}, event {tuple(self.dist.event_shape)}); "
                "reshape the value or change the distribution's parameters"
            )
        integral = jnp.issubdtype(arr.dtype, jnp.integer) or jnp.issubdtype(arr.dtype, jnp.bool_)
        if self.is_discrete and not integral:
            raise ModelError(
                f"the {what} has dtype {arr.dtype} but {type(self.dist).__name__} is discrete; "
                "pass integers (e.g. jnp.asarray(v, dtype=jnp.int32))"
            )
        if not self.is_discrete and integral:
            raise ModelError(
                f"the {what} has dtype {arr.dtype} but {type(self.dist).__name__} is continuous; "
                "pass floats (e.g. jnp.asarray(v, dtype=jnp.float32))"
            )
        if isinstance(value, Masked):  # one flag for the whole value at this address
            return Masked(arr, jnp.all(jnp.asarray(value.valid)))
        return arr


    def _checked_unconstrained(self, u, what: str) -> jax.Array:
        name = type(self.dist).__name__
        if self.is_discrete:
            raise ModelError(
                f"the {what} is ppl.Unconstrained, but {name} is discrete and has no unconstrained space; "
                "give its value directly (gradient-based kernels apply to continuous addresses only)"
            )
        u = jnp.asarray(u)
        expected = tuple(self.to_constrained.inverse_shape(self.shape))
        if tuple(u.shape) != expected:
            raise ModelError(
                f"the {what} is ppl.Unconstrained with shape {tuple(u.shape)}, but {name} here (values of shape "
                f"{self.shape}) has unconstrained values of shape {expected}; use ppl.unconstrained.unconstrain "
                "to map constrained values"
            )
        if not jnp.issubdtype(u.dtype, jnp.floating):
            raise ModelError(f"the {what} is ppl.Unconstrained with dtype {u.dtype}; unconstrained values are floats")
        return u


def _in_support(d: nd.Distribution, value) -> jax.Array:
    """Per batch element of `d`: whether `value` is in the support or masked out (`.mask`)."""
    if isinstance(d, nd.MaskedDistribution):
        return _in_support(d.base_dist, value) | jnp.logical_not(d._mask)  # numpyro keeps the mask private
    if isinstance(d, nd.Independent):
        inside = _in_support(d.base_dist, value)
        return jnp.all(inside, axis=tuple(range(inside.ndim - d.reinterpreted_batch_ndims, inside.ndim)))
    if isinstance(d, nd.ExpandedDistribution):
        return _in_support(d.base_dist, value)  # broadcasts to the expanded batch shape
    return d.support(value)


def _valid_parameters(d: nd.Distribution) -> jax.Array:
    """Whether `d`'s traced parameters satisfy their constraints; raise for a concrete one that does not.

    This is numpyro's own argument validation (which `ppl.dist` defers to here, where the address is known),
    plus a check of traced parameters, which numpyro skips. Only elementwise constraints are checked on traced
    values: they are exact and cheap, where a tolerance (a simplex's sum) could refuse a float32 softmax.
    """
    valid = jnp.asarray(True)
    for name, value in d.get_args().items():
        constraint = d.arg_constraints[name]
        if nd.constraints.is_dependent(constraint):
            continue
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(value)):
            if _elementwise(constraint):
                valid = valid & jnp.all(constraint(value))
            continue
        with jax.ensure_compile_time_eval():  # concrete values are checked now, not compiled
            satisfied = np.asarray(constraint(value))
        if not satisfied.all():
            raise ModelError(_invalid_parameter(d, name, constraint, value, satisfied))
    base = getattr(d, "base_dist", None)  # wrappers (.mask, .expand, .to_event, transforms) hold the parameters
    return valid & _valid_parameters(base) if isinstance(base, nd.Distribution) else valid


def _elementwise(constraint) -> bool:
    """Whether a constraint bounds each element on its own (positive, an interval; not a simplex, and not `real`,
    whose infinities are legitimate in a traced argument: -inf logits mask categories out)."""
    if isinstance(constraint, nd.constraints.independent):
        constraint = constraint.base_constraint
    return constraint.event_dim == 0 and not isinstance(constraint, type(nd.constraints.real))


def _invalid_parameter(d: nd.Distribution, name: str, constraint, value, satisfied: np.ndarray) -> str:
    shown = np.array2string(np.asarray(value), threshold=8)
    if satisfied.ndim:
        shown += f" (first invalid element at index {tuple(int(i) for i in np.argwhere(~satisfied)[0])})"
    hint = " (probabilities are non-negative and sum to 1: normalise them, or give logits= instead)" if (
        constraint is nd.constraints.simplex) else ""
    return (
        f"{type(d).__name__} got an invalid {name} parameter: it must satisfy {constraint!r}, got {shown}; give a "
        f"valid {name}{hint}, and where it is computed from data or from another random choice, check those values"
    )


def wrap(d: nd.Distribution) -> Distribution:
    """Make any numpyro distribution instance usable with `@`."""
    if not isinstance(d, nd.Distribution):
        raise TypeError(f"ppl.dist.wrap takes a numpyro distribution, got {type(d).__name__}")
    return Distribution(d)
