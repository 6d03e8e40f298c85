"""A process reward model that reads the language model's own hidden state.

    prm = ProcessRewardModel.load()                  # the head shipped for the embedded SmolLM2-135M
    prm(state_before, state_after)                   # log V(prefix), a potential for reward="twist"
    Reasoner(lm, reward="prm")                       # the same, loaded for you

V(prefix) estimates the probability that a trajectory continued from the prefix ends with the right
answer. It is a small head (an MLP, or a linear probe when `depth=0`) on the final-layer hidden state at
the end of the prefix (`LMState.hidden`), standardised by the training features' mean and scale, so
scoring a step costs no forward pass of the language model. `train_prm` fits it on the model's own
rollouts; `save` and `load` keep it as a safetensors file with its configuration and training record.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["DEFAULT_PATH", "ProcessRewardModel"]

DEFAULT_PATH = pathlib.Path(__file__).resolve().parent / "prm_smollm2.safetensors"
"""The head trained on SmolLM2-135M-Instruct's reasoning (docs/scaling.md has its training record)."""


class ProcessRewardModel(eqx.Module):
    """log V(prefix) = log sigmoid(MLP((hidden − mean) / scale)), a potential `(before, after) -> log r`."""

    mean: jax.Array
    """(d,) the training features' mean."""
    scale: jax.Array
    """(d,) the training features' standard deviation."""
    layers: list[eqx.nn.Linear]
    """`depth` hidden layers of `width` units (GELU), then one linear unit: the logit of V."""
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    threshold: float = eqx.field(static=True, default=0.5)
    """V at or above which a finished trajectory counts as accepted (for false-positive rates)."""

    @classmethod
    def init(cls, key: jax.Array, features: np.ndarray, width: int = 64, depth: int = 1) -> ProcessRewardModel:
        """A fresh head for features like `features` (n, d), whose mean and scale it standardises by."""
        features = np.asarray(features, np.float32)
        if features.ndim != 2 or len(features) < 2:
            raise ValueError(f"features must be (n, d) with n >= 2, got shape {features.shape}")
        mean, scale = features.mean(0), features.std(0) + 1e-3
        sizes = [features.shape[1]] + [width] * depth + ["scalar"]
        layers = [eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes, sizes[1:], jax.random.split(key, depth + 1))]
        return cls(jnp.asarray(mean), jnp.asarray(scale), layers, width, depth)

    @property
    def hidden_size(self) -> int:
        return self.mean.shape[0]

    def logit(self, hidden: jax.Array) -> jax.Array:
        """The head's logit of V for one hidden state (d,)."""
        x = (hidden.astype(jnp.float32) - self.mean) / self.scale
        for layer in self.layers[:-1]:
            x = jax.nn.gelu(layer(x))
        return self.layers[-1](x)

    def log_value(self, hidden: jax.Array) -> jax.Array:
        """log V for one hidden state (d,)."""
        return jax.nn.log_sigmoid(self.logit(hidden))

    def __call__(self, before, after) -> jax.Array:
        return self.log_value(after.hidden)

    def check(self, lm) -> ProcessRewardModel:
        """This head, after checking it reads hidden states of `lm`'s size."""
        d = lm.transformer.config.hidden
        if d != self.hidden_size:
            raise ValueError(f"this reward model reads hidden states of size {self.hidden_size}, but the language "
                             f"model's are {d}: train one for it with `python -m inference.scaling.train_prm`")
        return self

    def save(self, path: str | pathlib.Path, record: dict | None = None) -> None:
        """Write the head to a safetensors file, with its configuration and `record` (JSON) as metadata."""
        from safetensors.numpy import save_file

        tensors = {name: np.asarray(leaf) for name, leaf in _named_arrays(self)}
        config = {"hidden_size": self.hidden_size, "width": self.width, "depth": self.depth,
                  "threshold": self.threshold}
        save_file(tensors, str(path), metadata={"config": json.dumps(config), "record": json.dumps(record or {})})

    @classmethod
    def load(cls, path: str | pathlib.Path | None = None) -> ProcessRewardModel:
        """The head in a safetensors file written by `save` (default: the one shipped, `DEFAULT_PATH`)."""
        from safetensors import safe_open

        path = pathlib.Path(path or DEFAULT_PATH)
        if not path.is_file():
            raise FileNotFoundError(f"no reward model at {path}; train one with `python -m inference.scaling.train_prm "
                                    f"--out {path}`")
        with safe_open(str(path), "np") as f:
            config = json.loads(f.metadata()["config"])
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        d = config["hidden_size"]
        skeleton = cls.init(jax.random.key(0), np.zeros((2, d)), config["width"], config["depth"])
        names = [name for name, _ in _named_arrays(skeleton)]
        missing = sorted(set(names) - set(tensors))
        if missing:
            raise ValueError(f"{path} is not a reward model of this configuration {config}: it lacks {missing}")
        arrays, static = eqx.partition(skeleton, eqx.is_array)
        arrays = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(arrays), [jnp.asarray(tensors[n]) for n in names])
        return dataclasses.replace(eqx.combine(arrays, static), threshold=config["threshold"])

    @staticmethod
    def record(path: str | pathlib.Path | None = None) -> dict:
        """The training record stored with a saved head."""
        from safetensors import safe_open

        with safe_open(str(path or DEFAULT_PATH), "np") as f:
            return json.loads(f.metadata()["record"])


def _named_arrays(module: eqx.Module) -> list[tuple[str, jax.Array]]:
    """The module's arrays with their paths as names (".layers[0].weight"), in tree order."""
    arrays = eqx.filter(module, eqx.is_array)
    return [(jax.tree_util.keystr(p), leaf) for p, leaf in jax.tree_util.tree_leaves_with_path(arrays)]
