"""Solving a word problem with the embedded language model and a chosen method and budget.

    reasoner = Reasoner(ppl.lm.load())                       # process verifier, 4 steps of up to 32 tokens
    result = reasoner.solve(jax.random.key(0), problem.question, method="pf", budget=4)
    result.answer, result.texts, result.tokens_generated

Methods, each with the budget N (the number of trajectories sampled side by side; how many particles,
sweeps and beams N buys each method is `budget.plan`, which `RemoteReasoner` follows too):

    pf        particle filtering, resampling at every step; answer by weighted vote
    pgibbs    particle Gibbs: conditional SMC sweeps from a first trajectory; answer by majority over the sweeps
    bon       best-of-N: N independent trajectories, the one with the highest reward
    majority  self-consistency: N independent trajectories, the most frequent answer
    weighted  N independent trajectories, answers voted with their normalised reward weights
    beam      step-level beam search: the best prefixes kept at each step, each with equally many children
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl.display import tabulated
from ppl.lm import LanguageModel, cache_slots

from .. import sharding
from . import methods
from .budget import plan
from .data import extract_answer
from .potentials import LMJudge, ProcessVerifier
from .prm import ProcessRewardModel

__all__ = ["METHODS", "Reasoner", "Solution", "chat", "normalized", "select_answer"]

METHODS = ("pf", "pgibbs", "bon", "majority", "weighted", "beam")
RULES = ("argmax", "sample", "vote", "majority")
RULE_OF = {"pf": "vote", "pgibbs": "majority", "bon": "argmax", "majority": "majority", "weighted": "vote",
           "beam": "argmax"}

INSTRUCTION = ("Solve the problem. Write one short step per line, each calculation as 'a op b = c'. "
               "End with 'The answer is N.'")
EXAMPLE = ("Sam had 9 marbles. He gave 4 marbles to Tom. How many marbles does Sam have now?",
           "Sam gave away 4 of his 9 marbles.\n9 - 4 = 5\nThe answer is 5.")


def chat(question: str) -> list[dict]:
    """The chat for a question: the instruction and one worked example, then the question."""
    return [{"role": "user", "content": f"{INSTRUCTION}\n\n{EXAMPLE[0]}"},
            {"role": "assistant", "content": EXAMPLE[1]},
            {"role": "user", "content": question}]


@tabulated
class Solution(NamedTuple):
    """One method's answer to one problem, with its candidates and cost."""

    answer: float | None
    answers: list
    """Each candidate's extracted answer (None where it wrote no number)."""
    weights: np.ndarray
    """Normalised selection weights of the candidates."""
    texts: list[str]
    tokens_generated: int
    reward_calls: int
    seconds: float
    log_weights: np.ndarray | None = None
    """The candidates' log selection weights (for importance sampling: the log reward, Σ_t log r_t / τ for an
    emission, log r_T / τ for a twist)."""

    def _votes(self) -> list:
        """(answer, total weight, candidates) per distinct answer, the heaviest first."""
        tally: dict = defaultdict(lambda: [0.0, 0])
        for answer, weight in zip(self.answers, np.asarray(self.weights)):
            tally[answer][0] += float(weight)
            tally[answer][1] += 1
        return sorted(([a, w, n] for a, (w, n) in tally.items()), key=lambda row: -row[1])

    def _tables(self) -> list:
        title = (f"answer {self.answer}: {len(self.texts)} candidates, {self.tokens_generated} tokens, "
                 f"{self.reward_calls} reward calls, {self.seconds:.1f} s")
        texts = [(i, a, w, " / ".join(t.split("\n"))[:300]) for i, (a, w, t) in
                 enumerate(zip(self.answers, np.asarray(self.weights), self.texts))]
        return [(title, ["answer", "weight", "candidates"], self._votes()),
                ("candidates", ["", "answer", "weight", "text"], texts)]


