"""MCMC on traces: kernels on selections, many-chain runs, NUTS with warm-up, diagnostics."""

from . import convergence, kernels
from .convergence import ConvergenceWarning
from .kernels import Info, Kernel
from .nuts import nuts
from .result import MCMCResult
from .run import run

__all__ = ["ConvergenceWarning", "Info", "Kernel", "MCMCResult", "convergence", "kernels", "nuts", "run"]
