"""Automatic guides: a Gaussian family over every continuous latent on the unconstrained space.

    guide, params = vi.autoguide(model, args, observations, family="mvn")
    fit = vi.fit(key, vi.elbo(model, guide), params, observations, *args, optimizer=optax.adam(1e-2), steps=2000)
    draws = vi.draws(key, guide, fit.params, args)        # a `Draws`: summary(), to_arviz()

The latents, flattened on the unconstrained space (numpyro's bijections, as
`ppl.unconstrained` and NUTS use them), form one vector u ∈ R^D. The guide draws u
from a numpyro distribution and maps it to the model's constrained scale by running
the model itself on `ppl.Unconstrained` values, which also gives the log-Jacobian;
so supports that depend on other choices (`Uniform(0, theta)`) are handled, as
NumPyro's `AutoContinuous` handles them. The guide's choices are the model's latent
addresses on the constrained scale, its score log q(x) = log q(u) - log |dx/du|.

Families (as NumPyro's autoguides of the same names):

| family | q(u) | parameters |
|---|---|---|
| "normal" | mean-field Normal (AutoNormal) | loc, raw_scale (scale = softplus) |
| "mvn" | full-rank MultivariateNormal (AutoMultivariateNormal) | loc, raw_scale_tril (diagonal through softplus) |
| "lowrank" | LowRankMultivariateNormal, rank r (AutoLowRankMultivariateNormal) | loc, cov_factor (D, r), raw_scale |
| "delta" | a point mass (AutoDelta): maximum a posteriori on the constrained scale, score 0 | loc |

The location starts where NumPyro's `init_to_uniform` starts it (uniform in (-2, 2)
on the unconstrained space, fixed seed) or at the prior median (`init="median"`), the
scales at `init_scale`.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as nd

import ppl
from ppl.choicemap import flatten, latents, merge, nest, normalize

from .. import inputs

__all__ = ["AutoGuide", "AutoGuideTrace", "Family", "autoguide"]

Family = Literal["normal", "mvn", "lowrank", "delta"]
FAMILIES = ("normal", "mvn", "lowrank", "delta")
MEDIAN_DRAWS = 15  # prior draws for init="median", as NumPyro's init_to_median


def _inverse_softplus(x: float) -> float:
    return math.log(math.expm1(x))


class AutoGuideTrace(ppl.Trace):
    """A draw of an autoguide: the latents on the constrained scale and log q of them (a joint density)."""

    values: dict
    log_q: jax.Array
    stored_args: tuple

    @property
    def choices(self) -> dict:
        return self.values

    @property
    def score(self) -> jax.Array:
        return self.log_q

    @property
    def retval(self) -> dict:
        return self.values

    @property
    def args(self) -> tuple:
        return self.stored_args

    def project(self, selection: ppl.Selection) -> jax.Array:
        coverage = _coverage(selection, [p for p, _ in flatten(self.values)])
        return self.log_q if coverage == "all" else jnp.zeros(())

    def log_densities(self) -> Any:
        raise ppl.ModelError("an autoguide's density is joint over all its addresses: it has no log density per "
                             "address (use trace.score)")


def _coverage(selection: ppl.Selection, paths: list) -> str:
    """"all", "none" or "some" of the `paths` selected; a joint density can be split only at all or none."""
    picked = [functools.reduce(lambda s, k: s.step(k), p, selection).selects_here() for p in paths]
    if all(picked):
        return "all"
    if not any(picked):
        return "none"
    raise ppl.ModelError("an autoguide's density is joint over its addresses, so it can select all of them or none; "
                         f"this selection picks {sum(picked)} of {len(paths)}. Write a guide by hand (@ppl.gen) to "
                         "treat addresses separately (e.g. vi.reinforce on one of them)")


class AutoGuide(ppl.GenFn):
    """`guide(params, *args)`: the model's latents drawn through a Gaussian family on the unconstrained space."""

    model: ppl.GenFn
    observations: dict
    family: str = eqx.field(static=True)
    paths: tuple = eqx.field(static=True)
    """The latent addresses, in the order their unconstrained values are laid out in u."""
    shapes: tuple = eqx.field(static=True)
    """Each address's unconstrained shape."""

    def q(self, params: dict) -> nd.Distribution:
        """The numpyro distribution of u (event shape (D,))."""
        loc = params["loc"]
        if self.family == "normal":
            return nd.Normal(loc, jax.nn.softplus(params["raw_scale"])).to_event(1)
        if self.family == "mvn":
            raw = params["raw_scale_tril"]
            tril = jnp.tril(raw, -1) + jnp.diag(jax.nn.softplus(jnp.diag(raw)))
            return nd.MultivariateNormal(loc, scale_tril=tril)
        if self.family == "lowrank":
            return nd.LowRankMultivariateNormal(loc, params["cov_factor"], jax.nn.softplus(params["raw_scale"]) ** 2)
        return nd.Delta(loc, event_dim=1)

    def _unflatten(self, u: jax.Array) -> dict:
        pieces = jnp.split(u, list(itertools.accumulate(math.prod(s) for s in self.shapes))[:-1])
        return nest({p: piece.reshape(s) for p, piece, s in zip(self.paths, pieces, self.shapes)})

    def _flatten(self, tree: dict) -> jax.Array:
        values = dict(flatten(normalize(tree)))
        return jnp.concatenate([jnp.ravel(values[p]) for p in self.paths])

    def constrain(self, u: jax.Array, args: tuple) -> tuple[dict, jax.Array]:
        """(the latents x(u) on the constrained scale, log |dx/du|), from one run of the model."""
        key = jax.random.key(0)  # every address is given: nothing is drawn
        trace, weight = self.model.generate(key, merge(ppl.unconstrained.wrap(self._unflatten(u)),
                                                       self.observations), *args)
        return latents(trace.choices, self.observations), weight - trace.score  # each latent adds log p + log |J|

    def median(self, params: dict, *args) -> dict:
        """The latents at the location of q(u), on the constrained scale (the posterior median for "normal",
        "mvn" and "lowrank", as NumPyro's `guide.median`; the MAP estimate for "delta")."""
        return self.constrain(params["loc"], args)[0]

    def _log_q(self, params, u, log_jacobian):
        return jnp.zeros(()) if self.family == "delta" else self.q(params).log_prob(u) - log_jacobian

    def _draw(self, key, args: tuple) -> AutoGuideTrace:
        params, model_args = args[0], args[1:]
        u = self.q(params).sample(ppl.streams.as_key(key))
        x, log_jacobian = self.constrain(u, model_args)
        return AutoGuideTrace(x, self._log_q(params, u, log_jacobian), args)

    def _score(self, choices: dict, args: tuple) -> AutoGuideTrace:
        params, model_args = args[0], args[1:]
        self._check_choices(choices)
        u_tree = ppl.unconstrained.unconstrain(self.model, model_args, merge(choices, self.observations))
        u = self._flatten(latents(u_tree, self.observations))
        _, log_jacobian = self.constrain(u, model_args)
        return AutoGuideTrace(normalize(choices), self._log_q(params, u, log_jacobian), args)

    def _check_choices(self, choices: dict) -> None:
        given = {p for p, _ in flatten(normalize(choices))}
        if given != set(self.paths):
            names = sorted("/".join(map(str, p)) for p in set(self.paths) ^ given)
            raise ppl.ModelError(f"an autoguide's choices are joint: give all of its addresses or none; these differ "
                                 f"from its latent addresses: {names}")

    def _simulate(self, key, args):
        return self._draw(key, args)

    def _assess(self, choices, args):
        trace = self._score(choices, args)
        return trace.score, trace.retval

    def _generate(self, key, constraints, args):
        if not constraints:
            return self._draw(key, args), jnp.zeros(())
        trace = self._score(constraints, args)
        return trace, trace.score

    def _update(self, key, trace, constraints, args):
        new = self._score(constraints if constraints else trace.choices, args)
        return new, new.score - trace.score, trace.choices if constraints else None

    def _regenerate(self, key, trace, selection, args):
        if _coverage(selection, list(self.paths)) == "all":
            return self._draw(key, args), jnp.zeros(())
        new = self._score(trace.choices, args)
        return new, new.score - trace.score


