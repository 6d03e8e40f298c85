"""Import time: `import ppl`, `import inference` and the inference subpackages, each in a fresh interpreter.

    python benchmarks/bench_import.py [--repeats 7]

Each statement runs in a new `python -c` process, the statements taking turns, and each figure is the median
wall time over `--repeats` processes. `import jax` (which `ppl` cannot do without) is timed the same way, and
each line also prints its time beyond it: what this project adds (goal <= 0.5 s for `import ppl` and
`import inference`). The interpreter's own start-up is the `pass` line.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np

STATEMENTS = {
    "python": "pass",
    "jax": "import jax, jax.numpy",
    "ppl": "import ppl",
    "inference": "import inference",
    "inference.smc": "from inference import smc",
    "inference.mcmc": "from inference import mcmc",
    "inference.vi": "from inference import vi",
    "inference.scaling": "from inference import scaling",
}


def seconds(statement: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    times = {name: [] for name in STATEMENTS}
    for _ in range(args.repeats):
        for name, statement in STATEMENTS.items():
            times[name].append(seconds(statement))
    med = {name: float(np.median(t)) for name, t in times.items()}
    print(f"median wall seconds of a fresh `python -c` over {args.repeats} processes (Python {sys.version.split()[0]})")
    print(f"{'import':<20}{'seconds':>9}{'beyond python':>15}{'beyond jax':>12}")
    for name, t in med.items():
        beyond_jax = "" if name in ("python", "jax") else f"{t - med['jax']:>12.2f}"
        print(f"{name:<20}{t:>9.2f}{t - med['python']:>15.2f}{beyond_jax}")


if __name__ == "__main__":
    main()
