"""Inference-time scaling: on a toy language model whose tilted target over trajectories is enumerable,
particle filtering and importance sampling give unbiased normalising constants and the exact posterior,
and particle Gibbs samples it; on the real model, the budget account and the verifier's weights are exact."""

import itertools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from inference import scaling, smc
from inference.scaling import methods
from inference.scaling.model import reasoning_model
from ppl import dist

T = 3
EOS = 2
TRANSITIONS = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.45, 0.45, 0.1]])  # rows: previous token (start: 2)
REWARD = np.array([1.0, 0.25, 0.6])  # r of the token a step wrote


class ToyState(NamedTuple):
    last: jax.Array
    tokens: jax.Array
    length: jax.Array
    done: jax.Array
    hidden: jax.Array
    """Features of the prefix for a reward model: (fraction of "a" tokens, length / T)."""


def features(tokens, length):
    a = jnp.sum((tokens == 0) & (jnp.arange(T) < length))
    return jnp.stack([a / jnp.maximum(length, 1), length / T]).astype(jnp.float32)


def start():
    return ToyState(jnp.int32(EOS), jnp.full(T, EOS, jnp.int32), jnp.int32(0), jnp.bool_(False), jnp.zeros(2))


@ppl.gen
def toy_step(state):
    logits = jnp.where(state.done, jnp.log(jnp.array([0.0, 0.0, 1.0])), jnp.log(jnp.asarray(TRANSITIONS))[state.last])
    x = dist.Categorical(logits=logits) @ "x"
    tokens = jnp.where(state.done, state.tokens, state.tokens.at[state.length].set(x))
    length = state.length + (~state.done).astype(jnp.int32)
    return ToyState(x, tokens, length, state.done | (x == EOS), features(tokens, length))


def emission(before, after):
    return jnp.log(jnp.asarray(REWARD))[after.last]


def twist(before, after):
    """A reward of the prefix: the fraction of "a" tokens so far (plus a floor)."""
    a = jnp.sum((after.tokens == 0) & (jnp.arange(T) < after.length))
    return jnp.log(0.2 + a / jnp.maximum(after.length, 1))


def toy_prm():
    """A linear process reward model on the toy features, weights set by hand: V rises with the "a" fraction."""
    prm = scaling.ProcessRewardModel.init(jax.random.key(0), np.array([[0.0, 0.0], [1.0, 1.0]]), depth=0)
    prm = eqx.tree_at(lambda m: (m.mean, m.scale, m.layers[0].weight, m.layers[0].bias), prm,
                      (jnp.zeros(2), jnp.ones(2), jnp.array([[2.5, -1.0]]), jnp.array([-1.0])))
    return prm


def prm_log_value(tokens):
    """The toy reward model's log V of a prefix (a list of tokens), by numpy."""
    a, n = tokens.count(0), len(tokens)
    return float(np.log(1 / (1 + np.exp(-(2.5 * a / max(n, 1) - 1.0 * n / T - 1.0)))))


def exact(reward: str, tau: float, log_prefix=lambda tokens: np.log(0.2 + tokens.count(0) / len(tokens))):
    """{trajectory: posterior probability} and Z, by enumeration; a twist's log r of a prefix is `log_prefix`."""
    table = {}
    for xs in itertools.product(range(3), repeat=T):
        p, log_r, prev, done, last_r, tokens = 1.0, 0.0, EOS, False, 0.0, []
        for x in xs:
            if done:
                if x != EOS:
                    p = 0.0
                continue
            p *= TRANSITIONS[prev, x]
            tokens.append(x)
            if reward == "emission":
                log_r += np.log(REWARD[x]) / tau
            else:
                last_r = log_prefix(tokens)
            prev, done = x, x == EOS
        if p > 0:
            weight = p * np.exp(log_r if reward == "emission" else last_r / tau)
            table[tuple(tokens + [EOS] * (T - len(tokens)))] = weight
    z = sum(table.values())
    return {k: v / z for k, v in table.items()}, z


def trajectory_index(tokens):
    return tuple(int(t) for t in tokens)


CASES = [("emission", emission, 0.5, None), ("twist", twist, 1.0, None), ("twist", toy_prm(), 0.5, prm_log_value)]


def exact_for(reward, tau, log_prefix):
    return exact(reward, tau) if log_prefix is None else exact(reward, tau, log_prefix)


