"""The choice-map operations of `ppl.choicemap`: exact results on nested maps, `Masked` leaves and empty maps."""

import jax
import jax.numpy as jnp
import pytest

import ppl
from ppl import choicemap, dist
from ppl.errors import ModelError

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



def test_normalize_nests_tuple_keys_and_merges_them_with_nested_ones():
    assert choicemap.normalize(None) == {}
    assert choicemap.normalize(5.0) == 5.0  # a bare value is returned as it is
    assert choicemap.normalize({("a", "b"): 1.0, "c": 2.0}) == {"a": {"b": 1.0}, "c": 2.0}
    assert choicemap.normalize({("a", "b"): 1.0, "a": {"c": 2.0}}) == {"a": {"b": 1.0, "c": 2.0}}
    assert choicemap.normalize({"a": {("b", "c"): 1.0}}) == {"a": {"b": {"c": 1.0}}}  # nested maps too
    assert choicemap.normalize({("a",): M}) == {"a": M}


def test_normalize_error_names_the_address_that_holds_a_value_and_sub_addresses():
    with pytest.raises(ModelError, match=r"both a value and sub-addresses at \('a',\)"):
        choicemap.normalize({"a": 1.0, ("a", "b"): 2.0})


def test_normalize_rejects_the_empty_tuple_key():
    with pytest.raises(ModelError, match="a choice map key is the empty tuple"):
        choicemap.normalize({(): 1.0})


def test_merge_joins_nested_maps():
    assert choicemap.merge({"a": 1.0, "s": {"x": 2.0}}, {"s": {"y": M}, "b": 4.0}) == {
        "a": 1.0, "s": {"x": 2.0, "y": M}, "b": 4.0,
    }
    assert choicemap.merge({("s", "x"): 2.0}, {"s": {"t": {"u": 3.0}}}) == {"s": {"x": 2.0, "t": {"u": 3.0}}}
    first = {"a": 1.0}
    merged = choicemap.merge(first, {"b": 2.0})
    assert merged == {"a": 1.0, "b": 2.0} and first == {"a": 1.0}  # the input is not changed


def test_merge_with_empty_maps():
    assert choicemap.merge({}, CHOICES) == CHOICES
    assert choicemap.merge(CHOICES, None) == CHOICES
    assert choicemap.merge(None, None) == {}
    assert choicemap.merge({"a": 1.0}, {"a": {}}) == {"a": 1.0}  # an empty sub-map gives no value


def test_merge_rejects_an_address_given_twice():
    # the error names the address given twice
    with pytest.raises(ModelError, match="two choice maps both give a value at the same address") as info:
        choicemap.merge({"a": 1.0, "s": {"x": 2.0}}, {"s": {"x": 3.0}})
    assert info.value.address == ("s", "x")
    assert "at address 's/x'" in str(info.value)
    with pytest.raises(ModelError, match="give each address once"):
        choicemap.merge({"a": 1.0}, {"a": {"b": 2.0}})  # a value and a sub-map at one address


def test_subconstraint_is_the_part_at_a_path_or_none():
    assert choicemap.subconstraint(CHOICES, ("s",)) is CHOICES["s"]
    assert choicemap.subconstraint(CHOICES, ("s", "t", "u")) == 3.0
    assert choicemap.subconstraint(CHOICES, ("s", "y")) is M
    assert choicemap.subconstraint(CHOICES, ()) is CHOICES
    assert choicemap.subconstraint(CHOICES, ("missing",)) is None
    assert choicemap.subconstraint(CHOICES, ("a", "below")) is None  # a value has no sub-addresses
    assert choicemap.subconstraint({"s": {}}, ("s",)) is None  # an empty sub-map is nothing
    assert choicemap.subconstraint({}, ()) is None
    assert choicemap.subconstraint(None, ("s",)) is None


def test_nest_turns_paths_into_nested_dicts():
    assert choicemap.nest({("a", "b"): 1.0, ("a", "c"): 2.0, ("d",): 3.0}) == {"a": {"b": 1.0, "c": 2.0}, "d": 3.0}
    assert choicemap.nest({}) == {}
    assert choicemap.nest(dict(choicemap.flatten(CHOICES))) == CHOICES  # the inverse of flatten


