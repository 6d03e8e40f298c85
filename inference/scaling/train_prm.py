"""Train the process reward model on the language model's own reasoning.

    python -m inference.scaling.train_prm --data svamp --rollouts 4 \\
        --validation ../shared/data/svamp/svamp.json --validation-offset 400 --validation-problems 100 \\
        --out inference/scaling/prm_smollm2.safetensors

1. Rollouts: `--rollouts` K trajectories per training problem from the Reasoner's own prompt and steps
   (`rollouts.sample`), `--batch` problems side by side. Each batch is written to `--cache` (an .npz per
   batch, in a folder named by everything that decides its content) as soon as it is done, so a stopped run
   resumes where it was; problem i's key is fold_in(key(seed), i), so the rollouts are the same run to run; `--seeds 0,1` adds
   a second K per problem.
2. Labels: outcome labels per step: every prefix of a trajectory gets its final answer's correctness.
3. Training: `ProcessRewardModel` fit with optax (AdamW, binary cross-entropy, weight decay), the epoch
   with the best validation log loss kept.
4. Report: AUROC, Brier score and expected calibration error of V on the validation problems, at the end
   of trajectories and at each step, beside the baseline score (mean token log-probability); written into
   the safetensors file's metadata and printed.

Training problems are only ever GSM8K train and SVAMP 0–399; SVAMP 400–499 is the validation set.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pathlib
import sys
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.stats import mannwhitneyu
from tqdm import tqdm

from .data import DATA_SETS, data_path, extract_answer, is_correct, load_problems
from .prm import DEFAULT_PATH, ProcessRewardModel
from .solve import Reasoner, chat

__all__ = ["Dataset", "collect", "concatenate", "fit", "main", "metrics", "prefixes"]

CACHE = ".cache/prm"


class Dataset(NamedTuple):
    """Rollouts of a set of problems, flattened to trajectories."""

    hidden: np.ndarray
    """(n, T, d) float16"""
    live: np.ndarray
    """(n, T) bool"""
    log_prob: np.ndarray
    """(n, T) float32"""
    tokens: np.ndarray
    """(n,) tokens generated"""
    finished: np.ndarray
    """(n,) whether the trajectory ended"""
    correct: np.ndarray
    """(n,) whether its final answer is right"""
    answered: np.ndarray
    """(n,) whether it wrote a number at all"""
    problem: np.ndarray
    """(n,) the problem's index in its file"""


def _folder(cache: str, reasoner: Reasoner, path: str, n_rollouts: int, seed: int, batch: int, model: str) -> pathlib.Path:
    """The cache folder of one configuration: a hash of everything that decides the rollouts."""
    config = dict(data=pathlib.Path(path).name, data_sha=hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest(),
                  rollouts=n_rollouts, seed=seed, batch=batch, model=model, steps=reasoner.n_steps,
                  step_tokens=reasoner.step_tokens, sampler=repr(reasoner.step.sampler), prompt=chat("{question}"))
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    folder = pathlib.Path(cache) / digest
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return folder


def collect(reasoner: Reasoner, path: str, n: int, offset: int, n_rollouts: int, seed: int = 0, batch: int = 8,
            cache: str = CACHE, model: str = "default", desc: str = "rollouts") -> Dataset:
    """The rollouts of problems offset..offset+n of `path`, generated where the cache lacks them."""
    from . import rollouts

    problems = load_problems(path, n, offset)
    folder = _folder(cache, reasoner, data_path(path), n_rollouts, seed, batch, model)
    parts = []
    # batches are aligned to multiples of `batch` from the file's start, so overlapping ranges share them
    starts = range(offset - offset % batch, offset + n, batch)
    total = len(load_problems(path))
    for start in tqdm(starts, desc=desc, unit="batch"):
        file = folder / f"{start:06d}.npz"
        if not file.exists():
            chunk = load_problems(path, min(batch, total - start), start)
            keys = jax.numpy.stack([jax.random.fold_in(jax.random.key(seed), start + i) for i in range(len(chunk))])
            out = rollouts.sample(reasoner, keys, [p.question for p in chunk], n_rollouts)
            answers = [[extract_answer(text) for text in row] for row in out.texts]
            correct = np.array([[is_correct(a, p.answer) for a in row] for row, p in zip(answers, chunk)])
            answered = np.array([[a is not None for a in row] for row in answers])
            tmp = file.with_suffix(".tmp.npz")
            np.savez(tmp, hidden=out.hidden, live=out.live, log_prob=out.log_prob, tokens=out.tokens,
                     finished=out.finished, correct=correct, answered=answered,
                     problem=np.repeat(np.arange(start, start + len(chunk))[:, None], n_rollouts, 1),
                     texts=np.array(out.texts, dtype=object), allow_pickle=True)
            tmp.rename(file)  # a batch is in the cache whole or not at all
        parts.append(np.load(file, allow_pickle=True))
    fields = {name: np.concatenate([p[name].reshape((-1,) + p[name].shape[2:]) for p in parts])
              for name in Dataset._fields}
    return _subset(Dataset(**fields), (fields["problem"] >= offset) & (fields["problem"] < offset + n))


