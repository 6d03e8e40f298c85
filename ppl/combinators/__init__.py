"""Combinators: generative functions built from others, with structure the compiler sees."""

from .mix import mix
from .scan import Scan, ScanTrace, scan
from .switch import Switch, SwitchTrace, cond, switch
from .vmap import Vmap, VmapTrace, repeat, vmap

__all__ = ["Scan", "ScanTrace", "Switch", "SwitchTrace", "Vmap", "VmapTrace", "cond", "mix", "repeat", "scan", "switch", "vmap"]
