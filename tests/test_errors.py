"""Every bad input raises a ModelError that names the address and the fix."""

import jax
import jax.numpy as jnp
import pytest

import ppl
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
