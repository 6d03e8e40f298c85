"""Sequential Monte Carlo over the time steps of a model's `ppl.scan`, as kernels on a typed state.

One idea a module, in the style of blackjax:

- `config`: `SMCConfig`, the filter's settings (typed, compared by value);
- `state`: `SMCState` (particles, log weights, log Ẑ, failure flag), `CSMCState`, `StepInfo`, `History`;
- `extend`: the primitives of a step (extend, rejuvenate, the reference's step, weigh);
- `filtering`: the particle filter, `init(key, model, args, observations, n_particles)` and `step(key, state, t)`;
- `conditional`: conditional SMC, `conditional_init` and `conditional_step`, on the same primitives;
- `lineage`: lineages of the final particles and backward simulation (`backward_sample`);
- `paris`: the PaRIS smoother of additive functionals (`paris`), and the conditional PaRIS sweep of PaRIS
  particle Gibbs (`conditional_paris`, which `pgibbs.ppg` iterates);
- `loop`: a step iterated over the T steps in one `lax.scan`, keeping a chosen record;
- `run`: the drivers `run` and `csmc` and their `SMCResult`; `kernel`: `csmc_kernel`, the move of particle Gibbs.

A step whose weights are all zero (an impossible observation) sets the state's `failed`
flag and gives log Ẑ = -inf; no NaN escapes.
"""

from .conditional import conditional_init, conditional_step
from .config import AncestorSampling, Record, SMCConfig
from .filtering import init, n_steps, step
from .kernel import CSMCMove, csmc_kernel
from .lineage import backward_sample
from .paris import Backward, PaRISResult, backward_settings, check_bound, conditional_paris, functional_increment, paris
from .run import SMCResult, csmc, mh_rejuvenation, run
from .state import CSMCState, History, Particles, SMCState, StepInfo, Target

__all__ = ["AncestorSampling", "Backward", "CSMCMove", "CSMCState", "History", "PaRISResult", "Particles", "Record",
           "SMCConfig", "SMCResult", "SMCState", "StepInfo", "Target", "backward_sample", "backward_settings",
           "check_bound", "conditional_init", "conditional_paris", "conditional_step", "csmc", "csmc_kernel",
           "functional_increment", "init", "mh_rejuvenation", "n_steps", "paris", "run", "step"]