def test_index_takes_one_element_of_every_leaf_and_keeps_masked_flags():
    batched = {"x": jnp.array([1.0, 2.0, 3.0]), "s": {"y": ppl.Masked(jnp.array([4.0, 5.0, 6.0]),
                                                                       jnp.array([True, False, True]))}}
    one = choicemap.index(batched, 1)
    assert float(one["x"]) == 2.0
    assert isinstance(one["s"]["y"], ppl.Masked)
    assert float(one["s"]["y"].value) == 5.0 and not bool(one["s"]["y"].valid)
    last = choicemap.index(batched, -1)
    assert float(last["x"]) == 3.0 and bool(last["s"]["y"].valid)
    sliced = choicemap.index(batched, slice(0, 2))
    assert sliced["x"].tolist() == [1.0, 2.0] and sliced["s"]["y"].valid.tolist() == [True, False]


def test_unmask_keeps_values_and_drops_flags():
    assert choicemap.unmask({"a": 1.0, "s": {"y": M}}) == {"a": 1.0, "s": {"y": M.value}}
    assert choicemap.unmask(M) is M.value
    assert choicemap.unmask({}) == {}


def test_check_all_visited_passes_visited_addresses_and_those_under_a_visited_callee():
    choicemap.check_all_visited({"a": 1.0, "s": {"x": 2.0}}, {("a",), ("s", "x")})
    choicemap.check_all_visited({"s": {"deep": {"er": 1.0}}}, {("s",)})  # the callee at "s" checks the rest
    choicemap.check_all_visited({}, {("a",)})
    choicemap.check_all_visited(None, set())
    choicemap.check_all_visited(5.0, set())  # a bare value is not checked


def test_check_all_visited_error_names_the_unvisited_address():
    with pytest.raises(ModelError) as info:
        choicemap.check_all_visited({"a": 1.0, "s": {"z": 1.0}}, {("a",), ("s", "x")})
    assert info.value.address == ("s", "z")
    assert str(info.value) == (
        "at address 's/z': a constraint is given at an address the model never visits; remove it or fix its name "
        "(addresses visited here: 'a', 's/x')"
    )


def test_check_all_visited_error_names_a_value_given_above_the_visited_addresses():
    with pytest.raises(ModelError, match="^at address 's': a value is given at an address") as info:
        choicemap.check_all_visited({"s": 1.0}, {("s", "x")}, what="value")
    assert info.value.address == ("s",)


def test_check_all_visited_error_lists_at_most_twelve_visited_addresses():
    visited = {(f"v{i:02d}",) for i in range(13)}
    with pytest.raises(ModelError, match=r"'v10', 'v11' \.\.\.\)$") as info:
        choicemap.check_all_visited({"w": 1.0}, visited)
    assert info.value.address == ("w",)
    assert "'v12'" not in str(info.value)


def test_check_selected_passes_addresses_and_their_prefixes():
    choicemap.check_selected({("a",), ("s",), ("s", "t"), ("s", "t", "u"), ()}, CHOICES)
    choicemap.check_selected(set(), {})


def test_check_selected_error_names_the_first_missing_address():
    with pytest.raises(ModelError) as info:
        choicemap.check_selected({("s", "z"), ("zz",)}, {"a": 1.0, "s": {"x": 1.0}})
    assert info.value.address == ("s", "z")  # sorted by str: ('s', 'z') before ('zz',)
    assert str(info.value) == (
        "at address 's/z': the selection names an address the model never visits, so it selects nothing there; "
        "fix its name (addresses visited here: 'a', 's/x')"
    )


def test_check_selected_error_below_a_value():
    with pytest.raises(ModelError, match="^at address 'a/below': the selection names an address") as info:
        choicemap.check_selected({("a", "below")}, {"a": 1.0})
    assert info.value.address == ("a", "below")
