"""Tiny seeded random models of real architectures, saved like Hub checkpoints.

Each is a `transformers` config with small sizes, random weights from a fixed seed, and a
character-level tokenizer built here, written with `save_pretrained` so that lazarus loads it
through the same `from_pretrained` path as a model from the Hub.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    Gemma2Config,
    GPT2Config,
    GptOssConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
CHARACTERS = sorted(set(string.printable) - set("\x0b\x0c"))
VOCAB_SIZE = len(SPECIALS) + len(CHARACTERS)
HIDDEN = 64
LAYERS = 4


def build_tokenizer(add_bos: bool) -> PreTrainedTokenizerFast:
    """One token per character; optionally a BOS token first, as Llama-style tokenizers do."""
    vocab = {token: i for i, token in enumerate(SPECIALS + CHARACTERS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    if add_bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
    )


def _common() -> dict:
    return {"vocab_size": VOCAB_SIZE, "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}


def configs() -> dict:
    """One small config per architecture family the tool must support."""
    attention = {
        "hidden_size": HIDDEN,
        "intermediate_size": 128,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
    }
    return {
        "llama": LlamaConfig(**attention, **_common()),
        "qwen2": Qwen2Config(**attention, **_common()),
        "gemma2": Gemma2Config(**attention, head_dim=16, **_common()),
        "gpt2": GPT2Config(n_embd=HIDDEN, n_layer=LAYERS, n_head=4, n_positions=256, **_common()),
        "gpt_oss": GptOssConfig(
            **{**attention, "max_position_embeddings": 131072},  # YaRN expects a long context
            head_dim=16,
            num_local_experts=4,
            num_experts_per_tok=2,
            sliding_window=8,
            **_common(),
        ),
    }


ARCHITECTURES = tuple(configs())


def build(architecture: str, folder: Path, seed: int = 0) -> Path:
    """Save a seeded random model and its tokenizer to `folder`; return the folder."""
    from transformers import AutoModelForCausalLM

    config = configs()[architecture]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _spread_weights(model, seed)
    model.save_pretrained(folder)
    build_tokenizer(add_bos=architecture != "gpt2").save_pretrained(folder)
    return folder


def build_config(config: object, folder: Path, add_bos: bool, scale: float = 0.1,
                 seed: int = 0) -> Path:
    """`build` for any config (e.g. `tiny_configs.tiny_config(family)`), its weights of sd
    `scale`; return the folder."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _spread_weights(model, seed, scale)
    model.save_pretrained(folder)
    build_tokenizer(add_bos=add_bos).save_pretrained(folder)
    return folder


def _spread_weights(model: torch.nn.Module, seed: int, scale: float = 0.1) -> None:
    """HF's default init (std 0.02) makes tiny models nearly linear; wider weights exercise
    attention and the MLP non-linearity, so a capture bug cannot hide behind small values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            # norms keep their own init (GPT-2's ln_1, RWKV's ln1 and pre_ln, every *norm*)
            if "norm" not in name and "ln" not in name:
                noise = torch.randn(parameter.shape, generator=generator) * scale
                parameter.copy_(noise.to(parameter.dtype))


PLANTED_DIM = 17
PLANTED_A = "abcdefgh"  # class-A prompts end in one of these characters
PLANTED_B = "stuvwxyz"  # class-B prompts in one of these


def build_planted(folder: Path, seed: int = 0) -> Path:
    """A Llama whose residual stream carries a known feature: the embeddings of the characters in
    PLANTED_A hold +8 in dimension PLANTED_DIM, those in PLANTED_B hold -8, and every other weight
    is small and random, so the last token's class shows in that one dimension at every layer."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(configs()["llama"], dtype=torch.float32)
    tokenizer = build_tokenizer(add_bos=True)
    with torch.no_grad():
        embedding = model.get_input_embeddings().weight
        embedding.normal_(0.0, 0.5)
        for characters, value in ((PLANTED_A, 8.0), (PLANTED_B, -8.0)):
            for character in characters:
                embedding[tokenizer.convert_tokens_to_ids(character), PLANTED_DIM] = value
        embedding[:, PLANTED_DIM] *= torch.isin(
            torch.arange(embedding.shape[0]),
            torch.tensor(tokenizer.convert_tokens_to_ids(list(PLANTED_A + PLANTED_B))),
        ).float()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
