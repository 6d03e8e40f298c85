"""MCMC on traces: kernels on selections, many-chain runs, NUTS with warm-up, diagnostics."""

from . import kernels
from .kernels import Info, Kernel
from .nuts import nuts
from .result import MCMCResult
from .run import run

__all__ = ["Info", "Kernel", "MCMCResult", "kernels", "nuts", "run"]
