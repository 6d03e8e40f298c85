"""The catalogue of bad inputs (docs/errors.md): each raises an error that names the address or argument and the
fix, or gives -inf where a number is asked for, never NaN; MCMC runs that have not converged warn.

Each test runs a small model for a few steps: the messages are what is tested, not the draws.
"""

import os
import re
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_densities import point, regression  # the README's first model

import ppl
from inference import importance, mcmc, pgibbs, smc, tempering
from inference.mcmc import kernels
from inference.scaling import bench, load_problems
from ppl import dist

KEY = jax.random.key(0)


@ppl.gen
def simple():
    a = dist.Normal(0.0, 1.0) @ "a"
    return dist.Normal(a, 1.0) @ "b"


@ppl.gen
def outer():
    return simple() @ "inner"


def test_duplicate_address():
    @ppl.gen
    def twice():
        dist.Normal(0.0, 1.0) @ "x"
        dist.Normal(0.0, 1.0) @ "x"

    with pytest.raises(ppl.ModelError, match=r"at address 'x'.*visited twice.*ppl.vmap"):
        twice.simulate(KEY)


def test_address_that_is_a_prefix_of_another_is_a_duplicate():
    @ppl.gen
    def clash():
        dist.Normal(0.0, 1.0) @ ("x", "y")
        dist.Normal(0.0, 1.0) @ "x"

    with pytest.raises(ppl.ModelError, match="visited twice"):
        clash.simulate(KEY)


def test_constraint_at_unvisited_address_names_it_and_known_addresses():
    with pytest.raises(ppl.ModelError, match=r"at address 'c'.*never visits.*'a', 'b'"):
        simple.generate(KEY, {"c": 1.0})
    with pytest.raises(ppl.ModelError, match=r"at address 'inner/zz'.*never visits"):
        outer.generate(KEY, {"inner": {"zz": 1.0}})
    tr = simple.simulate(KEY)
    with pytest.raises(ppl.ModelError, match="never visits"):
        simple.update(KEY, tr, {"typo": 1.0})
    with pytest.raises(ppl.ModelError, match="never visits"):
        simple.assess({**tr.choices, "typo": 1.0})


def test_assess_with_a_missing_value():
    with pytest.raises(ppl.ModelError, match=r"at address 'b'.*needs a value"):
        simple.assess({"a": 0.0})


def test_wrong_shape_of_constraint():
    with pytest.raises(ppl.ModelError, match=r"at address 'a'.*shape \(3,\).*shape \(\)"):
        simple.generate(KEY, {"a": jnp.zeros(3)})


def test_wrong_dtype_of_constraint():
    @ppl.gen
    def coin():
        return dist.Bernoulli(0.5) @ "k"

    with pytest.raises(ppl.ModelError, match=r"at address 'k'.*discrete.*integers"):
        coin.generate(KEY, {"k": 1.0})
    with pytest.raises(ppl.ModelError, match=r"at address 'a'.*continuous.*floats"):
        simple.generate(KEY, {"a": jnp.int32(1)})


def test_dict_given_where_a_value_is_expected():
    with pytest.raises(ppl.ModelError, match=r"at address 'a'.*is a dict"):
        simple.generate(KEY, {"a": {"b": 1.0}})


def test_wrong_batch_length_for_vmap_and_scan_blocks():
    @ppl.gen
    def point(x):
        return dist.Normal(x, 1.0) @ "y"

    @ppl.gen
    def model(xs):
        return ppl.vmap(point)(xs) @ "ys"

    with pytest.raises(ppl.ModelError, match=r"at address 'ys'.*block has 4 elements"):
        model.generate(KEY, {"ys": {"y": jnp.zeros(3)}}, jnp.zeros(4))

    @ppl.gen
    def chain():
        return ppl.scan(point, length=5)(0.0) @ "steps"

    with pytest.raises(ppl.ModelError, match=r"at address 'steps'.*5 steps"):
        chain.generate(KEY, {"steps": {"y": jnp.zeros(2)}})


