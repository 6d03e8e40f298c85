"""The choice-map operations of `ppl.choicemap`: exact results on nested maps, `Masked` leaves and empty maps."""

import jax
import jax.numpy as jnp

import ppl
from ppl import choicemap, dist

# Masked leaves are compared by identity (dict equality tries `is` before `==`), so one object is used throughout.
M = ppl.Masked(jnp.arange(3.0), jnp.array([True, False, True]))

CHOICES = {"a": 1.0, "s": {"x": 2.0, "y": M, "t": {"u": 3.0}}, "b": 4.0}


def test_flatten_lists_every_leaf_with_its_path_in_order():
    assert choicemap.flatten(CHOICES) == [
        (("a",), 1.0), (("s", "x"), 2.0), (("s", "y"), M), (("s", "t", "u"), 3.0), (("b",), 4.0),
    ]


def test_flatten_prefix_bare_value_empty_and_tuple_keys():
    assert choicemap.flatten({"x": 1.0}, prefix=("p", 0)) == [(("p", 0, "x"), 1.0)]
    assert choicemap.flatten(5.0) == [((), 5.0)]
    assert choicemap.flatten({}) == []
    assert choicemap.flatten({"a": {}, "b": 1.0}) == [(("b",), 1.0)]
    assert choicemap.flatten({("a", "b"): 1.0}) == [((("a", "b"),), 1.0)]  # one component: normalize nests it
    assert choicemap.flatten(choicemap.normalize({("a", "b"): 1.0})) == [(("a", "b"), 1.0)]


def test_split_by_a_union_of_paths():
    selected, rest = choicemap.split(CHOICES, ppl.sel("a") | ppl.sel("s", "t"))
    assert selected == {"a": 1.0, "s": {"t": {"u": 3.0}}}
    assert rest == {"s": {"x": 2.0, "y": M}, "b": 4.0}


def test_split_moves_a_masked_leaf_wholly_and_drops_emptied_sub_maps():
    selected, rest = choicemap.split(CHOICES, ppl.sel("s", "y"))
    assert selected == {"s": {"y": M}}
    assert rest == {"a": 1.0, "s": {"x": 2.0, "t": {"u": 3.0}}, "b": 4.0}
    selected, rest = choicemap.split(CHOICES, ~ppl.sel("s"))
    assert selected == {"a": 1.0, "b": 4.0}
    assert rest == {"s": CHOICES["s"]}


def test_split_of_everything_nothing_and_empty_maps():
    assert choicemap.split(CHOICES, ppl.sel()) == (CHOICES, {})
    assert choicemap.split(CHOICES, ppl.sel.none()) == ({}, CHOICES)
    assert choicemap.split({}, ppl.sel()) == ({}, {})
    assert choicemap.split(None, ppl.sel("a")) == ({}, {})
    assert choicemap.split({"a": {}, "b": 1.0}, ppl.sel("a")) == ({}, {"b": 1.0})
    assert choicemap.split({("s", "x"): 2.0, "a": 1.0}, ppl.sel("s")) == ({"s": {"x": 2.0}}, {"a": 1.0})


def test_latents_drops_the_observed_addresses_and_everything_under_them():
    observations = {"s": {"x": 0.0, "t": 0.0}, "b": 0.0}
    assert choicemap.latents(CHOICES, observations) == {"a": 1.0, "s": {"y": M}}
    assert choicemap.latents(CHOICES, {("s", "x"): 0.0}) == {"a": 1.0, "s": {"y": M, "t": {"u": 3.0}}, "b": 4.0}
    assert choicemap.latents(CHOICES, {"s": {"z": 0.0}}) == CHOICES  # an address the choices lack removes nothing
    assert choicemap.latents(CHOICES, {"a": {"deeper": 0.0}}) == CHOICES  # nor one below a value


def test_latents_without_observations_is_the_choices_themselves():
    assert choicemap.latents(CHOICES, {}) is CHOICES
    assert choicemap.latents(CHOICES, None) is CHOICES
    assert choicemap.latents({}, {"a": 0.0}) == {}


