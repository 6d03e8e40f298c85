"""Particles sharded across a one-axis mesh, and the decisions every device must share."""

from __future__ import annotations

from typing import Any

import jax

from .config import SMCConfig

__all__ = ["constrain", "replicated"]


def constrain(config: SMCConfig, tree: Any) -> Any:
    """Keep particle-axis arrays sharded across the mesh (when one is given)."""
    if config.mesh is None:
        return tree
    spec = jax.sharding.NamedSharding(config.mesh, jax.sharding.PartitionSpec(config.mesh.axis_names[0]))
    n = config.n_particles
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, spec) if x.ndim and x.shape[0] == n else x, tree)


def replicated(config: SMCConfig, x: jax.Array) -> jax.Array:
    """A full copy on every device: resampling decisions then match one device bit for bit."""
    if config.mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(config.mesh, jax.sharding.PartitionSpec()))