def test_python_control_flow_on_a_random_value_names_the_combinators():
    @ppl.gen
    def branchy():
        x = dist.Normal(0.0, 1.0) @ "x"
        if x > 0:
            dist.Normal(0.0, 1.0) @ "y"
        return x

    with pytest.raises(ppl.ModelError, match=r"Python control flow.*ppl.cond.*ppl.switch.*last address visited: x"):
        branchy.simulate(KEY)

    @ppl.gen
    def loopy():
        n = dist.Poisson(3.0) @ "n"
        for i in range(int(n)):
            dist.Normal(0.0, 1.0) @ ("x", i)

    with pytest.raises(ppl.ModelError, match="Python control flow"):
        loopy.simulate(KEY)


def test_at_outside_a_generative_function():
    with pytest.raises(ppl.ModelError, match="outside a generative function.*@ppl.gen"):
        dist.Normal(0.0, 1.0) @ "x"
    with pytest.raises(ppl.ModelError, match="outside a generative function"):
        simple() @ "s"
    with pytest.raises(ppl.ModelError, match="ppl.factor was called outside"):
        ppl.factor(1.0)


def test_bad_addresses():
    @ppl.gen
    def traced_address():
        x = dist.Normal(0.0, 1.0) @ "x"
        dist.Normal(0.0, 1.0) @ x

    with pytest.raises(ppl.ModelError, match="contains a JAX value.*static strings"):
        traced_address.simulate(KEY)

    @ppl.gen
    def unhashable_address():
        dist.Normal(0.0, 1.0) @ ["a", "b"]

    with pytest.raises(ppl.ModelError, match="component of type list.*tuples"):
        unhashable_address.simulate(KEY)


def test_missing_key_is_named():
    with pytest.raises(ppl.ModelError, match="takes a PRNG key first"):
        outer.simulate(jnp.zeros(3))  # model arguments where the key belongs
    with pytest.raises(ppl.ModelError, match="takes a PRNG key first"):
        simple.generate({"a": 1.0}, KEY)
    with pytest.raises(ppl.ModelError, match="assess takes no key"):
        simple.assess(KEY, {"a": 1.0})


def test_factor_must_be_scalar():
    @ppl.gen
    def vector_factor():
        ppl.factor(jnp.ones(3))

    with pytest.raises(ppl.ModelError, match="scalar log weight.*sum it"):
        vector_factor.simulate(KEY)


def test_switch_branches_that_disagree():
    @ppl.gen
    def scalar():
        return dist.Normal(0.0, 1.0) @ "v"

    @ppl.gen
    def vector():
        return dist.Normal(jnp.zeros(2), 1.0) @ "v"

    @ppl.gen
    def model():
        k = dist.Bernoulli(0.5) @ "k"
        return ppl.cond(scalar, vector)(k == 1) @ "s"

    with pytest.raises(ppl.ModelError, match=r"at address 's'.*different structure, shape or dtype"):
        model.simulate(KEY)


def test_vmap_without_mapped_arguments_points_to_repeat():
    @ppl.gen
    def model():
        return ppl.vmap(simple, in_axes=None)() @ "xs"

    with pytest.raises(ppl.ModelError, match="ppl.repeat"):
        model.simulate(KEY)


def test_scan_length_cannot_change_in_update():
    @ppl.gen
    def step(c):
        return dist.Normal(c, 1.0) @ "z"

    @ppl.gen
    def model(T):
        return ppl.scan(step, length=T)(0.0) @ "s"

    tr = model.simulate(KEY, 3)
    with pytest.raises(ppl.ModelError, match=r"at address 's'.*3 steps.*asked for 4"):
        model.update(KEY, tr, None, 4)


def test_decorating_twice_and_non_callables():
    with pytest.raises(TypeError, match="applied twice"):
        ppl.gen(simple)
    with pytest.raises(TypeError, match="decorates a function"):
        ppl.gen(3)


