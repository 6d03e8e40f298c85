"""Accuracy against budget for every method, on SVAMP or GSM8K problems.

    python -m inference.scaling.bench --data ../shared/data/svamp/svamp.json --problems 20 \\
        --budgets 1,4,16 --methods pf,pgibbs,bon,beam,majority,weighted --json results.json --plot scaling.png

--data is a set shipped with the package ("svamp", the default: SVAMP 0-399; "gsm8k": 200 GSM8K training
problems) or a file; every argument is checked before the language model loads.

Prints, per method and budget: accuracy with a 95% Wilson interval, mean tokens generated and reward
calls per problem, and wall seconds per problem (compilation included: the first problem of each
shape compiles); writes the same records as JSON with --json, and plots accuracy against budget.
Every method gets the same key per problem and budget, so best-of-N, majority and weighted vote
choose among the same N trajectories.

--devices D splits each batch of problems (--batch, default D) across a 1-D mesh of D devices, each problem's
particles on its problem's device; the answers are the same as on one device. On a CPU, JAX sees D devices
only when started with XLA_FLAGS=--xla_force_host_platform_device_count=D (they then share the CPU's cores).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from .data import DATA_SETS, is_correct, load_problems
from .prm import ProcessRewardModel
from .solve import METHODS, Reasoner

__all__ = ["acceptance", "evaluate", "main", "paired", "table", "wilson_interval"]


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (sound at 0/n and n/n, unlike the normal one)."""
    if n == 0:
        return float("nan"), float("nan")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


INDEPENDENT = ("bon", "majority", "weighted")
"""The methods that choose among N independent trajectories, whose weights are the rewards themselves."""


def acceptance(reasoner: Reasoner) -> float:
    """The log reward at or above which the reasoner's scorer calls a finished trajectory right: the verifier
    when no equation is wrong, the judge when P(yes) >= 1/2, a trained reward model at the threshold in its
    `threshold` (set by train_prm to the median V of right validation trajectories: half of those are accepted)."""
    if isinstance(reasoner.potential, ProcessRewardModel):
        return float(np.log(reasoner.potential.threshold))
    return float(np.log(0.5)) if reasoner.reward_mode == "twist" else -1e-6


def evaluate(reasoner: Reasoner, problems: list, methods: tuple, budgets: tuple, seed: int = 0, batch: int = 1,
             progress: bool = True, json_path: str | None = None, only: dict | None = None,
             mesh: jax.sharding.Mesh | int | None = None) -> list[dict]:
    """Records {method, budget, accuracy, ci_low, ci_high, n_problems, tokens, reward_calls, seconds,
    pass_at_n, fpr, tpr}, tokens, reward calls and seconds as means per problem; `batch` problems run side by
    side. pass@N is the fraction of problems where some candidate is right (what an oracle selector reaches);
    for best-of-N, majority and weighted vote, fpr and tpr are the fractions of wrong and of right trajectories
    that the scorer accepts (`acceptance`), nan for the other methods. With `mesh` (D devices), each batch's
    problems are split across them (`Reasoner.solve_batch`): `batch` and the number of problems are multiples of
    D. The progress bar advances by a batch's problems as each method answers them, and shows each method's
    accuracy so far at the budget in progress. With `json_path`, the records so far are written there after every
    batch (a long run that is stopped keeps what it measured)."""
    if not problems:
        raise ValueError("problems is empty: give at least one problem")
    only = only or {}
    at = {b: tuple(m for m in methods if b in only.get(m, budgets)) for b in budgets}  # what runs at each budget
    tallies = {(m, b): {"correct": 0, "solved": 0, "tokens": 0, "reward_calls": 0, "seconds": 0.0, "pass": 0,
                        "wrong": 0, "false_positives": 0, "right": 0, "true_positives": 0, "outcomes": []}
               for b in budgets for m in at[b]}
    threshold = acceptance(reasoner)
    bar = tqdm(total=len(problems) * len(tallies), disable=not progress, unit="answer",
               desc="solving")
    for first in range(0, len(problems), batch):
        chunk = problems[first:first + batch]
        for budget in budgets:
            keys = jnp.stack([jax.random.fold_in(jax.random.key(seed), (first + i) * 1000 + budget)
                              for i in range(len(chunk))])

            def tally(method, solutions, budget=budget):
                t = tallies[(method, budget)]
                for problem, solution in zip(chunk, solutions):
                    t["outcomes"].append(int(is_correct(solution.answer, problem.answer)))
                    t["correct"] += t["outcomes"][-1]
                    t["solved"] += 1
                    t["tokens"] += solution.tokens_generated
                    t["reward_calls"] += solution.reward_calls
                    t["seconds"] += solution.seconds
                    right = np.array([is_correct(a, problem.answer) for a in solution.answers])
                    t["pass"] += bool(right.any())
                    if method in INDEPENDENT:
                        accepted = solution.log_weights * reasoner.reward_temperature >= threshold
                        t["wrong"] += int((~right).sum())
                        t["false_positives"] += int((accepted & ~right).sum())
                        t["right"] += int(right.sum())
                        t["true_positives"] += int((accepted & right).sum())
                bar.set_postfix_str(f"budget {budget}: " + ", ".join(
                    f"{m} {tallies[(m, budget)]['correct']}/{tallies[(m, budget)]['solved']}" for m in at[budget]))
                bar.update(len(chunk))

            if at[budget]:
                reasoner.solve_batch(keys, [p.question for p in chunk], at[budget], budget, on_solved=tally, mesh=mesh)
        if json_path:
            with open(json_path, "w") as f:
                json.dump(_records(tallies, first + len(chunk)), f, indent=1)
    bar.close()
    return _records(tallies, len(problems))


