"""A language model's tokenizer, built with the `tokenizers` library from the model file's own metadata.

For a GGUF file: the byte-level BPE vocabulary and merges (`tokenizer.ggml.*`), the control
tokens as special tokens, and the chat template (a Jinja template, rendered with jinja2 as
transformers does). For a safetensors directory: its `tokenizer.json` and `tokenizer_config.json`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Tokenizer"]

_CONTROL = 3  # llama.cpp's token type for control (special) tokens


class Tokenizer:
    """Text to token ids and back, with special tokens and the chat template."""

    def __init__(self, backend, bos_id: int | None, eos_id: int, chat_template: str | None):
        self.backend, self.bos_id, self.eos_id, self.chat_template = backend, bos_id, eos_id, chat_template

    @classmethod
    def from_metadata(cls, meta: dict) -> Tokenizer:
        from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers
        from tokenizers import Tokenizer as Backend

        if "tokenizer_json" in meta:  # a Hugging Face directory
            backend = Backend.from_file(meta["tokenizer_json"])
            config = meta.get("tokenizer_config", {})
            eos = config.get("eos_token")
            eos = eos["content"] if isinstance(eos, dict) else eos
            return cls(backend, None, backend.token_to_id(eos) if eos else 0, config.get("chat_template"))
        if meta.get("tokenizer.ggml.model") != "gpt2":
            raise ValueError(f"tokenizer model {meta.get('tokenizer.ggml.model')!r} is not supported (byte-level "
                             "BPE, 'gpt2', is)")
        tokens = list(meta["tokenizer.ggml.tokens"])
        merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
        backend = Backend(models.BPE({t: i for i, t in enumerate(tokens)}, merges, fuse_unk=False))
        backend.normalizer = normalizers.Sequence([])
        splits = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        if meta.get("tokenizer.ggml.pre") in ("smollm", "qwen2", "llama-bpe"):  # digits split one by one
            splits.insert(0, pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"))
        backend.pre_tokenizer = pre_tokenizers.Sequence(splits)
        backend.decoder = decoders.ByteLevel()
        types = list(meta["tokenizer.ggml.token_type"])
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                    for t, kind in zip(tokens, types) if kind == _CONTROL])
        bos = meta.get("tokenizer.ggml.bos_token_id") if meta.get("tokenizer.ggml.add_bos_token") else None
        return cls(backend, None if bos is None else int(bos), int(meta["tokenizer.ggml.eos_token_id"]),
                   meta.get("tokenizer.chat_template"))

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (special tokens written in it are recognised); BOS first if the model uses one."""
        ids = self.backend.encode(text, add_special_tokens=False).ids
        return ids if self.bos_id is None else [self.bos_id, *ids]

    def decode(self, ids: Any, skip_special: bool = True) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def id_of(self, token: str) -> int:
        i = self.backend.token_to_id(token)
        if i is None:
            raise KeyError(f"{token!r} is not a token of this vocabulary")
        return i

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The prompt text for chat `messages` ([{"role": ..., "content": ...}]), by the model's own template."""
        if self.chat_template is None:
            raise ValueError("this model has no chat template; give the prompt as plain text")
        for m in messages:
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError(f"a chat message is a dict with 'role' and 'content', got {m!r}")
        import jinja2

        template = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(self.chat_template)
        return template.render(messages=messages, add_generation_prompt=add_generation_prompt)

    def prompt_ids(self, prompt: str | list[dict]) -> list[int]:
        """Token ids of a prompt given as plain text or as chat messages (the template is applied)."""
        if isinstance(prompt, str):
            return self.encode(prompt)
        return self.encode(self.apply_chat_template(list(prompt)))
