"""The benchmark's model, tokenizer and prompts, all built locally from fixed seeds (no network).

The model is a Llama shaped like SmolLM2-135M (30 blocks, hidden 576, MLP 1536, 9 heads of 64,
3 key/value heads, vocabulary 49152, tied embeddings) with random weights, saved as float32
safetensors. The tokenizer is a byte-level BPE trained here on text like the prompts, so that
short prompts take a realistic handful of tokens (4 to 15).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

FULL = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
    "max_position_embeddings": 2048,
    "rope_theta": 100000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}
SMOKE = {**FULL, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 6,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 2048}

_NAMES = ["France", "Japan", "Peru", "Kenya", "Norway", "Egypt", "Chile", "India", "Spain",
          "Canada", "Brazil", "Italy", "Ghana", "Nepal", "Cuba", "Iran", "Mali", "Laos"]
_WORDS = ["river", "mountain", "theory", "engine", "garden", "protein", "market", "planet",
          "sonnet", "bridge", "vaccine", "algorithm", "glacier", "violin", "harbor", "neuron"]


def prompts(count: int, seed: int = 0) -> list[str]:
    """Short, varied prompts: arithmetic, facts, definitions and sentence starts."""
    rng = random.Random(seed)
    templates = [
        lambda: f"{rng.randint(1, 99)}+{rng.randint(1, 99)}=",
        lambda: f"{rng.randint(10, 99)}*{rng.randint(10, 99)}=",
        lambda: f"What is {rng.randint(2, 999)} minus {rng.randint(2, 99)}?",
        lambda: f"The capital of {rng.choice(_NAMES)} is",
        lambda: f"A {rng.choice(_WORDS)} is a kind of",
        lambda: f"Explain the {rng.choice(_WORDS)} to a child in one sentence:",
        lambda: f"{rng.choice(_NAMES)} and {rng.choice(_NAMES)} share a border near the",
        lambda: f"Q: How many legs does a {rng.choice(['cat', 'spider', 'bird', 'ant'])} have? A:",
    ]
    return [rng.choice(templates)() for _ in range(count)]


def build_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = prompts(20_000, seed=1) + [" ".join(_WORDS + _NAMES)] * 10
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>",
                            bos_token="<|endoftext|>").save_pretrained(folder)


def build_model(folder: Path, shape: dict, seed: int = 0) -> Path:
    """Save the model and tokenizer to `folder` unless a build of the same shape is there."""
    stamp = folder / "bench_shape.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == {**shape, "seed": seed}:
        return folder
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    folder.mkdir(parents=True, exist_ok=True)
    config = LlamaConfig(**shape, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # wider than HF's std 0.02, so the blocks do something non-trivial
        generator = torch.Generator().manual_seed(seed)
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    model.save_pretrained(folder)
    build_tokenizer(folder)
    stamp.write_text(json.dumps({**shape, "seed": seed}))
    return folder
