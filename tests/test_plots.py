"""`inference.plots`: each function returns a Figure whose lines hold the numbers of the result it plots."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure

from inference import plots, smc, vi
from testbed import lgssm

_, ARGS, OBS = lgssm.simulated(12, 0)


@pytest.fixture(scope="module")
def run():
    """A filter of 6 particles over 12 steps, resampling when ESS/N < 0.7, its history kept."""
    return smc.run(jax.random.key(0), lgssm.lgssm, ARGS, OBS, 6, ess_threshold=0.7, return_traces="history")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_plot_smc_draws_ess_over_n_the_resampling_steps_and_the_running_log_z(run):
    fig = plots.plot_smc(run)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax_ess, ax_z = fig.axes
    ess, marks = ax_ess.get_lines()
    np.testing.assert_allclose(ess.get_ydata(), np.asarray(run.info.ess) / 6, rtol=1e-6)
    resampled = np.flatnonzero(np.asarray(run.info.resampled))
    assert 0 < len(resampled) < 11  # the threshold made some steps resample and others not
    np.testing.assert_array_equal(marks.get_xdata(), resampled)
    (log_z,) = ax_z.get_lines()
    np.testing.assert_array_equal(log_z.get_ydata(), np.asarray(run.info.log_marginal_likelihood))
    assert log_z.get_ydata()[-1] == float(run.log_marginal_likelihood())


def test_plot_smc_draws_on_given_axes_and_refuses_a_batch(run):
    fig, axes = plt.subplots(1, 2)
    assert plots.plot_smc(run, axes=axes) is fig
    batched = jax.tree.map(lambda x: jnp.stack([x, x]), run)
    with pytest.raises(ValueError, match="plot one run's result"):
        plots.plot_smc(batched)


def test_plot_genealogy_draws_each_particle_from_its_ancestor(run):
    fig = plots.plot_genealogy(run)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    ancestors = np.asarray(run.history.ancestors)
    T, N = ancestors.shape
    segments = [s for c in ax.collections if isinstance(c, LineCollection) for s in c.get_segments()]
    assert len(segments) == (T - 1) * N
    drawn = {(int(a[0]), int(a[1]), int(b[0]), int(b[1])) for a, b in segments}
    expected = {(t - 1, int(ancestors[t, i]), t, i) for t in range(1, T) for i in range(N)}
    assert drawn == expected
    # bold lines: the lineages of the final particles, traced back through the ancestors
    _, bold = (c for c in ax.collections if isinstance(c, LineCollection))
    on_lineage = set()
    for b in range(N):
        for t in range(T - 1, 0, -1):
            on_lineage.add((t - 1, int(ancestors[t, b]), t, b))
            b = int(ancestors[t, b])
    assert {(int(a[0]), int(a[1]), int(b[0]), int(b[1])) for a, b in bold.get_segments()} == on_lineage
    (markers,) = (c for c in ax.collections if isinstance(c, PathCollection))
    assert markers.get_offsets().shape == (T * N, 2)
    weights = [t.get_text() for t in ax.texts]  # N = 6: the final weights are written
    np.testing.assert_allclose([float(w.split()[1].rstrip("]")) for w in weights],
                               np.asarray(run.normalized_weights()), atol=0.005)


def test_plot_genealogy_takes_colours_and_labels_and_needs_a_history(run):
    T, N = run.history.ancestors.shape
    colors = np.where(np.arange(N)[None, :] % 2 == 0, "C3", "C2").repeat(T, 0)
    labels = np.array([[f"{t}.{i}" for i in range(N)] for t in range(T)])
    fig = plots.plot_genealogy(run, colors=colors, labels=labels, show_weights=False)
    assert sorted(t.get_text() for t in fig.axes[0].texts) == sorted(labels.ravel())
    without = smc.run(jax.random.key(0), lgssm.lgssm, ARGS, OBS, 6, return_traces=False)
    with pytest.raises(ValueError, match='return_traces="history"'):
        plots.plot_genealogy(without)


def test_plot_loss_draws_the_objective_and_its_moving_average():
    values = np.sin(np.arange(200) / 7.0) + np.arange(200) / 100.0
    fit = vi.FitResult(params=None, values=jnp.asarray(values), opt_state=None)
    fig = plots.plot_loss(fit, window=10)
    raw, average = fig.axes[0].get_lines()
    np.testing.assert_allclose(raw.get_ydata(), values, rtol=1e-6)
    np.testing.assert_array_equal(average.get_xdata(), np.arange(9, 200))
    expected = np.array([values[k:k + 10].mean() for k in range(191)])
    np.testing.assert_allclose(average.get_ydata(), expected, rtol=1e-5)
    assert len(plots.plot_loss(values).axes[0].get_lines()[1].get_ydata()) == 200 - 4 + 1  # window 200 // 50


def test_plot_loss_of_a_fit():
    from test_vi import conjugate, mean_field

    params = {"loc": jnp.array(0.0), "log_scale": jnp.array(0.0)}
    fit = vi.fit(jax.random.key(0), vi.elbo(conjugate, mean_field), params, {"y": jnp.array([0.5, 1.5, 1.0])}, 3,
                 optimizer=optax.adam(0.05), steps=60, progress_bar=False)
    fig, ax = plt.subplots()
    assert plots.plot_loss(fit, ax=ax) is fig
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), np.asarray(fit.values))