# --- inference drivers: what a user hands smc, importance, csmc, particle Gibbs and tempering ---

@ppl.gen
def ar_step(z_prev, sigma):
    z = dist.Normal(0.9 * z_prev, 1.0) @ "z"
    dist.Normal(z, sigma) @ "y"
    return z


@ppl.gen
def ar_model(T):
    return ppl.scan(ar_step, length=T)(0.0, 0.5) @ "steps"


@pytest.mark.parametrize("length", [10, 40])
def test_observations_of_the_wrong_length_are_refused_by_every_driver(length):
    """Case 1: a scan block observed for 10 or 40 steps of a 20-step scan (smc.run used to pad or cut it)."""
    obs = {"steps": {"y": jnp.zeros(length)}}
    reference = ar_model.simulate(KEY, 20).choices
    match = rf"at address 'steps'.*shape \({length},\).*20 steps.*shape \(20, \.\.\.\)"
    runs = {
        "smc.run": lambda: smc.run(KEY, ar_model, (20,), obs, 10),
        "importance.run": lambda: importance.run(KEY, ar_model, (20,), obs, 10),
        "smc.csmc": lambda: smc.csmc(KEY, ar_model, (20,), obs, reference, 5),
        "pgibbs.run": lambda: pgibbs.run(KEY, ar_model, (20,), obs, 5, num_samples=2, num_chains=1,
                                         progress_bar=False),
        "tempering.temper": lambda: tempering.temper(KEY, ar_model, (20,), obs, 10),
    }
    for name, run in runs.items():
        with pytest.raises(ppl.ModelError, match=match):
            run()


def test_model_arguments_that_are_not_a_tuple_name_args():
    """Case 10: `smc.run(key, model, 20, ...)` said "'int' object is not iterable"."""
    obs = {"steps": {"y": jnp.zeros(20)}}
    for run in (smc.run, importance.run):
        with pytest.raises(TypeError, match=r"args is the tuple of the model's arguments, got int 20.*\(20,\)"):
            run(KEY, ar_model, 20, obs, 10)


def test_counts_accept_numpy_integers_and_refuse_the_rest():
    """Case 11: `n_particles=np.int64(10)` was refused; a float, a bool or 0 names the argument."""

    obs = {"steps": {"y": jnp.zeros(20)}}
    exact = smc.run(KEY, ar_model, (20,), obs, 10)
    numpy = smc.run(KEY, ar_model, (20,), obs, np.int64(10))
    assert float(numpy.log_marginal_likelihood()) == float(exact.log_marginal_likelihood())
    assert importance.run(KEY, ar_model, (20,), obs, np.int32(7)).log_weights.shape == (7,)
    for bad, error, match in [(10.0, TypeError, "n_particles must be an integer, got float"),
                              (True, TypeError, "n_particles must be an integer, got bool"),
                              (0, ValueError, "n_particles must be at least 1, got 0")]:
        with pytest.raises(error, match=match):
            smc.run(KEY, ar_model, (20,), obs, bad)


# --- the demonstration's command line: every argument checked before the model loads ---