def normalized(log_weights) -> np.ndarray:
    """Weights summing to one, in float64; all zeros when every weight is zero."""
    log_weights = np.asarray(log_weights, np.float64)
    if not np.isfinite(log_weights).any():
        return np.zeros(len(log_weights))
    weights = np.exp(log_weights - np.max(log_weights))
    return weights / weights.sum()


def select_answer(answers: list, log_weights: np.ndarray, rule: str, rng: np.random.Generator | None = None):
    """The answer chosen among candidates: "argmax" (highest weight), "sample" (drawn by weight), "vote"
    (weights summed per answer) or "majority" (count per answer). Candidates without an answer abstain."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    weights = normalized(log_weights)
    if not weights.any():  # every candidate impossible: they count equally
        weights = np.full(len(answers), 1.0 / len(answers))
    if rule == "argmax":
        return answers[int(np.argmax(log_weights))]
    if rule == "sample":
        rng = rng or np.random.default_rng(0)
        return answers[int(rng.choice(len(answers), p=weights))]
    tally: dict = defaultdict(float)
    for answer, weight in zip(answers, weights if rule == "vote" else np.ones(len(answers))):
        if answer is not None:
            tally[answer] += weight
    return max(tally, key=tally.get) if tally else None


class Reasoner:
    """A language model, a reward, and the shape of its reasoning (steps and their length)."""

    def __init__(self, lm: LanguageModel, reward: str | Any = "verifier", n_steps: int = 4, step_tokens: int = 32,
                 lm_temperature: float = 0.7, reward_temperature: float = 1.0, log_penalty: float = -3.0):
        """
        Args:
            lm: the language model (`ppl.lm.load()`).
            reward: "verifier" (the exact arithmetic process verifier, as a per-step emission),
                "judge" (the model's own yes/no verdict on the prefix, as a twist), "prm" (the process
                reward model shipped with the package, `ProcessRewardModel.load()`, as a twist), a
                `ProcessRewardModel` (as a twist), or another potential (an equinox module
                `potential(state_before, state_after) -> log r`, as an emission).
            n_steps: T, the number of reasoning steps.
            step_tokens: the most tokens in one step (a step ends at a newline).
            lm_temperature: the language model's sampling temperature (its log densities are exact for it).
            reward_temperature: τ in r^(1/τ).
            log_penalty: the verifier's log reward per wrong equation.
        """
        self.lm, self.n_steps, self.step_tokens = lm, n_steps, step_tokens
        self.step = lm.step_fn(budget=step_tokens, delimiter="\n", temperature=lm_temperature)
        if reward == "verifier":
            self.potential, self.reward_mode = ProcessVerifier.for_lm(lm, step_tokens, log_penalty), "emission"
        elif reward == "judge":
            self.potential, self.reward_mode = LMJudge.from_lm(lm), "twist"
        elif reward == "prm" or isinstance(reward, ProcessRewardModel):
            prm = ProcessRewardModel.load() if reward == "prm" else reward
            self.potential, self.reward_mode = prm.check(lm), "twist"
        elif callable(reward):
            self.potential, self.reward_mode = reward, "emission"
        else:
            raise ValueError(f"reward is 'verifier', 'judge', 'prm' or a potential module, got {reward!r}")
        self.reward_temperature = reward_temperature

    def messages(self, question: str) -> list[dict]:
        """The chat this reasoner sends (`chat(question)`)."""
        return chat(question)

    def solve(self, key: jax.Array, question: str, method: str = "pf", budget: int = 4) -> Solution:
        """Answer `question` with `method` at `budget` (see the module docstring)."""
        return self.solve_batch(key[None], [question], (method,), budget)[0][method]

    def solve_batch(self, keys: jax.Array, questions: list[str], methods: tuple = METHODS, budget: int = 4,
                    on_solved: Callable[[str, list], None] | None = None,
                    mesh: jax.sharding.Mesh | int | None = None) -> list:
        """[{method: Solution}] per question, one key each; the questions run side by side (`jax.vmap`), which
        fills a wide machine. Best-of-N, majority and weighted vote choose among the same N independent
        trajectories (one run, its cost reported for each); seconds are the batch's, shared equally.
        `on_solved(method, solutions)`, if given, is called as each method's solutions are ready.

        `mesh` (a one-axis `jax.sharding.Mesh` or a device count D, see `inference.sharding`) splits the
        questions (a multiple of D) in D blocks, one per device. A question's particles stay together on its
        device, so resampling and voting never cross devices: the solutions are one device's for the same keys.
        """
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"methods must be among {METHODS}, got {unknown}")
        if not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget must be a positive int, got {budget!r}")
        if not questions:
            raise ValueError("questions is empty: give at least one question")
        mesh = sharding.mesh_of(mesh)
        sharding.check_size(mesh, len(questions), "len(questions)")
        states, prompts = self.prompt_states(questions)
        # placed on their devices here, each method's compiled program runs where its inputs are
        keys, states = sharding.shard(mesh, (keys, states), len(questions))
        runs: dict = {}
        out: list = [{} for _ in questions]
        for method in methods:
            kind = "is" if method in ("bon", "majority", "weighted") else method
            if kind not in runs:
                start = time.perf_counter()
                candidates = jax.vmap(lambda k, s: self._run(k, kind, budget, s))(keys, states)
                jax.block_until_ready(candidates)
                runs[kind] = (candidates, (time.perf_counter() - start) / len(questions))
            candidates, seconds = runs[kind]
            for i, prompt in enumerate(prompts):
                row = jax.tree.map(lambda x: x[i], candidates)
                out[i][method] = self._solution(keys[i], row, seconds, RULE_OF[method], prompt)
            if on_solved is not None:
                on_solved(method, [solutions[method] for solutions in out])
        return out

    def prompt_states(self, questions: list[str]):
        """The questions' prefilled states of equal shapes (the prompts' caches sized for the longest), stacked;
        prompt lengths."""
        ids = [self.lm.tokenizer.prompt_ids(self.messages(q)) for q in questions]
        slots = cache_slots(max(len(i) for i in ids))
        room = self.n_steps * self.step_tokens + 32  # the steps, and a judge's question after them
        states = [self.lm.prompt_state(self.messages(q), max_tokens=room, prompt_slots=slots) for q in questions]
        return jax.tree.map(lambda *x: jnp.stack(x), *states), [len(i) for i in ids]

    def _solution(self, key, candidates, seconds: float, rule: str, prompt: int) -> Solution:
        log_weights = np.asarray(candidates.log_weights)
        tokens, lengths = np.asarray(candidates.states.tokens), np.asarray(candidates.states.length)
        texts = [self.lm.tokenizer.decode(row[prompt:n]) for row, n in zip(tokens, lengths)]
        answers = [extract_answer(text) for text in texts]
        rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))
        answer = select_answer(answers, log_weights, rule, rng)
        return Solution(answer, answers, normalized(log_weights), texts, int(candidates.tokens_generated),
                        int(candidates.reward_calls), seconds, log_weights)

    def _run(self, key, kind: str, budget: int, state0) -> methods.Candidates:
        common = (key, self.step, self.potential, state0)
        tilt = dict(temperature=self.reward_temperature, reward=self.reward_mode)
        sizes = plan(kind, budget)
        if kind == "pf":
            return methods.particle_filter(*common, sizes.n_particles, self.n_steps, **tilt)
        if kind == "pgibbs":
            return methods.particle_gibbs(*common, sizes.n_particles, sizes.n_sweeps, self.n_steps, **tilt)
        if kind == "beam":
            return methods.beam_search(*common, sizes.n_particles, self.n_steps, sizes.beam_width,
                                       reward=self.reward_mode)
        return methods.importance_sampling(*common, sizes.n_particles, self.n_steps, **tilt)
