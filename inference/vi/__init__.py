"""Programmable variational inference: objectives are programs, gradient estimators are chosen per address.

    from inference import vi

    objective = vi.elbo(model, guide)                       # or a program of your own, @vi.objective
    fit = vi.fit(key, objective, params, observations, optimizer=optax.adam(1e-2), steps=2000)
"""

from .estimators import enum, mvd, reinforce, reparam
from .fit import FitResult, fit
from .objectives import elbo, iwae
from .program import Objective, objective, sample

__all__ = ["FitResult", "Objective", "elbo", "enum", "fit", "iwae", "mvd", "objective", "reinforce", "reparam", "sample"]