@pytest.mark.parametrize("argv, message", [
    (["--budgets", "abc"], "argument --budgets: expected an integer, got 'abc'"),
    (["--budgets", "4,-2"], "argument --budgets: expected an integer of at least 1, got -2"),
    (["--batch", "0"], "argument --batch: expected an integer of at least 1, got 0"),
    (["--problems", "0"], "argument --problems: expected an integer of at least 1, got 0"),
    (["--offset", "-1"], "argument --offset: expected an integer of at least 0, got -1"),
    (["--offset", "400"], r"--data: problems 400 to 409 were asked for, but .*svamp_train.json holds 400 \(0 to 399\)"),
    (["--methods", "pf,sampling"], r"--methods: unknown methods \['sampling'\]; choose among pf,"),
    (["--model", "/no/such.gguf"], "--model: no GGUF file or safetensors directory at '/no/such.gguf'"),
    (["--data", "/no/such.json"], "--data: no problem file at '/no/such.json'.*svamp, gsm8k"),
    (["--methods", "pf@8", "--budgets", "4"], r"--methods: budgets \{'pf': 8\} are not among --budgets 4"),
    (["--methods", "pf@four"], "--methods: a budget after @ is an integer"),
    (["--compare", "pf4:bon16"], "--compare: expected pairs like pf@4:bon@16"),
    (["--prm", "/no/head.safetensors", "--reward", "prm"], "--prm: give an existing file written by train_prm"),
])
def test_bench_arguments_are_refused_before_the_model_loads(argv, message, capsys, monkeypatch):
    """Case 12, and the README's demonstration with --problems 0 or an --offset past the end."""
    monkeypatch.setattr(ppl.lm, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit) as exit_:
        bench.main(argv)
    assert exit_.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_an_empty_problem_file_is_refused(tmp_path, capsys, monkeypatch):
    """Part 1: an empty problem file (the demonstration used to divide by its zero problems)."""
    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.json is empty: it holds no problems"):
        load_problems(str(empty))
    monkeypatch.setattr(ppl.lm, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit):
        bench.main(["--data", str(empty)])
    assert "holds no problems" in capsys.readouterr().err


def test_a_nan_observation_is_named_by_every_driver():
    """Case 2, inference side: smc.run used to end with log Z = -inf, naming nothing."""
    ys = jnp.zeros(20).at[7].set(jnp.nan)
    obs = {"steps": {"y": ys}}
    for run in (lambda: smc.run(KEY, ar_model, (20,), obs, 10), lambda: importance.run(KEY, ar_model, (20,), obs, 10),
                lambda: smc.csmc_kernel(obs, 5), lambda: tempering.temper(KEY, ar_model, (20,), obs, 10)):
        with pytest.raises(ppl.ModelError, match=r"at address 'steps/y'.*NaN.*index 7.*ppl.Masked"):
            run()
    masked = {"steps": {"y": ppl.Masked(ys, ~jnp.isnan(ys))}}  # a missing value, said so
    assert jnp.isfinite(smc.run(KEY, ar_model, (20,), masked, 10).log_marginal_likelihood())


# --- the language: observed values, distribution arguments, selections, language models ---

XS = jnp.linspace(-1.0, 1.0, 50)


@pytest.fixture(scope="module")
def lm():
    return ppl.lm.load()


def test_nan_in_observed_data_names_its_address_and_index():
    """Case 1: a NaN in observed data is refused, naming the address, the first NaN's index and ppl.Masked."""
    ys = (0.5 * XS).at[3].set(jnp.nan)
    match = r"at address 'ys/y': .*NaN.*index 3.*ppl\.Masked\(value, mask\)"
    with pytest.raises(ppl.ModelError, match=match):
        regression.generate(KEY, {"ys": {"y": ys}}, XS)
    tr = regression.simulate(KEY, XS)
    with pytest.raises(ppl.ModelError, match=match):
        regression.update(KEY, tr, {"ys": {"y": ys}})
    with pytest.raises(ppl.ModelError, match=r"at address 'noise': the value given here is NaN"):
        regression.assess({**tr.choices, "noise": float("nan")}, XS)
    with pytest.raises(ppl.ModelError, match=r"at address 'ys/y'"):
        ppl.choicemap.check_observations({("ys", "y"): np.asarray(ys)})  # what inference drivers call
    _, w = regression.generate(KEY, {"ys": {"y": ppl.Masked(ys, jnp.arange(50) != 3)}}, XS)  # masked out: allowed
    assert np.isfinite(w)


