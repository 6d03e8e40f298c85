"""Choice maps are plain nested dicts; this module holds the operations on them.

A choice map maps address components (strings or ints) to either a value (an
array, possibly batched) or a nested choice map. Constraints given by users are
choice maps; so are `Trace.choices` and the discards returned by `update`.

A leaf may also be a `Masked` value: a value that is only present where its
flag is true. Traces of `ppl.cond`/`ppl.switch` use it for addresses that only
some branches visit, and a `Masked` constraint constrains only where its flag
is true.

The operations (docs/language.md has the same list):

- `split(choices, selection)`: `(selected, rest)`, inside and outside a selection.
- `latents(choices, observations)`: the choices at no address of `observations`.
- `outside(choices, path)`: all but the sub-map at `path`.
- `flatten(choices, prefix=())`: `[(path, value)]` for every value, in order.
- `has_masked(choices)`: whether some leaf is `Masked`.
- `drop_masked(choices)`: `choices` without its `Masked` leaves.
- `merge(first, second)`: both maps in one (an address in both is an error).
- `normalize(choices)`: nested dicts; `None` becomes `{}`, tuple keys nest.
- `nest(flat)`: `{path: value}` as nested dicts.
- `subconstraint(choices, path)`: the part at `path`, or `None`.
- `index(choices, i)`: element `i` of a batched map, `Masked` flags kept.
- `masked(value, flag)`: a `Masked` leaf with `flag` broadcast to `value`'s shape.
- `unmask(choices)`: each `Masked` leaf replaced by its value.
- `check_observations(choices)`: raise naming the address of a NaN value.
- `check_all_visited(choices, visited, what)`: raise naming an unvisited address.
- `check_selected(paths, choices)`: raise naming a selected path that is no address.
- `table(choices)`: the map shown as a table (text, and HTML in a notebook).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .errors import ModelError

if TYPE_CHECKING:
    from .selection import Selection

__all__ = [
    "Masked", "Unconstrained", "check_all_visited", "check_observations", "check_selected", "drop_masked", "flatten",
    "has_masked", "index", "latents", "masked", "merge", "nest", "normalize", "outside", "split", "subconstraint",
    "table", "unmask",
]


class Masked(eqx.Module):
    """A choice-map leaf that holds `value` only where `valid` is true."""

    value: Any
    valid: jax.Array

    def __repr__(self) -> str:
        return f"Masked(value={self.value!r}, valid={self.valid!r})"


class Unconstrained(eqx.Module):
    """A constraint leaf given on the unconstrained space of its address's support.

    A distribution constrained by `Unconstrained(u)` takes the value
    `x = biject_to(support)(u)` (numpyro's bijections) and counts the log
    Jacobian `log |dx/du|`, so `assess` and the `generate` weight are the density
    of `u`: what gradient-based MCMC and variational inference need.
    """

    value: Any

    def __repr__(self) -> str:
        return f"Unconstrained({self.value!r})"


def masked(value: Any, flag: Any) -> Masked:
    """`Masked(value, flag)` with `flag` broadcast to `value`'s shape, leading axes aligned.

    A flag per element of a batch then slices with the value through nested
    `ppl.vmap` and `ppl.scan` blocks.
    """
    value, flag = jnp.asarray(value), jnp.asarray(flag)
    flag = jnp.reshape(flag, flag.shape + (1,) * (value.ndim - flag.ndim))
    return Masked(value, jnp.broadcast_to(flag, value.shape))


def is_leaf(x: Any) -> bool:
    """True for a value at an address (anything but a dict)."""
    return not isinstance(x, dict)


def normalize(choices: Any) -> dict | Any:
    """Return `choices` as nested dicts: `None` becomes `{}`, tuple keys nest.

    `{("a", "b"): 1.0}` and `{"a": {"b": 1.0}}` are the same choice map.
    """
    if choices is None:
        return {}
    if not isinstance(choices, dict):
        return choices
    out: dict = {}
    for key, value in choices.items():
        path = key if isinstance(key, tuple) else (key,)
        if not path:
            raise ModelError("a choice map key is the empty tuple; use an address such as 'x' or ('a', 'x')")
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ModelError(f"choice map has both a value and sub-addresses at {path[:-1]!r}")
        value = normalize(value)
        if path[-1] in node and isinstance(node[path[-1]], dict) and isinstance(value, dict):
            node[path[-1]] = {**node[path[-1]], **value}
        else:
            node[path[-1]] = value
    return out


def nest(flat: dict) -> dict:
    """`{("a", "b"): v}` -> `{"a": {"b": v}}`: paths to nested dicts."""
    out: dict = {}
    for path, value in flat.items():
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value
    return out


def subconstraint(choices: Any, path: tuple) -> Any:
    """The part of a choice map at `path`, or `None` where nothing is there."""
    node = choices
    for k in path:
        if not isinstance(node, dict) or k not in node:
            return None
        node = node[k]
    if isinstance(node, dict) and not node:
        return None
    return node


def check_all_visited(choices: Any, visited: set[tuple], what: str = "constraint") -> None:
    """Raise if `choices` has an address that none of the `visited` paths reaches."""
    prefixes = {p[:i] for p in visited for i in range(len(p) + 1)}
    problem = f"a {what} is given at an address the model never visits; remove it or fix its name"

    def walk(node: Any, path: tuple) -> None:
        if path in visited:
            return  # the callee at this address validates the rest
        if not isinstance(node, dict):
            raise _unvisited(path, problem, visited)
        for k, sub in node.items():
            if path + (k,) not in prefixes:
                raise _unvisited(path + (k,), problem, visited)
            walk(sub, path + (k,))

    if isinstance(choices, dict):
        walk(choices, ())


def check_selected(paths: set[tuple], choices: Any) -> None:
    """Raise if one of `paths` (the addresses a selection names) is no address, nor a prefix of one, in `choices`."""
    leaves = set(leaf_paths(choices))
    prefixes = {p[:i] for p in leaves for i in range(len(p) + 1)}
    missing = sorted(paths - prefixes, key=str)
    if missing:
        raise _unvisited(missing[0], "the selection names an address the model never visits, so it selects "
                                     "nothing there; fix its name", leaves)


def _unvisited(path: tuple, problem: str, visited: set[tuple]) -> ModelError:
    known = sorted("/".join(map(str, p)) for p in visited if p)
    shown = ", ".join(repr(k) for k in known[:12]) + (" ..." if len(known) > 12 else "")
    return ModelError(f"{problem} (addresses visited here: {shown or 'none'})", path)


def check_observations(choices: Any) -> None:
    """Raise a `ModelError` naming the address if a concrete value in the choice map `choices` holds a NaN.

    A NaN observation makes every weight NaN or -inf without saying where it came from; a missing value is
    given as `ppl.Masked(value, mask)` instead, where a NaN under a false flag is allowed. Traced values (inside
    `jit`, `vmap` or `grad`) cannot be inspected and are skipped, so this costs nothing in compiled code.
    """

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, dict):
            for k, sub in node.items():
                walk(sub, path + (k if isinstance(k, tuple) else (k,)))
            return
        if isinstance(node, Masked):
            where = _nan_positions(node.value, node.valid)
        else:
            where = _nan_positions(node.value if isinstance(node, Unconstrained) else node, True)
        if where is not None and where.any():
            raise ModelError(_nan_message(where), path)

    walk(choices, ())


def _nan_positions(value: Any, present: Any) -> np.ndarray | None:
    """Where a concrete `value` is NaN and `present` (its Masked flag) is true; None where that cannot be known."""
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((value, present))):
        return None
    dtype = getattr(value, "dtype", None)
    if dtype is not None and not jnp.issubdtype(dtype, jnp.inexact):
        return None  # integers, booleans and keys hold no NaN
    value = np.asarray(value)
    if not np.issubdtype(value.dtype, np.inexact):
        return None
    present = np.asarray(present, bool)
    present = present.reshape(present.shape + (1,) * (value.ndim - present.ndim))  # leading axes aligned, as masked()
    return np.isnan(value) & present


def _nan_message(where: np.ndarray) -> str:
    fix = ("mark missing values with ppl.Masked(value, mask), mask False where a value is missing (its value is "
           "then ignored), or drop them")
    if where.ndim == 0:
        return f"the value given here is NaN; {fix}"
    first = tuple(int(i) for i in np.argwhere(where)[0])
    index = first[0] if len(first) == 1 else first
    return f"the value given here has {int(where.sum())} NaN(s) of {where.size}, the first at index {index}; {fix}"


def merge(first: Any, second: Any) -> Any:
    """Both choice maps in one (nested dicts merged; an address in both is an error)."""
    first, second = normalize(first), normalize(second)
    if _empty(first):
        return second
    if _empty(second):
        return first
    if not (isinstance(first, dict) and isinstance(second, dict)):
        raise ModelError("two choice maps both give a value at the same address; give each address once")
    out = dict(first)
    for k, v in second.items():
        try:
            out[k] = merge(out[k], v) if k in out else v
        except ModelError as error:
            raise error.at(k) from None
    return out


def _empty(choices: Any) -> bool:
    return choices is None or (isinstance(choices, dict) and not choices)


def index(choices: Any, i: Any) -> Any:
    """Element `i` of a batched choice map (from `ppl.vmap`, `ppl.scan` or a vmapped trace).

    Equivalent to `jax.tree.map(lambda x: x[i], choices)`; `Masked` leaves keep their flags.
    """
    return jax.tree.map(lambda x: x[i], choices)


def unmask(choices: Any) -> Any:
    """Replace each `Masked` leaf by its value (where its flag is false the value is a placeholder)."""
    return jax.tree.map(lambda x: x.value if isinstance(x, Masked) else x, choices, is_leaf=_is_masked)


def _is_masked(x: Any) -> bool:
    return isinstance(x, Masked)


def has_masked(choices: Any) -> bool:
    """Whether some leaf of `choices` is `Masked`: observed at some elements (or steps), latent at the others."""
    return any(map(_is_masked, jax.tree.leaves(choices, is_leaf=_is_masked)))


def drop_masked(choices: Any) -> Any:
    """`choices` without its `Masked` leaves: only the values given at every element (or step).

    Sub-maps left empty are dropped too; a bare `Masked` value gives `None` (nothing). Not to be confused with
    `unmask`, which keeps each `Masked` leaf's value (placeholders included) and drops only its flags.
    """
    if _is_masked(choices):
        return None
    if not isinstance(choices, dict):
        return choices
    kept = {k: drop_masked(v) for k, v in choices.items()}
    return {k: v for k, v in kept.items() if not _empty(v)}


def flatten(tree: Any, prefix: tuple = ()) -> list[tuple[tuple, Any]]:
    """`[(path, leaf)]` for every leaf of a nested dict, in order: `{"a": {"b": 1}}` gives `[(("a", "b"), 1)]`.

    Each path is `prefix` followed by the keys down to the leaf; a bare value gives `[(prefix, value)]` and an
    empty dict no pair. Tuple keys stay single components (`normalize` first to nest them).
    """
    if isinstance(tree, dict):
        return [item for k, v in tree.items() for item in flatten(v, (*prefix, k))]
    return [(prefix, tree)]


def split(choices: Any, selection: Selection) -> tuple[dict, dict]:
    """`(selected, rest)`: the values of a choice map inside and outside `selection`, each nested as in `choices`.

    A sub-map left empty on one side is left out of it; a `Masked` leaf is one value and goes wholly to one side.
    """
    selected, rest = {}, {}
    for k, v in normalize(choices).items():
        sub = selection.step(k)
        if isinstance(v, dict):
            s, r = split(v, sub)
            if s:
                selected[k] = s
            if r:
                rest[k] = r
        elif sub.selects_here():
            selected[k] = v
        else:
            rest[k] = v
    return selected, rest


def latents(choices: Any, observations: Any) -> Any:
    """The choices at no address of `observations` and under none: a trace's choices less the observed ones.

    A `Masked` observation counts as observed at every element; `latents(choices, drop_masked(observations))`
    keeps the addresses that are masked out somewhere.
    """
    from .selection import sel  # here, not at the top: ppl.selection imports this module

    return split(choices, ~sel.of(normalize(observations)))[0] if observations else choices


def outside(choices: Any, path: tuple) -> dict:
    """The choices that are not in the sub-map at `path`: `choices` with that part (and parents left empty) removed.

    `outside({"a": 1, "s": {"x": 2, "y": 3}}, ("s", "x"))` is `{"a": 1, "s": {"y": 3}}`; `path = ()` gives `{}`.
    """
    from .selection import sel  # here, not at the top: ppl.selection imports this module

    return split(choices, sel(*path))[1]


def leaf_paths(choices: Any, prefix: tuple = ()) -> list[tuple]:
    """The address of every value in a choice map (`[()]` for a bare value)."""
    return [path for path, _ in flatten(choices, prefix)]


def leaf_shape_dtype(x: Any) -> tuple[tuple, Any]:
    value = x.value if isinstance(x, Masked) else x
    arr = jnp.asarray(value) if not hasattr(value, "shape") else value
    return tuple(arr.shape), arr.dtype


def table(choices: Any, title: str = "choice map") -> Any:
    """The choice map as a table of addresses, shapes and values: its `repr`, and HTML in a notebook cell
    (a choice map is a plain dict, so it cannot show itself)."""
    from .display import ChoiceTable  # here: ppl.display reads choice maps with this module

    return ChoiceTable(normalize(choices), title)