def _start(model: ppl.GenFn, args: tuple, observations: dict, init: Any) -> dict:
    """The unconstrained values of every choice at the initial location (see `autoguide`'s `init`)."""
    key = jax.random.key(0)  # a fixed seed: the same guide and parameters every time
    if isinstance(init, dict):
        choices = model.generate(key, merge(normalize(init), observations), *args)[0].choices
    elif init == "uniform":
        choices = ppl.unconstrained.init_uniform(key, model, args, observations).choices
    elif init == "median":
        draws = jax.vmap(lambda i: model.generate(ppl.Streams(key, i), observations, *args)[0].choices)(
            jnp.arange(MEDIAN_DRAWS))
        choices = jax.tree.map(lambda x: x[0], draws)
    else:
        raise ValueError(f'init must be "uniform", "median" or a choice map of initial values, got {init!r}')
    for path, x in flatten(latents(choices, observations)):
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise ppl.ModelError(f"autoguide covers continuous latents, but {'/'.join(map(str, path))!r} is "
                                 "discrete; marginalise it (ppl.mix, or ppl.factor with logsumexp), observe it, or "
                                 "write the guide by hand")
    if init == "median":  # the median of each unconstrained coordinate over the prior draws
        u = jax.vmap(lambda c: ppl.unconstrained.unconstrain(model, args, c))(draws)
        return jax.tree.map(lambda x: jnp.median(x, axis=0), u)
    return ppl.unconstrained.unconstrain(model, args, choices)


