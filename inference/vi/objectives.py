"""Standard objectives, written as programs in the same language users write theirs in.

Conventions: the guide is called as `guide(params, *args)`; the model as `model(*args)`,
or as `model(params, *args)` with `learn_model=True` (its parameters are then learnt
too, as in a VAE's decoder or reweighted wake-sleep). Observations are the program's
first argument after the parameters, so an objective is estimated as

    objective.value_and_grad(key, params, observations, *args)

The guide's addresses are the model's latent addresses. Each factory accepts
`estimators` ({address: estimator}) for the guide's choices.

Each factory's program is a module-level function with its settings bound as pytree
children (`jax.tree_util.Partial`), not a closure made per call, so `vi.fit` compiles an
objective rebuilt from the same settings only once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jax.tree_util import Partial

import ppl

from .. import smc
from .program import Objective, objective, random_key, sample

__all__ = ["elbo", "hvi", "iwae", "rws", "smc_elbo", "wake_p", "wake_q"]


def _program(fn, *settings) -> Objective:
    """The objective of `fn(*settings, params, *args)`; its settings are traced where arrays, static otherwise."""
    return objective(Partial(fn, *settings))


def _pairs(estimators: dict | None) -> tuple:
    """{address: estimator} as (address, estimator) pairs: a pytree even where the addresses do not sort."""
    return tuple((estimators or {}).items())


def _model_args(params, args, learn_model):
    return (params, *args) if learn_model else args


def _log_joint(model, params, choices, observations, args, learn_model):
    return model.assess(ppl.choicemap.merge(choices, observations), *_model_args(params, args, learn_model))[0]


def _log_weights(model, guide, params, observations, args, k, learn_model, estimators=(), stop=False):
    """[(z_i, log p(x, z_i) - log q(z_i))] for k draws z_i ~ q (parameters cut from the draws when `stop`)."""
    guide_params = jax.lax.stop_gradient(params) if stop else params
    out = []
    for i in range(k):
        q = sample(guide, guide_params, *args, name=f"guide{i}" if k > 1 else "guide", estimators=dict(estimators))
        choices = jax.lax.stop_gradient(q.choices) if stop else q.choices
        out.append((choices, _log_joint(model, params, choices, observations, args, learn_model) - q.score))
    return out


def elbo(model: ppl.GenFn, guide: ppl.GenFn, estimators: dict | None = None, learn_model: bool = False) -> Objective:
    """The evidence lower bound E_q[log p(x, z) - log q(z)] ≤ log p(x)."""
    return _program(_elbo, model, guide, _pairs(estimators), learn_model)


def _elbo(model, guide, estimators, learn_model, params, observations, *args):
    return _log_weights(model, guide, params, observations, args, 1, learn_model, estimators)[0][1]


def iwae(model: ppl.GenFn, guide: ppl.GenFn, k: int, estimators: dict | None = None,
         learn_model: bool = False) -> Objective:
    """The importance-weighted bound E[log (1/K) Σ_k p(x, z_k) / q(z_k)] (Burda et al. 2016).

    It equals the ELBO at K = 1 and increases with K towards log p(x).
    """
    _check_k(k)
    return _program(_iwae, model, guide, k, _pairs(estimators), learn_model)


def _iwae(model, guide, k, estimators, learn_model, params, observations, *args):
    log_w = jnp.stack([w for _, w in _log_weights(model, guide, params, observations, args, k, learn_model,
                                                  estimators)])
    return logsumexp(log_w) - jnp.log(k)


def wake_p(model: ppl.GenFn, guide: ppl.GenFn, k: int, learn_model: bool = True) -> Objective:
    """Reweighted wake-sleep, wake phase for the model (Bornschein & Bengio 2015).

    Σ_k w̄_k log p_θ(x, z_k) with z_k ~ q and self-normalised weights w̄_k held fixed: its
    gradient in θ is the self-normalised importance-sampling estimate of ∇θ log p_θ(x)
    (consistent in K, biased for finite K, as in the paper). No gradient reaches the guide.
    """
    _check_k(k)
    return _program(_wake_p, model, guide, k, learn_model)


def _wake_p(model, guide, k, learn_model, params, observations, *args):
    draws = _log_weights(model, guide, params, observations, args, k, learn_model, stop=True)
    w = jax.nn.softmax(jax.lax.stop_gradient(jnp.stack([lw for _, lw in draws])))
    log_p = jnp.stack([_log_joint(model, params, z, observations, args, learn_model) for z, _ in draws])
    return jnp.sum(w * log_p)


def wake_q(model: ppl.GenFn, guide: ppl.GenFn, k: int, learn_model: bool = False) -> Objective:
    """Reweighted wake-sleep, wake phase for the guide: Σ_k w̄_k log q_φ(z_k), weights held fixed.

    Its gradient estimates ∇φ E_{p(z|x)}[log q_φ(z)], so maximising it minimises KL(p(z|x) || q_φ):
    the guide covers the posterior's mass rather than seeking a mode. No gradient reaches the model.
    """
    _check_k(k)
    return _program(_wake_q, model, guide, k, learn_model)


def _wake_q(model, guide, k, learn_model, params, observations, *args):
    draws = _log_weights(model, guide, params, observations, args, k, learn_model, stop=True)
    w = jax.nn.softmax(jax.lax.stop_gradient(jnp.stack([lw for _, lw in draws])))
    log_q = jnp.stack([guide.assess(z, params, *args)[0] for z, _ in draws])
    return jnp.sum(w * log_q)


def rws(model: ppl.GenFn, guide: ppl.GenFn, k: int) -> Objective:
    """Both wake phases in one objective (model parameters from wake-p, guide parameters from wake-q).

    The model is called as `model(params, *args)`; the two phases share their draws.
    """
    _check_k(k)
    return _program(_rws, model, guide, k)


def _rws(model, guide, k, params, observations, *args):
    draws = _log_weights(model, guide, params, observations, args, k, True, stop=True)
    w = jax.nn.softmax(jax.lax.stop_gradient(jnp.stack([lw for _, lw in draws])))
    log_p = jnp.stack([_log_joint(model, params, z, observations, args, True) for z, _ in draws])
    log_q = jnp.stack([guide.assess(z, params, *args)[0] for z, _ in draws])
    return jnp.sum(w * (log_p + log_q))


def hvi(model: ppl.GenFn, guide: ppl.GenFn, reverse: ppl.GenFn, k: int = 0, auxiliary: str = "eps",
        estimators: dict | None = None) -> Objective:
    """Hierarchical VI with an auxiliary variable: the guide draws `auxiliary` (ε) and then z given ε.

    The guide's marginal q(z) = ∫ q(z | ε) q(ε) dε is intractable; a reverse model
    `reverse(z, params, *args)`, a generative function with the choice `auxiliary`,
    approximates q(ε | z). With k = 0 this is the HVI bound (Ranganath, Tran & Blei 2016)

        E[log p(x, z) + log r(ε | z) - log q(ε, z)],

    and with k ≥ 1 the importance-weighted IWHVI bound (Sobolev & Vetrov 2019), which
    estimates log q(z) by the ε that made z together with k more draws ε_j ~ r(ε | z):

        E[log p(x, z) - log (1/(k+1)) Σ_{j=0..k} q(ε_j, z) / r(ε_j | z)].

    Both are lower bounds on the ELBO of the marginal guide, tighter as k grows.
    """
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"k (extra auxiliary draws) must be a non-negative int, got {k!r}")
    return _program(_hvi, model, guide, reverse, k, auxiliary, _pairs(estimators))


def _hvi(model, guide, reverse, k, auxiliary, estimators, params, observations, *args):
    q = sample(guide, params, *args, name="guide", estimators=dict(estimators))
    if auxiliary not in q.choices:
        raise ValueError(f"hvi: the guide has no choice at {auxiliary!r}; name its auxiliary variable's address")
    z = {a: v for a, v in q.choices.items() if a != auxiliary}
    log_p = _log_joint(model, params, z, observations, args, False)

    def log_ratio(eps):  # log q(ε, z) - log r(ε | z)
        return (guide.assess({**z, auxiliary: eps}, params, *args)[0]
                - reverse.assess({auxiliary: eps}, z, params, *args)[0])

    ratios = [q.score - reverse.assess({auxiliary: q.choices[auxiliary]}, z, params, *args)[0]]
    for j in range(k):
        r = sample(reverse, z, params, *args, name=f"reverse{j}")
        ratios.append(log_ratio(r.choices[auxiliary]))
    return log_p - (logsumexp(jnp.stack(ratios)) - jnp.log(len(ratios)))


def smc_elbo(model: ppl.GenFn, proposal, n_particles: int, **smc_options) -> Objective:
    """The SMC bound E[log Ẑ] ≤ log p(x) (filtering variational objectives: Maddison et al. 2017,
    Le et al. 2018, Naesseth et al. 2018), for a model with a `ppl.scan`.

    `proposal(params)` returns the step proposal (a generative function called as
    `proposal(observations_t, carry, *args_t)`, as in `smc.run`). Gradients flow through
    the reparameterised proposals and the weights, not through the resampling decisions:
    that drops a score-function term, so, like FIVO's, this gradient is biased.
    """
    return _program(_smc_elbo, model, proposal, n_particles, smc_options)


def _smc_elbo(model, proposal, n_particles, smc_options, params, observations, *args):
    res = smc.run(random_key(), model, args, observations, n_particles, proposal=proposal(params),
                  return_traces=False, **smc_options)
    return res.log_marginal_likelihood()


def _check_k(k) -> None:
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k (the number of importance samples) must be a positive int, got {k!r}")
