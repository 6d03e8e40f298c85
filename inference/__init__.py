"""Inference algorithms written against the generative function interface.

`inference.predictive(key, model, args, samples)` draws prior and posterior predictive samples
(see `inference.predict`); the algorithms are the subpackages and modules (`inference.mcmc`,
`inference.smc`, `inference.vi`, ...).
"""


def __getattr__(name: str):
    if name == "predictive":  # imported on first use: `import inference` stays free of JAX
        from .predict import predictive

        return predictive
    raise AttributeError(f"module 'inference' has no attribute {name!r}")
