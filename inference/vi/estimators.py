"""How the gradient of an expectation is estimated, chosen per address of a sampled generative function.

    q = vi.sample(guide, params, estimators={"z": vi.enum(jnp.arange(3)), "b": vi.mvd()})

- `reparam`: the value is a differentiable function of the parameters and fixed noise
  (numpyro's reparameterised samplers); the default for floating-point choices.
- `reinforce`: the score function, f ∇ log q(z), with the objective's baseline
  subtracted; the default for discrete choices, and valid for any choice.
- `enum(values)`: the expectation over the address is computed exactly, as the sum
  over `values` (the whole support) weighted by their probabilities.
- `mvd(values)`: the measure-valued derivative of a discrete choice: the program is
  run again at every value of the support, and the gradient of the probabilities is
  weighted by those outcomes, ∇ E f = Σ_k ∇p_k f(k) (Pflug 1989; Mohamed et al. 2020).

`values` lists the candidate values of the whole address, one per row, as in
`mcmc.kernels.gibbs`; omitted, it is (0, 1), a Bernoulli's support. Values that miss
part of the support are an error at run time (their probabilities do not sum to one).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

__all__ = ["Enum", "MVD", "Reinforce", "Reparam", "enum", "mvd", "reinforce", "reparam"]


class Reparam(NamedTuple):
    """Pathwise gradient through the sampled value."""


class Reinforce(NamedTuple):
    """Score-function gradient with the objective's baseline."""


class Enum(NamedTuple):
    """Exact expectation over the listed values (the whole support)."""

    values: Any = None


class MVD(NamedTuple):
    """Measure-valued derivative over the listed values (the whole support)."""

    values: Any = None


reparam = Reparam()
reinforce = Reinforce()


def enum(values: Any = None) -> Enum:
    """Enumerate the address over `values` (rows: candidate values; None for (0, 1))."""
    return Enum(None if values is None else jnp.asarray(values))


def mvd(values: Any = None) -> MVD:
    """Measure-valued derivative over `values` (rows: candidate values; None for (0, 1))."""
    return MVD(None if values is None else jnp.asarray(values))


def candidates(estimator: Enum | MVD, value: Any, where: str) -> jnp.ndarray:
    """The candidate values of a discrete address, checked against the sampled value's shape and dtype."""
    value = jnp.asarray(value)
    if jnp.issubdtype(value.dtype, jnp.floating):
        raise ValueError(f"{type(estimator).__name__.lower()} at {where} needs a discrete choice, but it is "
                         "continuous; use vi.reparam or vi.reinforce")
    if estimator.values is None:  # a Bernoulli's support; the probability check catches any other
        if value.shape:
            raise ValueError(f"give the support of {where} as values (one candidate value of the whole address "
                             "per row); only a scalar choice has a default, (0, 1)")
        return jnp.array([0, 1]).astype(value.dtype)
    values = estimator.values
    if values.shape[1:] != value.shape:
        raise ValueError(f"the values for {where} have rows of shape {values.shape[1:]} but the address holds "
                         f"shape {value.shape}; give one candidate value of the whole address per row")
    return values.astype(value.dtype)