def _subset(data: Dataset, keep: np.ndarray) -> Dataset:
    return Dataset(*(field[keep] for field in data))


def concatenate(parts: list[Dataset]) -> Dataset:
    """Rollouts of several runs (seeds) as one dataset."""
    return Dataset(*(np.concatenate(fields) for fields in zip(*parts)))


def prefixes(data: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every live step's prefix: its hidden state (m, d), its outcome label (m,) and its step index (m,)."""
    trajectory, step = np.nonzero(data.live)
    return data.hidden[trajectory, step].astype(np.float32), data.correct[trajectory].astype(np.float32), step


def _final(data: Dataset) -> np.ndarray:
    """The hidden state at the end of each trajectory (its last live step), (n, d)."""
    return data.hidden[np.arange(len(data.live)), data.live.sum(1) - 1].astype(np.float32)


def fit(key: jax.Array, train: Dataset, validation: Dataset, width: int = 64, depth: int = 1, steps: int = 3000,
        learning_rate: float = 1e-3, weight_decay: float = 1e-2, every: int = 50,
        progress: bool = True) -> tuple[ProcessRewardModel, dict]:
    """A head fit on the training prefixes by AdamW on binary cross-entropy (full batches), kept at the step
    with the lowest validation log loss (checked `every` steps); and that loss and step."""
    x, y, _ = prefixes(train)
    vx, vy, _ = prefixes(validation)
    prm = ProcessRewardModel.init(key, x, width, depth)
    optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)
    x, y, vx, vy = map(jnp.asarray, (x, y, vx, vy))

    def loss(model, x, y):
        return jnp.mean(optax.sigmoid_binary_cross_entropy(jax.vmap(model.logit)(x), y))

    @eqx.filter_jit
    def update(model, opt_state):
        value, grads = eqx.filter_value_and_grad(loss)(model, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, value

    opt_state = optimizer.init(eqx.filter(prm, eqx.is_array))
    best = (float(loss(prm, vx, vy)), 0, prm)
    for i in tqdm(range(1, steps + 1), desc=f"fitting (width {width}, depth {depth})", disable=not progress):
        prm, opt_state, _ = update(prm, opt_state)
        if i % every == 0:
            validation_loss = float(loss(prm, vx, vy))
            if validation_loss < best[0]:
                best = (validation_loss, i, prm)
    return best[2], {"validation_log_loss": best[0], "best_step": best[1]}


def _median_right(prm: ProcessRewardModel, data: Dataset) -> float:
    """The median V at the end of the right trajectories: the acceptance threshold with a recall of one half."""
    values = np.exp(np.asarray(jax.vmap(prm.log_value)(_final(data))))
    return float(np.median(values[data.correct])) if data.correct.any() else 0.5


def _auroc(score: np.ndarray, label: np.ndarray) -> float:
    """P(a right trajectory scores above a wrong one), ties counted half (the Mann-Whitney U statistic)."""
    label = label.astype(bool)
    if label.all() or not label.any():
        return float("nan")
    return float(mannwhitneyu(score[label], score[~label]).statistic / (label.sum() * (~label).sum()))


def _auroc_within(score: np.ndarray, label: np.ndarray, problem: np.ndarray) -> tuple[float, int]:
    """AUROC over (right, wrong) pairs of the same problem only: what choosing among one problem's candidates
    (best-of-N, resampling) can use; and the number of such pairs."""
    wins, pairs = 0.0, 0
    for p in np.unique(problem):
        s, y = score[problem == p], label[problem == p].astype(bool)
        wins += np.sum(s[y][:, None] > s[~y][None]) + 0.5 * np.sum(s[y][:, None] == s[~y][None])
        pairs += int(y.sum() * (~y).sum())
    return (wins / pairs if pairs else float("nan")), pairs


def _calibration(p: np.ndarray, label: np.ndarray, bins: int = 10) -> tuple[float, float]:
    """The Brier score and the expected calibration error (equal-width bins of p)."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    ece = sum(abs(p[which == b].mean() - label[which == b].mean()) * np.mean(which == b)
              for b in range(bins) if np.any(which == b))
    return float(np.mean((p - label) ** 2)), float(ece)


def metrics(prm: ProcessRewardModel, data: Dataset) -> dict:
    """AUROC, Brier score and calibration error of V at the end of trajectories and after each step; the AUROC
    within problems (`_auroc_within`); the AUROC of the baseline score (mean token log-probability); the base
    rate, the fraction that finished, and pass@K (problems with a right trajectory)."""
    value = jax.jit(jax.vmap(lambda h: jnp.exp(prm.log_value(h))))
    end = np.asarray(value(_final(data)))
    brier, ece = _calibration(end, data.correct)
    mean_logp = (data.log_prob * data.live).sum(1) / np.maximum(data.tokens, 1)
    out = {"trajectories": int(len(end)), "right": float(data.correct.mean()), "finished": float(data.finished.mean()),
           "answered": float(data.answered.mean()), "auroc_end": _auroc(end, data.correct), "brier_end": brier,
           "ece_end": ece, "auroc_mean_logprob": _auroc(mean_logp, data.correct),
           "brier_base_rate": float(np.mean((data.correct.mean() - data.correct) ** 2)),
           "pass_at_k": float(np.mean([data.correct[data.problem == p].any() for p in np.unique(data.problem)]))}
    out["auroc_within"], out["pairs_within"] = _auroc_within(end, data.correct, data.problem)
    x, y, step = prefixes(data)
    v = np.asarray(value(x))
    for t in range(data.live.shape[1]):
        at = step == t
        out[f"auroc_step{t + 1}"] = _auroc(v[at], y[at])
        out[f"ece_step{t + 1}"] = _calibration(v[at], y[at])[1]
    return out


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m inference.scaling.train_prm", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="svamp", help=f"training problems: a set shipped with the package "
                        f"({', '.join(DATA_SETS)}) or a file of GSM8K train or SVAMP 0-399")
    parser.add_argument("--problems", type=int, default=None, help="how many training problems (default: all)")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--rollouts", type=int, default=4, help="K trajectories per problem")
    parser.add_argument("--validation", default=None, help="validation problems (SVAMP 400-499: the full SVAMP file)")
    parser.add_argument("--validation-offset", type=int, default=400)
    parser.add_argument("--validation-problems", type=int, default=100)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--step-tokens", type=int, default=32)
    parser.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")], default=[0],
                        help="comma-separated: --rollouts trajectories per problem for each seed; the first also "
                        "seeds the validation rollouts and the head")
    parser.add_argument("--batch", type=int, default=8, help="problems run side by side")
    parser.add_argument("--cache", default=CACHE, help="where rollouts are kept (resumable)")
    parser.add_argument("--rollouts-only", action="store_true", help="generate the rollouts and stop")
    parser.add_argument("--out", default=None, help=f"the safetensors file to write (default: {DEFAULT_PATH.name}, "
                        "the one shipped)")
    parser.add_argument("--depths", type=lambda t: [int(d) for d in t.split(",")], default=[0, 1],
                        help="hidden layers of the heads to compare (0: a linear probe); the best on validation "
                        "log loss is kept")
    parser.add_argument("--width", type=int, default=64, help="hidden layer width")
    parser.add_argument("--fractions", type=lambda t: [float(x) for x in t.split(",") if x], default=[0.25, 0.5],
                        help="also refit the kept head on these fractions of the training problems (a learning "
                        "curve, in the record)")
    parser.add_argument("--train-steps", type=int, default=3000, help="full-batch AdamW steps")
    opts = parser.parse_args(argv)

    n = opts.problems or len(load_problems(opts.data)) - opts.offset
    if opts.validation and data_path(opts.data) == data_path(opts.validation) and \
            opts.offset + n > opts.validation_offset:
        parser.error(f"--data: training problems {opts.offset}-{opts.offset + n - 1} reach the validation problems "
                     f"(from {opts.validation_offset}) and the test problems after them; train on SVAMP 0-399 or "
                     "GSM8K train")

    import ppl

    reasoner = Reasoner(ppl.lm.load(), n_steps=opts.steps, step_tokens=opts.step_tokens)
    seed = opts.seeds[0]  # the validation rollouts and the head's initialisation
    train = concatenate([collect(reasoner, opts.data, n, opts.offset, opts.rollouts, s, opts.batch, opts.cache,
                                 desc=f"training rollouts, seed {s}") for s in opts.seeds])
    if opts.validation:
        collect(reasoner, opts.validation, opts.validation_problems, opts.validation_offset, opts.rollouts,
                seed, opts.batch, opts.cache, desc="validation rollouts")
    print(f"{len(train.correct)} training trajectories, {train.correct.mean():.3f} right, "
          f"{train.finished.mean():.3f} finished, {train.answered.mean():.3f} wrote a number")
    if opts.rollouts_only:
        return None
    if not opts.validation:
        parser.error("--validation: give the validation problems (the full SVAMP file; rows 400-499 by default)")
    validation = collect(reasoner, opts.validation, opts.validation_problems, opts.validation_offset, opts.rollouts,
                         seed, opts.batch, opts.cache, desc="validation rollouts")
    results = []
    for depth in opts.depths:
        prm, info = fit(jax.random.key(seed), train, validation, opts.width, depth, opts.train_steps)
        results.append((info["validation_log_loss"], depth, prm, {**info, **metrics(prm, validation)}))
        print(f"depth {depth}: validation {json.dumps(results[-1][3])}")
    _, depth, prm, validation_metrics = min(results, key=lambda r: r[0])  # chosen on validation log loss
    prm = dataclasses.replace(prm, threshold=_median_right(prm, validation))
    curve = {}  # what more training problems buy: the kept head refit on the first fraction of them
    for fraction in opts.fractions:
        problems = np.unique(train.problem)
        part = _subset(train, np.isin(train.problem, problems[: max(1, round(fraction * len(problems)))]))
        refit, info = fit(jax.random.key(seed), part, validation, opts.width, depth, opts.train_steps)
        # the validation metrics count their own trajectories: the training count needs its own name
        curve[str(fraction)] = {**info, **metrics(refit, validation), "train_trajectories": int(len(part.correct))}
        print(f"{fraction:.0%} of the training problems: validation {json.dumps(curve[str(fraction)])}")
    record = {"data": f"{opts.data} {opts.offset}-{opts.offset + n - 1}", "rollouts_per_problem": opts.rollouts * len(opts.seeds),
              "seeds": opts.seeds, "steps": opts.steps, "step_tokens": opts.step_tokens, "width": opts.width,
              "depth": depth, "validation_set": f"{pathlib.Path(opts.validation).name} {opts.validation_offset}-"
              f"{opts.validation_offset + opts.validation_problems - 1}",
              "train": metrics(prm, train), "validation": validation_metrics,
              "candidates": {f"depth {r[1]}": r[3] for r in results}, "learning_curve": curve}
    prm.save(opts.out or DEFAULT_PATH, record)
    print(f"kept depth {depth}; wrote {opts.out or DEFAULT_PATH}")
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
