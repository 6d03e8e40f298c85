"""Models and exact answers shared by the tests and the benchmarks.

- `testbed.oracles`: exact reference algorithms in plain numpy (Kalman filter, RTS smoother, HMM forward-backward).
- `testbed.lgssm`: the oracles' scalar linear-Gaussian state-space model written with `ppl`.
- `testbed.non_markov`: a running sum and a toy language model, whose carries hold the past, with exact posteriors.
- `testbed.posteriordb`: the posteriordb reference posteriors written with `ppl`.

A package of its own (installed with `ppl` and `inference`, see pyproject.toml) so that both import it by name.
"""
