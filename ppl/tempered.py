"""A generative function with its likelihood tempered: the density p(x) L(x)^β of an SMC sampler's stage."""

from __future__ import annotations

import equinox as eqx
import jax

from .core import GenFn
from .errors import ModelError
from .selection import Selection

__all__ = ["Tempered"]


class Tempered(GenFn):
    """`model` with its likelihood raised to the power `beta`: the density γ_β(x) = p(x) L(x)^β.

    L(x) is the density of the `likelihood` addresses (the observed ones) and of every
    `ppl.factor`, `model.project(trace, likelihood)`. The density of `assess` and the
    weights of `generate`, `update` and `regenerate` are the model's with log L scaled
    by β, so any `inference.mcmc.kernels` kernel moves a model trace under γ_β:

        kernel.step(key, trace, Tempered(model, beta, ppl.sel.of(observations)), args)

    `assess` of `ppl.Unconstrained` values includes the model's Jacobians, as the
    gradient-based kernels need. Traces are the model's own, so their `score` and
    `project` are untempered; γ_β is not normalised over the observations, so it has
    no `simulate`.
    """

    model: GenFn
    beta: float | jax.Array
    likelihood: Selection = eqx.field(static=True)

    def _tempering(self, log_lik):
        """What tempering adds to a model log weight whose likelihood term is `log_lik` (log L or a difference)."""
        return -(1.0 - self.beta) * log_lik

    def _simulate(self, key, args):
        raise ModelError(
            "a tempered model has no simulate: p(x) L(x)^β is not normalised over the observations; start from "
            "model.generate(key, observations, *args) and move the trace with inference.mcmc.kernels"
        )

    def _assess(self, choices, args):
        logp, retval = self.model._assess(choices, args)
        trace, _ = self.model._generate(jax.random.key(0), choices, args)  # every choice is given: nothing is drawn
        return logp + self._tempering(trace.project(self.likelihood)), retval

    def _generate(self, key, constraints, args):
        trace, log_w = self.model._generate(key, constraints, args)
        return trace, log_w + self._tempering(trace.project(self.likelihood))

    def _update(self, key, trace, constraints, args):
        new, log_w, discard = self.model._update(key, trace, constraints, args)
        return new, log_w + self._tempering(new.project(self.likelihood) - trace.project(self.likelihood)), discard

    def _regenerate(self, key, trace, selection, args):
        new, log_w = self.model._regenerate(key, trace, selection, args)
        return new, log_w + self._tempering(new.project(self.likelihood) - trace.project(self.likelihood))