def test_latents_counts_a_masked_observation_as_observed_unless_it_is_dropped_first():
    observations = {"s": {"x": 0.0, "y": M}}
    assert choicemap.latents(CHOICES, observations) == {"a": 1.0, "s": {"t": {"u": 3.0}}, "b": 4.0}
    kept = choicemap.latents(CHOICES, choicemap.drop_masked(observations))
    assert kept == {"a": 1.0, "s": {"y": M, "t": {"u": 3.0}}, "b": 4.0}


def test_outside_removes_the_sub_map_at_a_path():
    assert choicemap.outside(CHOICES, ("s",)) == {"a": 1.0, "b": 4.0}
    assert choicemap.outside(CHOICES, ("s", "x")) == {"a": 1.0, "s": {"y": M, "t": {"u": 3.0}}, "b": 4.0}
    assert choicemap.outside(CHOICES, ("s", "t", "u")) == {"a": 1.0, "s": {"x": 2.0, "y": M}, "b": 4.0}
    assert choicemap.outside({"a": 1.0, "s": {"t": {"u": 3.0}}}, ("s", "t")) == {"a": 1.0}  # emptied parents go


def test_outside_of_absent_paths_the_root_and_empty_maps():
    assert choicemap.outside(CHOICES, ("missing",)) == CHOICES
    assert choicemap.outside(CHOICES, ("a", "below")) == CHOICES  # a value is not a sub-map
    assert choicemap.outside(CHOICES, ()) == {}
    assert choicemap.outside({}, ("s",)) == {}
    assert choicemap.outside(None, ("s",)) == {}
    assert choicemap.outside({("s", "x"): 2.0, "a": 1.0}, ("s",)) == {"a": 1.0}


def test_has_masked():
    assert choicemap.has_masked(CHOICES)
    assert choicemap.has_masked(M)
    assert not choicemap.has_masked({"a": 1.0, "s": {"x": jnp.ones(2)}})
    assert not choicemap.has_masked({})
    assert not choicemap.has_masked(None)


def test_drop_masked_keeps_the_values_given_everywhere():
    assert choicemap.drop_masked(CHOICES) == {"a": 1.0, "s": {"x": 2.0, "t": {"u": 3.0}}, "b": 4.0}
    assert choicemap.drop_masked({"a": 1.0, "s": {"y": M}}) == {"a": 1.0}  # the emptied sub-map goes too
    assert choicemap.drop_masked({"s": {"y": M}}) == {}
    assert choicemap.drop_masked(M) is None
    assert choicemap.drop_masked({}) == {}
    unmasked = {"a": 1.0, "s": {"x": 2.0}}
    assert choicemap.drop_masked(unmasked) == unmasked


def test_drop_masked_is_not_unmask():
    unmasked = choicemap.unmask({"s": {"y": M}})
    assert unmasked["s"]["y"] is M.value  # unmask keeps the value, placeholders included, and drops the flags
    assert choicemap.drop_masked({"s": {"y": M}}) == {}  # drop_masked drops the leaf


@ppl.gen
def _step(x, _):
    x = dist.Normal(x, 1.0) @ "x"
    dist.Normal(x, 1.0) @ "y"
    return x


@ppl.gen
def _model(flags):
    sigma = dist.HalfNormal(1.0) @ "sigma"
    return ppl.scan(_step, in_axes=(0,))(sigma, flags) @ "steps"


def test_operations_on_a_traces_choices():
    choices = _model.simulate(jax.random.key(0), jnp.zeros(4)).choices
    assert list(choicemap.outside(choices, ("steps",))) == ["sigma"]
    assert choicemap.outside(choices, ("steps", "y"))["steps"].keys() == {"x"}
    hidden = choicemap.latents(choices, {"steps": {"y": jnp.zeros(4)}})
    assert [path for path, _ in choicemap.flatten(hidden)] == [("sigma",), ("steps", "x")]
    assert hidden["steps"]["x"] is choices["steps"]["x"]
    observed = {"steps": {"y": ppl.choicemap.masked(jnp.zeros(4), jnp.arange(4) < 2)}}
    assert choicemap.has_masked(observed) and not choicemap.has_masked(choices)
    assert [p for p, _ in choicemap.flatten(choicemap.latents(choices, choicemap.drop_masked(observed)))] == [
        ("sigma",), ("steps", "x"), ("steps", "y"),
    ]