@pytest.mark.parametrize("reward, potential, tau, log_prefix", CASES)
def test_particle_filter_normalising_constant_is_unbiased(reward, potential, tau, log_prefix):
    """mean(Ẑ/Z) = 1 within 4 standard errors, for adaptive-free (every step) and no resampling; the third
    case is a process reward model (`ProcessRewardModel`, reading the state's features) as the twist."""
    _, z = exact_for(reward, tau, log_prefix)
    for ess_threshold in (1.0, 0.0):
        run = jax.jit(jax.vmap(lambda k: methods.particle_filter(
            k, toy_step, potential, start(), 8, T, temperature=tau, reward=reward, ess_threshold=ess_threshold,
            eos=EOS).log_marginal))
        ratio = np.exp(np.asarray(run(jax.random.split(jax.random.key(0), 4000)))) / z
        assert abs(ratio.mean() - 1) < 4 * ratio.std() / np.sqrt(ratio.size), (ess_threshold, ratio.mean())


@pytest.mark.parametrize("reward, potential, tau, log_prefix", CASES)
def test_particle_filter_weights_converge_to_the_exact_posterior(reward, potential, tau, log_prefix):
    posterior, _ = exact_for(reward, tau, log_prefix)
    c = methods.particle_filter(jax.random.key(1), toy_step, potential, start(), 20000, T, temperature=tau,
                                reward=reward, eos=EOS)
    w = np.exp(np.asarray(c.log_weights) - np.max(np.asarray(c.log_weights)))
    w /= w.sum()
    estimate = {}
    for tokens, weight in zip(np.asarray(c.states.tokens), w):
        estimate[trajectory_index(tokens)] = estimate.get(trajectory_index(tokens), 0.0) + weight
    for trajectory, p in posterior.items():
        # resampling at every step: the error is a few times the i.i.d. one
        assert abs(estimate.get(trajectory, 0.0) - p) < 5 * np.sqrt(p * (1 - p) / 20000) + 2e-3, trajectory


@pytest.mark.parametrize("reward, potential, tau", [("emission", emission, 0.5), ("twist", twist, 1.0)])
def test_particle_gibbs_samples_the_exact_posterior(reward, potential, tau):
    """The last of 8 sweeps (N = 3, ancestor sampling) of 3000 independent chains: chi-square against the
    enumerated posterior."""
    posterior, _ = exact(reward, tau)
    run = jax.jit(jax.vmap(lambda k: methods.particle_gibbs(k, toy_step, potential, start(), 3, 8, T,
                                                            temperature=tau, reward=reward, eos=EOS).states.tokens[-1]))
    draws = np.asarray(run(jax.random.split(jax.random.key(2), 3000)))
    keys = sorted(posterior)
    counts = np.array([sum(trajectory_index(d) == k for d in draws) for k in keys])
    expected = np.array([posterior[k] for k in keys]) * len(draws)
    assert counts.sum() == len(draws)  # every draw is a possible trajectory
    assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_beam_search_keeps_the_best_prefixes():
    """With one beam of N children and a deterministic best reward, the beam's score is the best sampled."""
    c = methods.beam_search(jax.random.key(3), toy_step, emission, start(), 6, T, beam_width=2, eos=EOS)
    scores = np.asarray(c.log_weights)
    assert scores.shape == (2,) and np.all(scores <= 0)
    for tokens, score in zip(np.asarray(c.states.tokens), scores):  # a beam's score is its tokens' rewards
        written = [t for t in tokens[: np.argmax(tokens == EOS) + 1 if EOS in tokens else T]]
        assert np.isclose(score, np.sum(np.log(REWARD[written])), atol=1e-5)
    # a twist scores the prefix itself: a beam's score is its final prefix's log r, not a sum over steps
    c = methods.beam_search(jax.random.key(3), toy_step, toy_prm(), start(), 6, T, beam_width=2, reward="twist",
                            eos=EOS)
    for tokens, score in zip(np.asarray(c.states.tokens), np.asarray(c.log_weights)):
        written = [int(t) for t in tokens[: np.argmax(tokens == EOS) + 1 if EOS in tokens else T]]
        assert np.isclose(score, prm_log_value(written), atol=1e-5)
    with pytest.raises(ValueError, match="multiple of beam_width"):
        methods.beam_search(jax.random.key(3), toy_step, emission, start(), 5, T, beam_width=2, eos=EOS)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="reward must be one of"):
        reasoning_model(3, 1.0, "outcome")
    with pytest.raises(ValueError, match="temperature must be positive"):
        reasoning_model(3, 0.0)
    with pytest.raises(ValueError, match="give eos="):
        methods.particle_filter(jax.random.key(0), toy_step, emission, start(), 4, T)


