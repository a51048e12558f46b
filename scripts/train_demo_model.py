"""Train lazarus's built-in demo model: a small Llama-style LM that knows some arithmetic.

The model ships in ``src/lazarus/demo_model/`` so that a first ``lazarus introspect`` command
works offline. Everything it is made of is built here from a seed: the character-level
tokenizer, the training text (arithmetic problems with answers plus a little plain English)
and the weights. Rebuilding with the same seed, step count, thread count and torch version
gives bit-identical weights.

    python scripts/train_demo_model.py                    # full training, 8-11 min on 2 cores
    python scripts/train_demo_model.py --steps 20 --out /tmp/smoke

Data: every document is ``<s>TEXT</s>``; documents are packed into rows of ``--seq-len``
tokens, each row starting at a document boundary. Arithmetic problems come in three kinds:

    easy    one digit op one digit        2+3=5   7*8=56   3-7=-4
    medium  two digits op one digit       23+8=31 47*3=141
    hard    2-3 digits op 2-3 digits      47*47=2209 123+456=579 83-27=56

A fixed ~20% of problems (``is_held_out``: a hash of the problem text, independent of the
seed) never appear in training, so tests can measure whether the model learned arithmetic or
memorised it. Functions here are importable (tests put ``scripts/`` on ``sys.path``); torch
and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import random
import string
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "src" / "lazarus" / "demo_model"

# ---------------------------------------------------------------------------------------------
# Tokenizer: one token per character.

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]  # ids 0, 1, 2, 3
CHARACTERS = (
    string.digits + "+-*/=" + string.ascii_lowercase + string.ascii_uppercase + " .,:;?!'\"()\n"
)
MAX_LENGTH = 256


def build_tokenizer():
    """Character-level ``PreTrainedTokenizerFast``; encoding prepends ``<s>``.

    Every character of ``CHARACTERS`` is one token; any other character becomes ``<unk>``.
    Decoding concatenates the characters back.
    """
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + list(CHARACTERS))}
    # A BPE model without merges splits its input into characters and maps each one through
    # the vocabulary (unknown ones to <unk>); no pre-tokenizer, so spaces are tokens too.
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    tok.add_special_tokens(SPECIAL_TOKENS)
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A {BOS} $B",
        special_tokens=[(BOS, vocab[BOS])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=MAX_LENGTH,
    )


# ---------------------------------------------------------------------------------------------
# Training text.

OPS = "+-*"


def problem(a: int, op: str, b: int) -> str:
    """The prompt for one problem: ``"47*47="``."""
    return f"{a}{op}{b}="


def answer(a: int, op: str, b: int) -> str:
    """The answer text that follows the prompt: ``"2209"``."""
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    return str(value)


def is_held_out(prompt: str) -> bool:
    """True for the fixed ~20% of problems that training never shows (same for every seed)."""
    return hashlib.sha256(prompt.encode()).digest()[0] < 52  # 52/256 = 20.3%


def easy_problems() -> list[tuple[int, str, int]]:
    """All 300 one-digit problems, ``(a, op, b)`` for a, b in 0..9 and op in ``+-*``."""
    return [(a, op, b) for op in OPS for a in range(10) for b in range(10)]


def held_out_easy() -> list[tuple[str, str]]:
    """The held-out one-digit problems as ``(prompt, answer)`` pairs (67 of the 300)."""
    return [(problem(*p), answer(*p)) for p in easy_problems() if is_held_out(problem(*p))]


def sample_easy(rng: random.Random) -> tuple[int, str, int]:
    return rng.randrange(10), rng.choice(OPS), rng.randrange(10)


def sample_medium(rng: random.Random) -> tuple[int, str, int]:
    a, b = rng.randrange(10, 100), rng.randrange(10)
    return (a, rng.choice(OPS), b) if rng.random() < 0.8 else (b, rng.choice("+*"), a)


def sample_hard(rng: random.Random) -> tuple[int, str, int]:
    kind = rng.random()
    if kind < 0.45:  # the classic hard case
        return rng.randrange(10, 100), "*", rng.randrange(10, 100)
    if kind < 0.65:
        return rng.randrange(10, 100), "+", rng.randrange(10, 100)
    if kind < 0.85:
        return rng.randrange(100, 1000), "+", rng.randrange(100, 1000)
    return rng.randrange(10, 100), "-", rng.randrange(10, 100)


_NAMES = ["Ann", "Bob", "Carl", "Dana", "Eve", "Finn", "Gus", "Hana", "Ivy", "Jack", "Kim", "Leo"]
_NOUNS = [
    "cat", "dog", "bird", "fish", "tree", "house", "car", "book", "river", "cloud", "apple",
    "door", "ship", "horse", "garden", "lamp", "road", "stone", "hat", "child",
]  # fmt: skip
_ADJECTIVES = [
    "big", "small", "red", "blue", "old", "new", "happy", "quiet", "green", "tall", "warm",
    "dark",
]  # fmt: skip
_VERBS = ["sees", "likes", "finds", "follows", "wants", "keeps", "paints", "hears"]
_PAST = ["saw", "liked", "found", "followed", "wanted", "kept", "painted", "heard"]
_PLACES = ["in the garden", "by the river", "on the road", "near the house", "under the tree"]
_FACTS = [
    "The sky is blue.", "Snow is white.", "Grass is green.", "Fire is hot.", "Ice is cold.",
    "The sun rises in the east.", "A week has seven days.", "A year has twelve months.",
    "Cats like fish.", "Birds can fly.", "Fish live in water.", "The moon is bright at night.",
    "The capital of France is Paris.", "The capital of Italy is Rome.",
    "The capital of Spain is Madrid.", "The capital of Japan is Tokyo.",
    "The capital of Germany is Berlin.", "The capital of Egypt is Cairo.",
]  # fmt: skip
_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def sample_english(rng: random.Random) -> str:
    """One short plain-English sentence from a small grammar, or a simple fact."""
    kind = rng.randrange(7)
    name, noun, other = rng.choice(_NAMES), rng.choice(_NOUNS), rng.choice(_NOUNS)
    adj = rng.choice(_ADJECTIVES)
    if kind == 0:
        return f"The {adj} {noun} {rng.choice(_VERBS)} the {other}."
    if kind == 1:
        return f"{name} {rng.choice(_PAST)} a {adj} {noun} {rng.choice(_PLACES)}."
    if kind == 2:
        return f"Where is the {adj} {noun}?"
    if kind == 3:
        n = rng.randrange(2, 10)
        return f"{name} has {_NUMBER_WORDS[n]} {noun}s."
    if kind == 4:
        return f"{name} and {rng.choice(_NAMES)} walk {rng.choice(_PLACES)}."
    if kind == 5:
        return f"It is a {adj} day, said {name}."
    return rng.choice(_FACTS)


# Medium problems carry the one-digit facts in their units column ("24+7=31" holds 4+7), at the
# same distance from "=" as in "4+7="; a large share of them helped held-out easy accuracy most.
MIX = {"easy": 0.30, "medium": 0.45, "hard": 0.17, "english": 0.08}


def sample_document(rng: random.Random) -> str:
    """One training document: a problem with its answer (never a held-out one), or English."""
    r = rng.random()
    if r >= MIX["easy"] + MIX["medium"] + MIX["hard"]:
        return sample_english(rng)
    sampler = (
        sample_easy if r < MIX["easy"]
        else sample_medium if r < MIX["easy"] + MIX["medium"]
        else sample_hard
    )  # fmt: skip
    while True:
        p = sampler(rng)
        if not is_held_out(problem(*p)):
            return problem(*p) + answer(*p)


def make_batch(rng: random.Random, vocab: dict[str, int], batch: int, seq_len: int):
    """``(input_ids, labels)``, both [batch, seq_len]: packed ``<s>doc</s>`` documents.

    Each row starts at a ``<s>``. The loss covers whole English sentences but only the answer
    (and ``</s>``) of a problem: its operands are random, so predicting them teaches nothing.
    """
    import torch

    ignore = -100  # the label value the Hugging Face loss skips
    rows, labels = [], []
    for _ in range(batch):
        row: list[int] = []
        label: list[int] = []
        while len(row) < seq_len:
            doc = sample_document(rng)
            ids = [vocab[BOS], *(vocab[c] for c in doc), vocab[EOS]]
            graded = len(ids) - len(doc.partition("=")[2]) - 1 if "=" in doc else 1
            row += ids
            label += [ignore] * graded + ids[graded:]
        rows.append(row[:seq_len])
        labels.append(label[:seq_len])
    return torch.tensor(rows, dtype=torch.long), torch.tensor(labels, dtype=torch.long)


# ---------------------------------------------------------------------------------------------
# Model and training.


@dataclass(frozen=True)
class Settings:
    """Everything that determines the trained weights (besides the torch version)."""

    seed: int = 0
    steps: int = 1500  # full training: 450-630 s on 2 CPU cores
    batch: int = 64  # rows per step
    seq_len: int = 48  # tokens per row (packed documents)
    lr: float = 3e-3  # peak learning rate (AdamW)
    warmup: int = 100  # linear warmup steps, then cosine decay to lr / 10
    weight_decay: float = 0.3
    hidden: int = 192  # residual stream width ("neurons" per layer)
    intermediate: int = 512  # MLP width
    layers: int = 4
    heads: int = 4
    threads: int = 2  # torch intra-op threads; part of what makes the result reproducible


def model_config(settings: Settings, tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden,
        intermediate_size=settings.intermediate,
        num_hidden_layers=settings.layers,
        num_attention_heads=settings.heads,
        num_key_value_heads=settings.heads,
        max_position_embeddings=MAX_LENGTH,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def learning_rate(settings: Settings, step: int) -> float:
    if step < settings.warmup:
        return settings.lr * (step + 1) / settings.warmup
    progress = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
    return settings.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(settings: Settings, tokenizer, log=print, eval_every: int = 0):
    """Train from scratch; returns ``(model, losses)``. Deterministic for fixed settings.

    ``eval_every`` > 0 logs held-out easy accuracy every that many steps (no effect on the
    weights: evaluation uses no randomness and no gradients).
    """
    import torch

    saved = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(settings.threads)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(settings, tokenizer, log, eval_every)
    finally:  # leave torch's global settings as they were (this also runs inside tests)
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])


def _train(settings: Settings, tokenizer, log, eval_every: int):
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    vocab = tokenizer.get_vocab()

    model = LlamaForCausalLM(model_config(settings, tokenizer))
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": settings.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=settings.lr,
        betas=(0.9, 0.98),
    )
    losses = []
    start = time.time()
    for step in range(settings.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(settings, step)
        ids, labels = make_batch(rng, vocab, settings.batch, settings.seq_len)
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % 100 == 0 or step + 1 == settings.steps:
            recent = sum(losses[-100:]) / len(losses[-100:])
            log(
                f"step {step + 1:5d}/{settings.steps}  loss {recent:.4f}  "
                f"lr {learning_rate(settings, step):.2e}  {time.time() - start:6.1f}s"
            )
        if eval_every and (step + 1) % eval_every == 0:
            model.eval()
            log(
                f"step {step + 1:5d}  held-out easy accuracy "
                f"{accuracy(model, tokenizer, held_out_easy()):.1%}"
            )
            model.train()
    model.eval()
    return model, losses


def greedy_complete(model, tokenizer, prompts: list[str], max_new_tokens: int = 8) -> list[str]:
    """Greedy continuation of each prompt up to ``</s>`` (prompts batched by length)."""
    import torch

    by_length: dict[int, list[int]] = {}
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    for i, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(i)
    out = [""] * len(prompts)
    with torch.no_grad():
        for indices in by_length.values():
            ids = torch.tensor([encoded[i] for i in indices])
            new = []
            for _ in range(max_new_tokens):
                nxt = model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)
                new.append(nxt)
                ids = torch.cat([ids, nxt], dim=1)
            new_ids = torch.cat(new, dim=1).tolist()
            for i, row in zip(indices, new_ids, strict=True):
                if tokenizer.eos_token_id in row:
                    row = row[: row.index(tokenizer.eos_token_id)]
                out[i] = tokenizer.decode(row, skip_special_tokens=True)
    return out


def accuracy(model, tokenizer, items: list[tuple[str, str]]) -> float:
    got = greedy_complete(model, tokenizer, [p for p, _ in items])
    return sum(g == a for g, (_, a) in zip(got, items, strict=True)) / len(items)


def evaluation_sets() -> dict[str, list[tuple[str, str]]]:
    """Held-out problem sets for the model card (fixed, independent of the training seed)."""
    rng = random.Random(12345)

    def held_out(sampler, n):
        items: list[tuple[str, str]] = []
        while len(items) < n:
            p = sampler(rng)
            if is_held_out(problem(*p)) and (problem(*p), answer(*p)) not in items:
                items.append((problem(*p), answer(*p)))
        return items

    return {
        "easy": held_out_easy(),
        "medium": held_out(sample_medium, 200),
        "hard multiplication": held_out(
            lambda r: (r.randrange(10, 100), "*", r.randrange(10, 100)), 200
        ),
        "hard addition": held_out(
            lambda r: (
                (r.randrange(10, 100), "+", r.randrange(10, 100))
                if r.random() < 0.5
                else (r.randrange(100, 1000), "+", r.randrange(100, 1000))
            ),
            200,
        ),
    }


def evaluate(model, tokenizer) -> dict[str, dict]:
    """Greedy answers on each held-out set: exact-match rate, and how often the number of
    digits and the last digit are right."""
    results = {}
    for name, items in evaluation_sets().items():
        got = greedy_complete(model, tokenizer, [p for p, _ in items])
        pairs = list(zip(got, (a for _, a in items), strict=True))
        results[name] = {
            "problems": len(items),
            "exact": sum(g == a for g, a in pairs) / len(items),
            "length": sum(len(g) == len(a) for g, a in pairs) / len(items),
            "last_digit": sum(g[-1:] == a[-1:] for g, a in pairs) / len(items),
            "examples": [p + g for (p, _), g in zip(items[:4], got[:4], strict=True)],
        }
    return results


# ---------------------------------------------------------------------------------------------
# Saving.


def save(model, tokenizer, out: Path, meta: dict) -> None:
    """Weights as float16 safetensors, tokenizer, ``training.json`` and a model card."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.to(torch.float16).save_pretrained(out, safe_serialization=True)
    model.to(torch.float32)
    # The weights are stored as float16 to keep the folder small, but the model was trained
    # and is meant to run in float32 (float16 matmuls on CPU are slow and lossy): the config's
    # dtype says float32, so a plain from_pretrained upcasts on load.
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config["dtype"] = "float32"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out / "model.safetensors").chmod(0o644)
    tokenizer.save_pretrained(out)
    # transformers 5 writes its own class name, which transformers 4 cannot resolve; the
    # name both versions know loads the same tokenizer.json.
    tokenizer_config_path = out / "tokenizer_config.json"
    tokenizer_config = json.loads(tokenizer_config_path.read_text())
    tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    tokenizer_config_path.write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    (out / "training.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "README.md").write_text(model_card(meta))


def rebuild_command(settings: dict) -> str:
    """The command line that rebuilds a model with these settings."""
    args = [f"--seed {settings['seed']}", f"--steps {settings['steps']}"]
    for key, default in asdict(Settings()).items():
        if key not in ("seed", "steps") and settings[key] != default:
            args.append(f"--{key.replace('_', '-')} {settings[key]}")
    return "python scripts/train_demo_model.py " + " ".join(args)


def model_card(meta: dict) -> str:
    s = meta["settings"]
    if meta["held_out_accuracy"]:
        rows = "\n".join(
            f"| {name} | {r['problems']} | {r['exact']:.1%} | {r['length']:.1%} "
            f"| {r['last_digit']:.1%} | `{'` `'.join(r['examples'])}` |"
            for name, r in meta["held_out_accuracy"].items()
        )
        results = (
            "| set | problems | exact | right length | right last digit | examples |\n"
            f"|---|---|---|---|---|---|\n{rows}\n\n"
            "The same architecture with random weights (same seed) gets "
            f"{meta['random_weights_easy_accuracy']:.1%} of the easy ones right."
        )
    else:
        results = "Not evaluated (built with `--skip-eval`)."
    return f"""# lazarus demo model

A small Llama-style causal language model that ships inside lazarus (`lazarus:demo`), so that
`lazarus introspect` works offline on a fresh machine. It was trained by the project itself,
from seed {s["seed"]}, on arithmetic problems with their answers and a little plain English.
It is a toy for trying the tools, not a useful language model.

## Architecture
`LlamaForCausalLM`: {s["layers"]} decoder layers, hidden size {s["hidden"]} (the "neurons" of
each layer), MLP width {s["intermediate"]}, {s["heads"]} attention heads, RoPE, RMSNorm, tied
input/output embeddings, {meta["parameters"]:,} parameters. Weights are stored as float16
safetensors; `config.json` says float32, so `from_pretrained` upcasts them on load.
Tokenizer: one token per character ({meta["vocab_size"]} tokens: digits, `+-*/=`, letters,
space, punctuation, and `<pad>` `<s>` `</s>` `<unk>`); encoding prepends `<s>`. A problem is
prompted as `<s>47*47=` and answered `2209</s>`.

## Data
Generated by `scripts/train_demo_model.py` from the seed: each document is `<s>TEXT</s>`,
packed into rows of {s["seq_len"]} tokens. Documents: {MIX["easy"]:.0%} easy problems (one digit
op one digit: `2+3=5`, `7*8=56`, `3-7=-4`), {MIX["medium"]:.0%} medium (two digits op one digit:
`47*3=141`, `23+8=31`), {MIX["hard"]:.0%} hard (two-by-two-digit multiplication `47*47=2209`,
two- and three-digit addition, two-digit subtraction), {MIX["english"]:.0%} short English
sentences and facts (`The capital of France is Paris.`). The loss covers whole sentences but
only the answers of problems. A fixed ~20% of all problems (those whose prompt text, e.g.
`"2+3="`, has a SHA-256 whose first byte is below 52) never appears in training.

## Training
{s["steps"]} steps of AdamW (peak lr {s["lr"]}, {s["warmup"]} warmup steps, cosine decay to a
tenth, weight decay {s["weight_decay"]}), batch {s["batch"]} x {s["seq_len"]} tokens, on CPU
with {s["threads"]} threads and `torch.use_deterministic_algorithms(True)`, in
{meta["train_seconds"]:.0f} s. Final training loss {meta["final_loss"]:.3f} (answer tokens and
English). torch {meta["torch"]}, transformers {meta["transformers"]}, Python {meta["python"]}.

## Greedy answers to problems never seen in training
{results}

## Rebuild
    {rebuild_command(meta["settings"])}

The result is bit-identical for the same seed, settings and torch version on the same kind of
CPU (here 1 and 2 threads gave identical weights too).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    for field, default in asdict(Settings()).items():  # one option per setting
        parser.add_argument(
            f"--{field.replace('_', '-')}", type=type(default), default=default,
            help=f"default: {default}",
        )  # fmt: skip
    parser.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="log held-out easy accuracy every N steps (does not change weights)",
    )
    parser.add_argument(
        "--skip-eval", action="store_true", help="do not score the result (quick smoke runs)"
    )
    args = parser.parse_args(argv)

    import tokenizers
    import torch
    import transformers

    settings = Settings(**{field: getattr(args, field) for field in asdict(Settings())})
    tokenizer = build_tokenizer()
    start = time.time()
    model, losses = train(settings, tokenizer, eval_every=args.eval_every)
    train_seconds = time.time() - start
    model.to(torch.float16).float()  # score the weights exactly as they will be stored
    scores = {} if args.skip_eval else evaluate(model, tokenizer)
    for name, r in scores.items():
        print(f"{name:20s} exact {r['exact']:6.1%}  examples: {' '.join(r['examples'])}")
    random_easy = None
    if not args.skip_eval:  # the same architecture, untrained, as a baseline
        from transformers import LlamaForCausalLM

        torch.manual_seed(settings.seed)
        untrained = LlamaForCausalLM(model_config(settings, tokenizer)).eval()
        random_easy = accuracy(untrained, tokenizer, held_out_easy())
        print(f"{'easy, random weights':20s} exact {random_easy:6.1%}")
    meta = {
        "settings": asdict(settings),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "train_seconds": round(train_seconds, 1),
        "mix": MIX,
        "held_out_accuracy": scores,
        "random_weights_easy_accuracy": random_easy,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "python": platform.python_version(),
    }
    save(model, tokenizer, args.out, meta)
    print(f"saved to {args.out} in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