def autoguide(model: ppl.GenFn, args: tuple, observations: dict, family: Family = "normal", rank: int | None = None,
              init: Any = "uniform", init_scale: float = 0.1) -> tuple[AutoGuide, dict]:
    """An automatic guide over every latent address of `model(*args)` given `observations`, and its parameters.

    Args:
        model: the model (its latents must be continuous: marginalise discrete ones, or write the guide).
        args: the model's arguments (for the latents' shapes and the initial location).
        observations: the observed choices; the guide covers every other address.
        family: "normal", "mvn", "lowrank" or "delta" (see the module docstring).
        rank: the rank of "lowrank"'s covariance factor (default ⌈√D⌉, NumPyro's default).
        init: where the location starts: "uniform" (uniform in (-2, 2) on the unconstrained space, NumPyro's
            `init_to_uniform`; works for improper priors), "median" (each unconstrained coordinate's median
            over 15 prior draws, NumPyro's `init_to_median`; near the data's scale when the priors are) or a
            choice map of latent values.
        init_scale: the initial scale of q(u) in every coordinate.

    Returns:
        `(guide, params)`: `guide(params, *args)` is a generative function over the model's latent
        addresses (constrained scale), for `vi.elbo(model, guide)` and `guide.simulate(key, params, *args)`.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if not init_scale > 0:
        raise ValueError(f"init_scale must be positive, got {init_scale!r}")
    args, observations = inputs.model_args(args), inputs.observations(observations)
    u = dict(flatten(latents(_start(model, args, observations, init), observations)))
    if not u:
        raise ppl.ModelError("the model has no latent choice left once the observations are given: nothing to fit")
    paths = tuple(u)
    guide = AutoGuide(model, observations, family, paths, tuple(tuple(jnp.shape(u[p])) for p in paths))
    loc = guide._flatten(nest(u)).astype(jnp.float32)
    d = loc.shape[0]
    raw = jnp.full((d,), _inverse_softplus(init_scale))
    if family == "normal":
        params = {"loc": loc, "raw_scale": raw}
    elif family == "mvn":
        params = {"loc": loc, "raw_scale_tril": jnp.diag(raw)}
    elif family == "lowrank":
        r = inputs.count("rank", rank if rank is not None else math.ceil(math.sqrt(d)))
        params = {"loc": loc, "cov_factor": jnp.zeros((d, r)), "raw_scale": raw}
    else:
        params = {"loc": loc}
    return guide, params