def test_observed_value_outside_the_support_gives_minus_inf():
    """Case 2: a value outside its distribution's support has log density -inf, never NaN (masked-out ones count 0)."""
    @ppl.gen
    def leaves():
        dist.HalfNormal(1.0) @ "h"
        dist.Poisson(3.0) @ "n"
        dist.Categorical(logits=jnp.zeros(3)) @ "k"
        dist.Normal(jnp.zeros(3), 1.0).to_event(1) @ "v"

    valid = {"h": 1.0, "n": jnp.int32(2), "k": jnp.int32(1), "v": jnp.zeros(3)}
    outside_values = [("h", -1.0), ("n", jnp.int32(-1)), ("k", jnp.int32(3)), ("v", jnp.array([0.0, jnp.inf, 0.0]))]
    for address, outside in outside_values:
        _, w = leaves.generate(KEY, {**valid, address: outside})
        assert w == -jnp.inf, address
    # the README's model: a scale observed outside its support makes every density that uses it -inf as well
    _, w = regression.generate(KEY, {"noise": jnp.asarray(-1.0), "ys": {"y": 0.5 * XS}}, XS)
    assert w == -jnp.inf

    @ppl.gen
    def counts():
        return dist.Poisson(jnp.full(4, 3.0)).mask(jnp.array([True, True, False, True])) @ "n"

    _, w = counts.generate(KEY, {"n": jnp.array([1, 2, -1, 3])})  # -1 marks a missing count, masked out
    assert np.isfinite(w)


def test_numpyro_parameter_errors_name_the_address():
    """Case 2: numpyro's "invalid scale parameter" for a concrete scale names the address where it is used."""
    @ppl.gen
    def model(xs, noise):
        return ppl.vmap(point, in_axes=(0, None, None))(xs, 0.5, noise) @ "ys"

    match = (r"at address 'ys/y': Normal got an invalid scale parameter: it must satisfy Positive.*got -1\..*"
             "give a valid scale")
    with pytest.raises(ppl.ModelError, match=match):
        model.simulate(KEY, XS, -1.0)


def test_invalid_distribution_arguments_are_refused_like_numpyro():
    """Case 3: concrete bad arguments (unnormalised probs) raise, naming the distribution, the argument and the fix."""
    probs = jnp.array([0.5, 0.9])

    @ppl.gen
    def pick():
        return dist.Categorical(probs=probs) @ "k"

    with pytest.raises(ppl.ModelError, match=r"at address 'k': CategoricalProbs got an invalid probs parameter.*"
                                             r"Simplex.*normalise them, or give logits="):
        pick.simulate(KEY)
    with pytest.raises(ppl.ModelError, match="invalid probs"):  # outside a model: refused when built
        dist.Categorical(probs=probs)

    @ppl.gen
    def traced(p):
        return dist.Categorical(probs=p) @ "k"

    assert np.isfinite(traced.simulate(KEY, probs).score)  # traced arguments cannot be checked, as in numpyro


def test_selection_of_an_address_the_model_never_visits():
    """Case 4: regenerate with a selection that names no address (a typo) raises, listing the model's addresses."""
    tr = regression.simulate(KEY, XS)
    with pytest.raises(ppl.ModelError, match=r"at address 'slpoe': the selection names an address the model never "
                                             r"visits.*fix its name.*'noise', 'slope', 'ys/y'"):
        regression.regenerate(KEY, tr, ppl.sel("slpoe"), XS)
    for typo in [ppl.sel("slope") | ppl.sel("nosie"), ~ppl.sel("nosie"), ppl.sel("ys", "x"), ppl.sel("slope", "x")]:
        with pytest.raises(ppl.ModelError, match="never visits"):
            regression.regenerate(KEY, tr, typo, XS)
    for fine in [ppl.sel("slope"), ppl.sel("ys"), ppl.sel("ys", "y"), ppl.sel("slope") | ppl.sel("noise"),
                 ~ppl.sel("slope"), ppl.sel("ys") & ppl.sel("ys", "y"), ppl.sel(), ppl.sel.none()]:
        regression.regenerate(KEY, tr, fine, XS)

    @ppl.gen
    def step(z):
        return dist.Normal(z, 1.0) @ "z"

    @ppl.gen
    def chain():
        return ppl.scan(step, length=3)(0.0) @ "steps"

    tr = chain.simulate(KEY)
    chain.regenerate(KEY, tr, ppl.sel("steps", "z"))
    with pytest.raises(ppl.ModelError, match=r"at address 'steps/x'.*'steps/z'"):
        chain.regenerate(KEY, tr, ppl.sel("steps", "x"))