def _records(tallies: dict, n: int) -> list[dict]:
    records = []
    for (method, budget), t in tallies.items():
        low, high = wilson_interval(t["correct"], n)
        records.append({"method": method, "budget": budget, "accuracy": t["correct"] / n, "ci_low": low,
                        "ci_high": high, "n_problems": n, "tokens": t["tokens"] / n,
                        "reward_calls": t["reward_calls"] / n, "seconds": t["seconds"] / n,
                        "pass_at_n": t["pass"] / n, "fpr": _ratio(t["false_positives"], t["wrong"]),
                        "tpr": _ratio(t["true_positives"], t["right"]), "outcomes": t["outcomes"]})
    return records


def paired(records: list[dict], a: tuple[str, int], b: tuple[str, int]) -> dict:
    """Method a against method b on the same problems, each given as (method, budget): the problems only a
    answers, only b answers, and the two-sided exact McNemar p-value (a binomial test on those)."""
    from scipy.stats import binomtest

    found = {(r["method"], r["budget"]): np.asarray(r["outcomes"]) for r in records}
    missing = [m for m in (a, b) if m not in found]
    if missing:
        raise ValueError(f"no records for {missing}; the records hold {sorted(found)}")
    if len(found[a]) != len(found[b]):
        raise ValueError(f"{a} has {len(found[a])} problems and {b} {len(found[b])}: a paired comparison needs the same")
    only_a, only_b = int(np.sum(found[a] > found[b])), int(np.sum(found[b] > found[a]))
    p = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
    return {"a": f"{a[0]}@{a[1]}", "b": f"{b[0]}@{b[1]}", "accuracy_a": float(found[a].mean()),
            "accuracy_b": float(found[b].mean()), "only_a": only_a, "only_b": only_b, "p_value": float(p)}


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def table(records: list[dict]) -> str:
    header = (f"{'method':<10}{'budget':>7}{'accuracy':>10}{'95% interval':>16}{'pass@N':>8}{'FPR':>7}{'TPR':>7}"
              f"{'tokens':>9}{'rewards':>9}{'s/problem':>11}")
    lines = [header, "-" * len(header)]
    for r in records:
        lines.append(f"{r['method']:<10}{r['budget']:>7}{r['accuracy']:>10.3f}{'':>3}[{r['ci_low']:.3f}, "
                     f"{r['ci_high']:.3f}]{r['pass_at_n']:>8.3f}{r['fpr']:>7.3f}{r['tpr']:>7.3f}"
                     f"{r['tokens']:>9.0f}{r['reward_calls']:>9.1f}{r['seconds']:>11.2f}")
    return "\n".join(lines)


