"""Programmable variational inference: objectives are programs, gradient estimators are chosen per address.

    from inference import vi

    objective = vi.elbo(model, guide)                       # or a program of your own, @vi.objective
    fit = vi.fit(key, objective, params, observations, optimizer=optax.adam(1e-2), steps=2000)
"""

from .autoguide import AutoGuide, autoguide
from .estimators import enum, mvd, reinforce, reparam
from .fit import FitResult, fit
from .objectives import elbo, hvi, iwae, rws, smc_elbo, wake_p, wake_q
from .posterior import draws
from .program import Objective, objective, random_key, sample

__all__ = [
    "AutoGuide", "FitResult", "Objective", "autoguide", "draws", "elbo", "enum", "fit", "hvi", "iwae", "mvd",
    "objective", "random_key", "reinforce", "reparam", "rws", "sample", "smc_elbo", "wake_p", "wake_q",
]