def test_answer_selection_rules():
    answers = [3.0, 5.0, 5.0, None]
    log_w = np.log([0.5, 0.2, 0.2, 0.1])
    assert scaling.select_answer(answers, log_w, "argmax") == 3.0
    assert scaling.select_answer(answers, log_w, "majority") == 5.0
    assert scaling.select_answer(answers, np.log([0.7, 0.1, 0.1, 0.1]), "vote") == 3.0
    assert scaling.select_answer([None, None], np.zeros(2), "vote") is None
    with pytest.raises(ValueError, match="rule must be one of"):
        scaling.select_answer(answers, log_w, "best")


class _StepOnlyLM:
    """Enough of a language model for `Reasoner` to build its step: the methods below are stand-ins."""

    def step_fn(self, **settings):
        return settings


def test_the_budget_plan_is_the_in_jax_engines_sizes(monkeypatch):
    """`budget.plan`'s documented numbers, and `Reasoner` running each method at them (the host engine's side
    is in tests/test_scaling_remote.py)."""
    plan, Plan = scaling.budget.plan, scaling.budget.Plan
    assert plan("pgibbs", 8) == Plan(n_particles=4, n_sweeps=2, beam_width=4)
    assert plan("pgibbs", 3) == Plan(3, 1, 3) and plan("pgibbs", 9) == Plan(4, 2, 4)
    assert plan("beam", 16) == Plan(16, 1, 4) and plan("beam", 8) == Plan(8, 1, 8)
    assert plan("pf", 8) == plan("is", 8) == Plan(8, 1, 8)
    with pytest.raises(ValueError, match="budget must be a positive int"):
        plan("pf", 0)
    calls = {}
    for name in ("particle_filter", "importance_sampling", "particle_gibbs", "beam_search"):
        monkeypatch.setattr(methods, name, lambda *args, name=name, **settings: calls.setdefault(name, args[4:]))
    reasoner = scaling.Reasoner(_StepOnlyLM(), reward=emission, n_steps=T)
    for kind, budget in (("pf", 8), ("is", 8), ("pgibbs", 8), ("beam", 16)):
        reasoner._run(jax.random.key(0), kind, budget, start())
    assert calls == {"particle_filter": (8, T), "importance_sampling": (8, T), "particle_gibbs": (4, 2, T),
                     "beam_search": (16, T, 4)}


@pytest.fixture(scope="module")
def reasoner():
    return scaling.Reasoner(ppl.lm.load(), n_steps=3, step_tokens=24)


def test_real_model_budget_account_and_verifier_weights(reasoner):
    """Importance sampling on a SVAMP problem: tokens generated equal the tokens in the texts (end-of-sequence
    aside), and each trajectory's log weight is log_penalty x the wrong equations of its steps, each step's text
    checked on its own (cut at its token budget, its unfinished last equation is not counted), as
    ProcessVerifier defines the reward; the steps are the same program's draws, recorded by smc.run."""
    problem = scaling.load_problems(scaling.default_data_path(), 1, 3)[0]
    solution = reasoner.solve(jax.random.key(0), problem.question, "weighted", budget=4)
    tok = reasoner.lm.tokenizer
    assert solution.tokens_generated == sum(len(tok.encode(text)) for text in solution.texts)
    assert 0 < solution.reward_calls <= 4 * 3
    states, _ = reasoner.prompt_states([problem.question])
    args = (reasoner.step, reasoner.potential, jax.tree.map(lambda x: x[0], states))
    model = scaling.reasoning_model(reasoner.n_steps, float(reasoner.reward_temperature), "emission")
    steps = np.asarray(smc.run(jax.random.key(0), model, args, {}, 4, ess_threshold=0.0,
                               return_traces="history").history.choices["x"])  # (T, N, step_tokens)
    verifier, eos = reasoner.potential.verifier, reasoner.step.eos
    wrong = np.zeros(4)
    for t, i in np.ndindex(steps.shape[:2]):
        ids = [int(x) for x in steps[t, i] if x != eos]
        if ids:
            wrong[i] += verifier.check_text(tok, tok.decode(ids), closed=len(ids) < reasoner.step_tokens)[1]
    assert ["".join(tok.decode([int(x) for x in steps[t, i] if x != eos]) for t in range(steps.shape[0]))
            for i in range(4)] == solution.texts
    expected = np.exp(-3.0 * wrong - np.max(-3.0 * wrong))
    np.testing.assert_allclose(solution.weights, expected / expected.sum(), rtol=1e-4)
    assert len(solution.answers) == 4