def plot(records: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in records):
        rs = sorted((r for r in records if r["method"] == method), key=lambda r: r["budget"])
        x = [r["budget"] for r in rs]
        y = np.array([r["accuracy"] for r in rs])
        err = np.array([[a - r["ci_low"] for a, r in zip(y, rs)], [r["ci_high"] - a for a, r in zip(y, rs)]])
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("budget (trajectories sampled)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _at_least(minimum: int):
    """An argparse type: an int of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer of at least {minimum}, got {value}")
        return value

    return parse


def _budgets(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated positive ints ("1,4,16")."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected comma-separated positive integers such as 1,4,16")
    return tuple(_at_least(1)(part) for part in parts)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m inference.scaling.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="svamp", help=f"a problem set shipped with the package "
                        f"({', '.join(DATA_SETS)}) or the path of an SVAMP (.json) or GSM8K (.jsonl) file; "
                        "default: svamp (SVAMP 0-399)")
    parser.add_argument("--problems", type=_at_least(1), default=10, help="how many problems (from --offset)")
    parser.add_argument("--offset", type=_at_least(0), default=0, help="index of the first problem")
    parser.add_argument("--budgets", type=_budgets, default=(1, 4, 16), help="comma-separated, e.g. 1,4,16")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, among {','.join(METHODS)}; "
                        "method@4 runs a method at budget 4 only (method@4@16: at 4 and 16)")
    parser.add_argument("--compare", default="pf@4:bon@16,pf@4:majority@4",
                        help="paired comparisons to print, a@N:b@M, where both were run")
    parser.add_argument("--reward", default="verifier", choices=("verifier", "judge", "prm"),
                        help="the arithmetic verifier, the model judging itself, or the trained process reward model")
    parser.add_argument("--prm", default=None, help="with --reward prm: a head written by train_prm (default: the "
                        "one shipped)")
    parser.add_argument("--steps", type=_at_least(1), default=4, help="reasoning steps T")
    parser.add_argument("--step-tokens", type=_at_least(1), default=32, help="tokens per step at most")
    parser.add_argument("--model", default=None, help="a GGUF file or safetensors directory (default: SmolLM2-135M)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=_at_least(1), default=None, help="problems run side by side (vmap); all one "
                        "shape; default: --devices")
    parser.add_argument("--devices", type=_at_least(1), default=1, help="split each batch's problems across this many "
                        "devices (a 1-D mesh); --batch and --problems must be multiples of it")
    parser.add_argument("--json", default=None, help="write the records here")
    parser.add_argument("--plot", default="scaling.png", help="accuracy against budget (empty: no plot)")
    opts = parser.parse_args(argv)
    entries = [m.strip().split("@") for m in opts.methods.split(",") if m.strip()]
    methods = tuple(dict.fromkeys(e[0] for e in entries))
    try:
        only = {e[0]: tuple(int(b) for b in e[1:]) for e in entries if len(e) > 1}
    except ValueError:
        parser.error(f"--methods: a budget after @ is an integer, got {opts.methods!r}")
    outside = {m: b for m, bs in only.items() for b in bs if b not in opts.budgets}
    if outside:
        parser.error(f"--methods: budgets {outside} are not among --budgets {','.join(map(str, opts.budgets))}")
    try:
        comparisons = [[(m, int(n)) for m, n in (side.split("@") for side in pair.split(":"))]
                       for pair in filter(None, opts.compare.split(","))]
    except ValueError:
        parser.error(f"--compare: expected pairs like pf@4:bon@16, comma-separated; got {opts.compare!r}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        parser.error(f"--methods: unknown methods {unknown}; choose among {','.join(METHODS)}")
    if opts.prm is not None and (opts.reward != "prm" or not pathlib.Path(opts.prm).is_file()):
        parser.error(f"--prm: give an existing file written by train_prm, with --reward prm (got {opts.prm!r})")
    if opts.model is not None and not pathlib.Path(opts.model).exists():
        parser.error(f"--model: no GGUF file or safetensors directory at {opts.model!r}")
    batch = opts.devices if opts.batch is None else opts.batch
    if batch % opts.devices or opts.problems % opts.devices:
        parser.error(f"--devices {opts.devices}: --batch ({batch}) and --problems ({opts.problems}) must be multiples "
                     "of it, so that every batch splits in equal blocks")
    if opts.devices > jax.device_count():  # JAX reads XLA_FLAGS when it starts, so this process cannot add devices
        parser.error(f"--devices {opts.devices}: JAX sees {jax.device_count()} {jax.default_backend()} device(s); on a "
                     f"CPU, set XLA_FLAGS=--xla_force_host_platform_device_count={opts.devices} before running this")
    try:  # every argument is checked before the model loads
        problems = load_problems(opts.data, opts.problems, opts.offset)
    except (OSError, ValueError) as error:
        parser.error(f"--data: {error}")

    import ppl

    lm = ppl.lm.load(opts.model)
    reward = ProcessRewardModel.load(opts.prm) if opts.reward == "prm" else opts.reward
    reasoner = Reasoner(lm, reward, n_steps=opts.steps, step_tokens=opts.step_tokens)
    records = evaluate(reasoner, problems, methods, opts.budgets, opts.seed, batch, json_path=opts.json, only=only,
                       mesh=opts.devices if opts.devices > 1 else None)
    print(f"\n{len(problems)} problems from {opts.data} (offset {opts.offset}), reward: {opts.reward}, "
          f"{opts.steps} steps of up to {opts.step_tokens} tokens; jax {jax.__version__} on {opts.devices} "
          f"{jax.devices()[0].platform} device(s)")
    print(table(records))
    run = {(r["method"], r["budget"]) for r in records}
    for a, b in comparisons:
        if a in run and b in run:
            c = paired(records, a, b)
            print(f"{c['a']} vs {c['b']}: {c['accuracy_a']:.3f} vs {c['accuracy_b']:.3f}; only {c['a']} right on "
                  f"{c['only_a']} problems, only {c['b']} on {c['only_b']}; McNemar p = {c['p_value']:.3f}")
    if opts.plot:
        plot(records, opts.plot, f"{len(problems)} problems, reward: {opts.reward}")
        print(f"plot: {opts.plot}")
    return records


if __name__ == "__main__":
    main(sys.argv[1:])
