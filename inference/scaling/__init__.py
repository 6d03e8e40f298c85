"""Inference-time scaling of language models: reasoning as a state-space model whose latent states are
reasoning steps, a verifier or reward model as its likelihood, and SMC, particle Gibbs and their baselines
over it as compiled programs (see docs/scaling.md)."""

from .data import DATA_SETS, Problem, data_path, default_data_path, extract_answer, is_correct, load_problems
from .methods import Candidates, beam_search, importance_sampling, particle_filter, particle_gibbs
from .model import reasoning_model
from .potentials import LMJudge, ProcessVerifier, step_tokens
from .prm import ProcessRewardModel
from .solve import METHODS, Reasoner, Solution, select_answer
from .verifier import ArithmeticVerifier

__all__ = [
    "DATA_SETS", "METHODS", "ArithmeticVerifier", "Candidates", "LMJudge", "Problem", "ProcessRewardModel", "ProcessVerifier", "Reasoner",
    "Solution", "beam_search", "data_path", "default_data_path", "extract_answer", "importance_sampling",
    "is_correct", "load_problems", "particle_filter", "particle_gibbs", "reasoning_model", "select_answer",
    "step_tokens",
]
