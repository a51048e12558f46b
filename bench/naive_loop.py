"""The baseline: what one writes first with Hugging Face, run as its own process.

Whole model, one prompt per forward, `output_hidden_states=True`, the last token's row of
`hidden_states[layer + 1]`; the asked-for neurons are written as JSON.

    python bench/naive_loop.py MODEL_DIR LAYER PROMPTS_FILE NEURONS OUT_JSON
"""

from __future__ import annotations

import json
import sys


def main(model_dir: str, layer: int, prompts_file: str, neurons: str, out: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with open(prompts_file, encoding="utf-8") as file:
        prompts = [line for line in file.read().split("\n") if line.strip()]
    ids = [int(n) for n in neurons.split(",")]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    rows = []
    with torch.inference_mode():
        for prompt in prompts:
            encoded = tokenizer(prompt, return_tensors="pt")
            hidden = model(**encoded, output_hidden_states=True).hidden_states[layer + 1]
            rows.append([float(hidden[0, -1, n]) for n in ids])
    with open(out, "w", encoding="utf-8") as file:
        json.dump({"prompts": prompts, "neurons": ids, "values": rows}, file)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