def test_prompt_and_new_tokens_must_fit_the_context_window(lm):
    """Case 5: a prompt plus the tokens asked for beyond the context window raises, naming both and the window."""
    window = lm.transformer.config.context
    match = rf"the prompt has \d+ tokens and {window} new tokens.*context window is {window} tokens; shorten the prompt"
    with pytest.raises(ValueError, match=match):
        lm.sample_tokens(KEY, ["Hello"], max_tokens=window)
    with pytest.raises(ValueError, match=rf"context window is {window} tokens.*ask for fewer tokens"):
        lm.prompt_state("word " * window, max_tokens=16)


def test_a_batch_of_no_prompts(lm):
    """Case 6: an empty batch of prompts says the batch is empty."""
    with pytest.raises(ValueError, match="the batch of prompts is empty; give at least one prompt"):
        lm.generate(KEY, [], max_tokens=4)


# --- MCMC: where chains start, what they sample, whether they converged ---

FAST = {"num_chains": 2, "num_warmup": 5, "num_samples": 10, "progress_bar": False, "check_convergence": False}


@ppl.gen
def location_scale():
    mu = dist.Normal(0.0, 1.0) @ "mu"
    noise = dist.HalfNormal(1.0) @ "noise"
    return dist.Normal(mu, noise) @ "y"


@ppl.gen
def nan_factor():
    dist.Normal(0.0, 1.0) @ "x"
    ppl.factor(jnp.nan)


@ppl.gen
def finite_only_at_zero():
    x = dist.Normal(0.0, 1.0) @ "x"
    ppl.factor(jnp.where(x == 0.0, 0.0, jnp.nan))


@ppl.gen
def normal_mean(n):
    mu = dist.Normal(0.0, 1.0) @ "mu"
    dist.Normal(mu, 1.0).expand((n,)) @ "y"


@ppl.gen
def two_modes():
    """y ~ N(|x|, 0.5) observed at 5: modes at x = +-5 that no chain crosses between."""
    x = dist.Normal(0.0, 10.0) @ ("group", "x")
    dist.Normal(jnp.abs(x), 0.5) @ "y"


def test_observed_value_outside_support():
    """Case 1: an observed value outside its support names the address, for nuts and for run."""
    obs = {"noise": -1.0, "y": 0.5}
    with pytest.raises(ppl.ModelError, match=r"'noise' \(observed\): log density -inf; 'y' \(observed\)"):
        mcmc.nuts(jax.random.key(0), location_scale, (), obs, **FAST)
    with pytest.raises(ppl.ModelError, match=r"mcmc.run cannot start.*'noise' \(observed\): log density -inf.*support"):
        mcmc.run(jax.random.key(0), kernels.mh(ppl.sel("mu")), location_scale, (), obs, **FAST)


def test_init_outside_support():
    """Case 2: an `init` value outside the support names the address and says it came from init."""
    with pytest.raises(ppl.ModelError, match=r"'noise' \(from init\): log density -inf.*`init` value"):
        mcmc.nuts(jax.random.key(0), location_scale, (), {"y": 0.5}, init={"noise": -1.0}, **FAST)


def test_nan_density_at_the_initial_point():
    """Case 3: a log density that is NaN everywhere is caught before sampling, and the NaN term named."""
    with pytest.raises(ppl.ModelError, match=r"every chain; ppl.factor: log density nan"):
        mcmc.nuts(jax.random.key(0), nan_factor, (), {}, **FAST)


