"""Plots of what the drivers return: an SMC run's ESS and evidence, its particles' genealogy, a VI fit's objective.

    from inference import plots
    plots.plot_smc(smc.run(...))                                  # ESS/N and log Ẑ over the steps
    plots.plot_genealogy(smc.run(..., return_traces="history"))   # who descends from whom
    plots.plot_loss(vi.fit(...))                                  # the objective over the steps

matplotlib is imported when a function is called (the library does not need it otherwise). Each function
draws on the axes it is given (`ax=`, or `axes=` for two) or on a new figure, and returns the
`matplotlib.figure.Figure`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["plot_genealogy", "plot_loss", "plot_smc"]


def _axes(n: int, given: Any, figsize: tuple[float, float]):
    """The axes to draw on: `given` (one, or a sequence of `n`), or those of a new figure."""
    import matplotlib.pyplot as plt

    if given is None:
        fig, axes = plt.subplots(n, 1, figsize=figsize, sharex=True, squeeze=False)
        return fig, list(axes[:, 0])
    axes = [given] if n == 1 and not isinstance(given, (list, tuple, np.ndarray)) else list(np.ravel(given))
    if len(axes) != n:
        raise ValueError(f"expected {n} matplotlib axes, got {len(axes)}")
    return axes[0].figure, axes


def _one_run(x: Any, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"{name} has shape {x.shape}: plot one run's result (index a batched result first, "
                         "e.g. jax.tree.map(lambda x: x[0], result))")
    return x


def plot_smc(result: Any, axes: Any = None):
    """ESS/N and the running log Ẑ at every step of an `smc.run` or `smc.csmc` result.

    Top: ESS/N of the weights after each step's extension (`result.info.ess` over N), with a marker at each
    step before which the particles were resampled (`result.info.resampled`). Bottom: the running estimate
    log Ẑ_{0:t} (`result.info.log_marginal_likelihood`); its last value is `result.log_marginal_likelihood()`.

    Args:
        result: an `SMCResult` of one run.
        axes: two matplotlib axes (ESS, log Ẑ), or None for a new figure.
    """
    info = result.info
    n = result.log_weights.shape[-1]
    ess = _one_run(info.ess, "result.info.ess") / n
    resampled = _one_run(info.resampled, "result.info.resampled").astype(bool)
    log_z = _one_run(info.log_marginal_likelihood, "result.info.log_marginal_likelihood")
    steps = np.arange(ess.shape[0])
    fig, (ax_ess, ax_z) = _axes(2, axes, (8, 5))
    ax_ess.plot(steps, ess, color="C0", label="ESS / N")
    ax_ess.plot(steps[resampled], ess[resampled], "v", color="C3", markersize=5, linestyle="none",
                label=f"resampled before the step ({resampled.sum()} of {len(steps)})")
    ax_ess.set_ylim(0, 1.05)
    ax_ess.set_ylabel("ESS / N")
    ax_ess.legend(loc="lower left", fontsize=8)
    ax_z.plot(steps, log_z, color="C1")
    ax_z.set_ylabel("running log Ẑ")
    ax_z.set_xlabel("step")
    ax_ess.set_title(f"SMC, N = {n}: log Ẑ = {log_z[-1]:.4g}" if len(log_z) else f"SMC, N = {n}")
    return fig


def _has_final_descendant(ancestors: np.ndarray, final_alive: np.ndarray) -> np.ndarray:
    """(T, N): whether particle i after step t has a descendant among the final particles that are `final_alive`."""
    T = ancestors.shape[0]
    alive = np.zeros(ancestors.shape, bool)
    alive[-1] = final_alive
    for t in range(T - 1, 0, -1):
        alive[t - 1, ancestors[t][alive[t]]] = True
    return alive


def _colors(colors: Any, T: int, N: int) -> np.ndarray:
    """(T, N) colours as hex strings, from None, one colour, (T, N) names or (T, N, 3 or 4) RGB(A) values."""
    import matplotlib.colors as mcolors

    if colors is None:
        colors = "C0"
    if isinstance(colors, str) or mcolors.is_color_like(colors):
        return np.full((T, N), mcolors.to_hex(colors), dtype=object)
    array = np.asarray(colors)
    if array.shape[:2] != (T, N):
        raise ValueError(f"colors has shape {array.shape}: give one colour per step and particle, (T, N) = {(T, N)}")
    flat = array.reshape(T * N, -1) if array.ndim == 3 else array.reshape(T * N)
    return np.array([mcolors.to_hex(c) for c in flat], dtype=object).reshape(T, N)


def plot_genealogy(result: Any, ax: Any = None, colors: Any = None, labels: Any = None,
                   show_weights: bool | None = None):
    """The particles' genealogy: steps on the x axis, particles on the y axis, a line from each particle to the
    particle of the step before that it descends from (`result.history.ancestors`).

    Bold lines are the lineages of the final particles with positive weight; a hollow marker is a particle with
    no descendant among them (the lineages are those of `smc.lineage`, the final traces' ancestries). Markers
    are drawn for up to 5,000 particles in all (T N); beyond, the lines alone.

    Args:
        result: an `SMCResult` of one run made with `return_traces=True` or `"history"`.
        ax: matplotlib axes, or None for a new figure.
        colors: one matplotlib colour, or one for each particle at each step: (T, N) names or (T, N, 3 or 4)
            RGB(A) values (e.g. by a verifier's verdict on the step); default "C0".
        labels: a text for each particle at each step, shape (T, N), written beside its marker (keep N small).
        show_weights: write each final particle's normalised weight beside it; default when N ≤ 20.
    """
    import matplotlib.collections as mcollections
    import matplotlib.lines as mlines

    if result.history is None:
        raise ValueError("plot_genealogy reads result.history, which this run did not keep: run smc.run with "
                         'return_traces=True or return_traces="history"')
    ancestors = np.asarray(result.history.ancestors)
    if ancestors.ndim != 2:
        raise ValueError(f"result.history.ancestors has shape {ancestors.shape}, not (T, N): plot one run's result")
    T, N = ancestors.shape
    weights = _one_run(result.normalized_weights(), "the final weights")
    alive = _has_final_descendant(ancestors, weights > 0)
    colors = _colors(colors, T, N)
    show_weights = N <= 20 if show_weights is None else show_weights
    fig, (ax,) = _axes(1, ax, (min(16.0, max(6.0, 1.6 * T)), max(3.0, min(10.0, 0.4 * N))))

    t, i = np.meshgrid(np.arange(1, T), np.arange(N), indexing="ij")
    segments = np.stack([np.stack([t - 1, ancestors[1:]], -1), np.stack([t, i], -1)], -2)  # (T - 1, N, 2, 2)
    lineage = alive[1:]
    width = 2.0 if N <= 50 else 1.0
    ax.add_collection(mcollections.LineCollection(segments[~lineage], colors="0.8", linewidths=width / 2, zorder=1))
    ax.add_collection(mcollections.LineCollection(segments[lineage], colors="0.25", linewidths=width, zorder=1))

    if T * N <= 5000:  # beyond, markers would hide the lines: the line colours say the same
        size = float(np.clip(1800.0 / N, 4.0, 90.0))
        steps, particles = np.meshgrid(np.arange(T), np.arange(N), indexing="ij")
        face = np.where(alive, colors, "white")
        ax.scatter(steps.ravel(), particles.ravel(), s=size, zorder=2, edgecolors=list(colors.ravel()),
                   facecolors=list(face.ravel()), linewidths=1.5 if N <= 50 else 0.5)
    texts = np.full((T, N), "", dtype=object) if labels is None else np.asarray(labels, dtype=object).copy()
    if show_weights:
        texts[-1] = [f"[w {w:.2f}] {text}".rstrip() for w, text in zip(weights, texts[-1])]
    for s, p in zip(*np.nonzero(texts != "")):
        ax.annotate(str(texts[s, p]), (s, p), xytext=(8, 6), textcoords="offset points", fontsize=7, color="0.3",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.9, "pad": 0.5})

    if T <= 30:
        ax.set_xticks(range(T), [f"step {s + 1}" for s in range(T)])
    else:
        ax.set_xlabel("step")
    ax.set_xlim(-0.3, T - 0.7 + (1.0 if show_weights or labels is not None else 0.0))
    ax.set_ylim(N - 0.4, -0.6)  # particle 0 at the top
    ax.set_ylabel("particle")
    handles = [mlines.Line2D([], [], color="0.25", lw=width, label="lineage of a final particle"),
               mlines.Line2D([], [], color="0.8", lw=width / 2, label="line that died out"),
               mlines.Line2D([], [], marker="o", color="0.3", markerfacecolor="white", linestyle="none",
                             label="no final descendant")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, fontsize=8, frameon=False)
    ax.set_title(f"particle genealogy, N = {N}, T = {T}")
    return fig


def _moving_average(values: Any, window: int) -> np.ndarray:
    """The mean of each `window` consecutive values: entry k averages values[k : k + window]."""
    values = np.asarray(values, np.float64)
    sums = np.cumsum(np.concatenate([[0.0], values]))
    return (sums[window:] - sums[:-window]) / window


def plot_loss(fit: Any, window: int | None = None, ax: Any = None):
    """`vi.fit`'s objective at every step (`FitResult.values`, or an array of them) and its moving average.

    The objective is what the fit maximises (an ELBO, an IWAE bound, ...): each step's value is a Monte Carlo
    estimate, so the raw curve is noisy and the average over `window` steps (default: a 50th of the steps, at
    least 1) shows the trend; the average over steps k..k+window-1 is drawn at step k+window-1.

    Args:
        fit: a `vi.FitResult` or an array of objective values, shape (steps,).
        window: steps in the moving average.
        ax: matplotlib axes, or None for a new figure.
    """
    values = _one_run(getattr(fit, "values", fit), "the objective's values")
    window = max(1, len(values) // 50) if window is None else int(window)
    if not 1 <= window <= max(1, len(values)):
        raise ValueError(f"window must be between 1 and the number of steps ({len(values)}), got {window}")
    fig, (ax,) = _axes(1, ax, (8, 4))
    steps = np.arange(len(values))
    ax.plot(steps, values, color="C0", alpha=0.35, lw=1, label="objective (one estimate a step)")
    if len(values):
        ax.plot(steps[window - 1:], _moving_average(values, window), color="C0", lw=2,
                label=f"moving average over {window} steps")
    ax.set_xlabel("step")
    ax.set_ylabel("objective (maximised)")
    ax.legend(loc="lower right", fontsize=8)
    return fig