def test_real_model_methods_run_as_compiled_programs(reasoner):
    """Every method answers a batch of two problems; particle filtering's weights are normalised."""
    problems = scaling.load_problems(scaling.default_data_path(), 2, 10)
    keys = jax.random.split(jax.random.key(1), 2)
    out = reasoner.solve_batch(keys, [p.question for p in problems], scaling.METHODS, budget=4)
    for solutions in out:
        assert set(solutions) == set(scaling.METHODS)
        assert np.isclose(solutions["pf"].weights.sum(), 1.0)
        assert len(solutions["pgibbs"].texts) == 1 and len(solutions["beam"].texts) == 2
        assert all(s.tokens_generated > 0 for s in solutions.values())


def test_the_judge_reads_its_question_after_the_text_so_far(reasoner):
    """LMJudge's log r equals log P(" yes") among {" yes", " no"} from one forward pass over prompt, step
    and question, and leaves the sequence's state as it was."""
    lm = reasoner.lm
    judge = scaling.LMJudge.from_lm(lm)
    state0 = lm.prompt_state("Tom has 3 apples and buys 5 more.", max_tokens=64)
    after = lm.step_fn(budget=8).simulate(jax.random.key(4), state0).retval
    log_r = float(judge(state0, after))
    ids = [int(i) for i in np.asarray(after.tokens[: int(after.length)])] + [int(i) for i in np.asarray(judge.question)]
    logits, _ = lm.transformer(jnp.asarray([ids], jnp.int32), jnp.int32(0), jnp.zeros(1, jnp.int32),
                               lm.transformer.empty_cache(1, 128))
    pair = jax.nn.log_softmax(logits[0, -1, jnp.array([judge.yes, judge.no])])
    assert abs(log_r - float(pair[0])) < 1e-3
    assert log_r < 0
    with pytest.raises(ValueError, match="must be one token each"):
        scaling.LMJudge.from_lm(lm, yes=" definitely yes")


def test_particles_share_the_prompt_cache_and_resampling_keeps_each_state_right(reasoner):
    """The prompt's keys and values are stored once for all particles (a carry leaf that every step hands on
    unchanged), the particles carry only their continuations' caches, and after resampling at every step each
    final particle's state is the one a forward pass from scratch over its tokens gives."""
    lm = reasoner.lm
    states, _ = reasoner.prompt_states(["Tom has 3 apples and buys 5 more. How many apples does he have?"])
    state0 = jax.tree.map(lambda x: x[0], states)
    args = (reasoner.step, methods.as_module(reasoner.potential), state0)
    model = reasoning_model(2, float(reasoner.reward_temperature), reasoner.reward_mode)
    state = smc.init(jax.random.key(0), model, args, {}, 4)
    prompt_bytes = state0.prompt.k.nbytes
    assert sum(x.nbytes for x in jax.tree.leaves(state.target.carry.shared)) >= 2 * prompt_bytes
    assert all(x.nbytes / 4 < prompt_bytes for x in jax.tree.leaves(state.particles.carry))  # per particle
    result = methods.particle_filter(jax.random.key(2), reasoner.step, reasoner.potential, state0, 4, 2,
                                     reward=reasoner.reward_mode)
    final = result.states
    for i in range(4):
        ids = jnp.asarray([np.asarray(final.tokens[i])[: int(final.length[i])]], jnp.int32)
        hidden, _ = lm.transformer.hidden_states(ids, jnp.int32(0), jnp.zeros(1, jnp.int32),
                                                 lm.transformer.empty_cache(1, ppl.lm.cache_slots(ids.shape[1])))
        np.testing.assert_allclose(np.asarray(final.hidden[i]), np.asarray(hidden[0, -1]), atol=2e-3, rtol=1e-3)