def test_step_size_collapse_after_warmup():
    """Case 3: a density finite at the start but NaN around it collapses the step size, which is reported."""
    with pytest.raises(ppl.ModelError, match=r"step size collapsed during warm-up.*not finite \(NaN or inf\) near"):
        mcmc.nuts(jax.random.key(0), finite_only_at_zero, (), {}, init={"x": 0.0},
                  **{**FAST, "num_chains": 1, "num_warmup": 20})


def test_convergence_warning():
    """Case 4: a well-mixed run gives no ConvergenceWarning; chains split between two modes give one naming it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mcmc.nuts(jax.random.key(1), normal_mean, (4,), {"y": jnp.array([0.5, 1.5, 0.9, 1.2])}, num_warmup=200,
                  num_samples=500, progress_bar=False)
    assert not [w for w in caught if issubclass(w.category, mcmc.ConvergenceWarning)]

    bad = {"num_chains": 4, "num_warmup": 50, "num_samples": 50, "progress_bar": False}
    with pytest.warns(mcmc.ConvergenceWarning, match=r"R-hat > 1.01 for group/x \(.*bulk ESS < 400.*target_accept"):
        res = mcmc.nuts(jax.random.key(0), two_modes, (), {"y": 5.0}, **bad)
    one_chain = mcmc.MCMCResult(*(jax.tree.map(lambda x: x[:1], t) for t in (res.samples, res.stats)))
    assert not any("R-hat" in p for p in mcmc.convergence.problems(one_chain))  # undefined for one chain
    with warnings.catch_warnings():
        warnings.simplefilter("error", mcmc.ConvergenceWarning)
        mcmc.nuts(jax.random.key(0), two_modes, (), {"y": 5.0}, **bad, check_convergence=False)


def test_no_latent_choices():
    """Case 5: a model with nothing unobserved says so and lists the observed addresses."""
    obs = {"mu": 0.0, "noise": 1.0, "y": 0.5}
    match = r"no latent \(unobserved\) choices; observed addresses: 'mu', 'noise', 'y'"
    with pytest.raises(ppl.ModelError, match=match):
        mcmc.nuts(jax.random.key(0), location_scale, (), obs, **FAST)


def test_import_prints_nothing(tmp_path):
    """A first import prints nothing: the library imports no ArviZ, whose daily FutureWarning is not shown."""
    code = ("import sys, ppl, inference.mcmc, inference.smc, inference.scaling; assert 'arviz' not in sys.modules; "
            "from inference.mcmc.result import import_arviz; import_arviz()")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}  # no stamp of today's warning: ArviZ would warn
    out = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, env=env,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert "refactor" not in out.stderr and "FutureWarning" not in out.stderr, out.stderr


def test_counts_accept_numpy_integers_and_reject_nonpositive():
    """Case 7: numpy integer counts are accepted; zero or negative ones raise naming the argument."""
    res = mcmc.nuts(jax.random.key(0), normal_mean, (4,), {"y": jnp.zeros(4)},
                    **{**FAST, "num_chains": np.int64(2), "num_warmup": np.int64(5), "num_samples": np.int64(10)})
    assert res.samples["mu"].shape == (2, 10)
    for name, bad in (("num_chains", 0), ("num_samples", -1), ("num_warmup", -1), ("num_chains", 2.0)):
        with pytest.raises((TypeError, ValueError), match=name):
            mcmc.nuts(jax.random.key(0), normal_mean, (4,), {"y": jnp.zeros(4)}, **{**FAST, name: bad})
    with pytest.raises(ValueError, match="thin must be at least 1"):
        mcmc.run(jax.random.key(0), kernels.mh(ppl.sel("mu")), normal_mean, (4,), {"y": jnp.zeros(4)},
                 **FAST, thin=np.int64(0))
