"""What an intervention does to the model's outputs: forwards and generation under `Edit`s.

Every forward goes through `trace.Trace` (the one hook owner) with the edits, and runs to the
LM head (no early stop). Two runners:
- `log_probs`: teacher forcing. Sequences are right-padded with an attention mask, as capture
  does, so each row computes exactly what it would alone; the log-softmax of the next-token
  distribution is returned from a given position to the end of each sequence.
- `generate`: greedy (or sampled, seeded) continuation with the KV cache on. Prompts are
  left-padded with an attention mask and explicit position ids (each row's tokens count from
  0), so the edits see every prompt token and then every new token as it is made. A model that
  hands back no cache to continue from (RWKV's state, RecurrentGemma's inside its layers) is
  fed the whole sequence at every step, one prompt at a time (RWKV reads no attention mask).
On these: an answer's log-probability under teacher forcing (the sum over its tokens of
log p(token | everything before it)), whether greedy decoding reproduces the answer's tokens,
and KL(baseline || edited) of the next-token distribution after a prompt, in nats.
Nothing here prints.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lazarus.engine.capture import context_length, pad_batch, pad_id_of, tokenize
from lazarus.engine.interventions import Edit
from lazarus.engine.loading import LoadedModel
from lazarus.engine.trace import Trace
from lazarus.errors import LazarusError, upstream
from lazarus.text import plural, shorten

BATCH = 16  # sequences per forward


def check_whole(loaded: LoadedModel) -> None:
    """Interventions are judged by the logits: the model must have all its blocks and its head."""
    if loaded.block_count is not None or loaded.model.get_output_embeddings() is None:
        raise ValueError("interventions need the whole model with its LM head "
                         "(load it with Model(..., whole=True))")


def _batches(lengths: Sequence[int]) -> list[list[int]]:
    """Indices in order of length, BATCH at a time, so that little padding is computed."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + BATCH] for i in range(0, len(order), BATCH)]


def _input_device(loaded: LoadedModel) -> Any:
    return loaded.model.get_input_embeddings().weight.device


def log_probs(loaded: LoadedModel, sequences: Sequence[Sequence[int]], starts: Sequence[int],
              edits: Sequence[Edit] = ()) -> list[np.ndarray]:
    """Per sequence, float64 [len - start + 1, vocab]: row j is log p(. | tokens < start + j),
    i.e. the distributions predicting tokens start.. and the one after the last token."""
    import torch

    check_whole(loaded)
    lengths = [len(s) for s in sequences]
    if any(not 1 <= start <= length for start, length in zip(starts, lengths, strict=True)):
        raise ValueError("each start must be within 1..len(sequence)")
    device = _input_device(loaded)
    pad = pad_id_of(loaded.tokenizer)
    results: list[Any] = [None] * len(sequences)
    with torch.inference_mode(), Trace(loaded, None, edits=edits) as trace:
        for batch in _batches(lengths):
            width = max(lengths[i] for i in batch)
            ids, mask = pad_batch([sequences[i] for i in batch], pad)
            trace.lengths = mask.sum(-1)
            trace.rows = torch.tensor(batch)
            trace.positions = torch.arange(width).expand(len(batch), width)
            with upstream(loaded.info.model_type, "the forward pass failed"):
                logits = loaded.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                      use_cache=False).logits  # [batch, tokens, vocab]
            for row, index in enumerate(batch):
                kept = logits[row, starts[index] - 1:lengths[index]].double()
                results[index] = torch.log_softmax(kept, dim=-1).cpu().numpy()
    return results


MAX_SEED = 2**63 - 1  # what every generator (torch's, numpy's) takes


def check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise LazarusError(f"--seed must be from 0 to {MAX_SEED} (got {seed})")


def check_room(loaded: LoadedModel, prompts: Sequence[Sequence[int]], new: int) -> None:
    """Refuse generating `new` tokens (--max-tokens) when the longest prompt with them is past
    the model's context."""
    limit = context_length(loaded.info.config)
    longest = max(len(ids) for ids in prompts)
    if limit is None or longest + new <= limit:
        return
    room = limit - longest
    raise LazarusError(f"the longest prompt ({plural(longest, 'token')}) with "
                       f"{plural(new, 'new token')} (--max-tokens) is "
                       f"{plural(longest + new, 'token')} but this model takes at most {limit} "
                       f"({f'give --max-tokens {room} or less' if room > 0 else 'shorten it'})")


def quoted(text: str, limit: int = 30) -> str:
    """`text` quoted for a message, cut to about `limit` characters."""
    return repr(shorten(text, limit))


def check_scored_room(loaded: LoadedModel, prompts: Sequence[Sequence[int]],
                      scored: Sequence[tuple[str, Sequence[int]]], paired: bool) -> None:
    """Refuse scoring text after a prompt past the model's context: `scored` is (what to call
    it, its ids), each after its own prompt (`paired`: answers) or after every prompt (steer's
    --tokens), so the message names the text that is too long, not --max-tokens."""
    limit = context_length(loaded.info.config)
    if limit is None or not prompts:
        return
    longest = max(range(len(prompts)), key=lambda i: len(prompts[i]))
    pairs = enumerate(scored) if paired else ((longest, each) for each in scored)
    for index, (name, ids) in pairs:
        size, total = len(prompts[index]), len(prompts[index]) + len(ids)
        if total > limit:
            room = limit - size
            fix = (f"shorten it to {plural(room, 'token')} or less, or shorten the prompt"
                   if room > 0 else "shorten the prompt: it leaves no room")
            raise LazarusError(f"prompt {index + 1} ({plural(size, 'token')}) followed by {name} "
                               f"({plural(len(ids), 'token')}) is {plural(total, 'token')} but "
                               f"this model takes at most {limit} ({fix})")


def generate(loaded: LoadedModel, prompts: Sequence[Sequence[int]], max_new: int,
             edits: Sequence[Edit] = (), temperature: float = 0.0,
             seed: int | None = None) -> list[list[int]]:
    """New token ids per prompt: `max_new` of them, cut after the end-of-text token if one is
    made. Greedy at temperature 0; else sampled from softmax(logits / temperature) with a
    generator seeded by `seed`, one prompt at a time so that a prompt's draw does not depend on
    the others."""
    import torch

    check_whole(loaded)
    if max_new < 1:
        return [[] for _ in prompts]
    lengths = [len(p) for p in prompts]
    cached = _gives_cache(loaded, prompts[0][:1])
    alone = temperature or not cached
    groups = [[i] for i in range(len(prompts))] if alone else _batches(lengths)
    made: list[list[int]] = [[] for _ in prompts]
    with torch.inference_mode(), Trace(loaded, None, edits=edits) as trace:
        for batch in groups:
            generator = None
            if temperature:
                generator = torch.Generator().manual_seed(0 if seed is None else seed)
            tokens = _generate_batch(loaded, trace, [prompts[i] for i in batch], batch,
                                     max_new, temperature, generator, cached)
            for row, index in enumerate(batch):
                made[index] = tokens[row]
    stop = loaded.tokenizer.eos_token_id
    return [row[:row.index(stop) + 1] if stop in row else row for row in made]


def _cache_of(output: Any) -> Any:
    """The cache a forward handed back, or None (RWKV's output has none of that name, and
    RecurrentGemma's none at all)."""
    return getattr(output, "cache", None) or getattr(output, "past_key_values", None)


_GIVES_CACHE: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _gives_cache(loaded: LoadedModel, token: Sequence[int]) -> bool:
    """Whether the model hands back a cache to continue from: one forward of one token, once
    per model (its forward's parameters cannot tell: RecurrentGemma takes a `cache` and
    returns none)."""
    import torch

    if loaded.model not in _GIVES_CACHE:
        with torch.inference_mode(), upstream(loaded.info.model_type, "the forward pass failed"):
            output = loaded.model(input_ids=torch.tensor([list(token)]).to(_input_device(loaded)),
                                  use_cache=True)
        _GIVES_CACHE[loaded.model] = _cache_of(output) is not None
    return _GIVES_CACHE[loaded.model]


def _generate_batch(loaded: LoadedModel, trace: Trace, prompts: list[Sequence[int]],
                    indices: list[int], max_new: int, temperature: float,
                    generator: Any, cached: bool = True) -> list[list[int]]:
    """New tokens per prompt; with `cached` False, every step runs the whole sequence."""
    import torch

    device = _input_device(loaded)
    # left padding: every row ends at the same column, where the new tokens go
    ids, mask = pad_batch(prompts, pad_id_of(loaded.tokenizer), left=True)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [batch, tokens] index within the prompt
    trace.rows = torch.tensor(indices)
    cache_name = "cache" if "cache" in _parameters(loaded.model) else "past_key_values"
    cache = None
    made = []
    for _ in range(max_new):
        trace.positions = positions
        trace.lengths = mask.sum(-1)
        extra = {} if cache is None else {cache_name: cache}
        with upstream(loaded.info.model_type, "the forward pass failed"):
            output = loaded.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                  position_ids=positions.to(device), use_cache=cached, **extra)
        cache = _cache_of(output) if cached else None
        logits = output.logits[:, -1].float().cpu()  # [batch, vocab]
        if temperature:
            probabilities = torch.softmax(logits / temperature, dim=-1)
            chosen = torch.multinomial(probabilities, 1, generator=generator)[:, 0]
        else:
            chosen = logits.argmax(-1)
        made.append(chosen)
        step = positions[:, -1:] + 1
        ids = chosen[:, None] if cached else torch.cat([ids, chosen[:, None]], dim=-1)
        positions = step if cached else torch.cat([positions, step], dim=-1)
        mask = torch.cat([mask, torch.ones((len(prompts), 1), dtype=torch.long)], dim=-1)
    return torch.stack(made, dim=1).tolist()


def _parameters(model: Any) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


def answer_ids(loaded: LoadedModel, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """(prompt ids with the tokenizer's special tokens, answer ids without any)."""
    prompt_ids = tokenize(loaded, [prompt])[0]
    ids = list(loaded.tokenizer(answer, add_special_tokens=False)["input_ids"])
    if not ids:
        raise LazarusError(f"the answer {answer!r} of prompt {prompt!r} tokenizes to nothing "
                           "(give it some text after the ':')")
    return prompt_ids, ids


def warn_unknown(warn: Callable[[str], None], tokenizer: Any, name: str, text: str,
                 ids: Sequence[int], measured: str) -> None:
    """The one rule for text that is scored (steer's --tokens, answers, wrong texts): a text the
    tokenizer does not know is scored as its unknown token, so what is `measured` for it is that
    of <unk>, the same for every text it does not know; say so through `warn`."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    count = 0 if unknown is None else sum(1 for i in ids if i == unknown)
    if count:
        unk = getattr(tokenizer, "unk_token", None)
        warn(f"{name}: {count} of the {plural(len(ids), 'token')} of {text!r} "
             f"{'is' if count == 1 else 'are'} this tokenizer's unknown token {unk}, so "
             f"{measured} is {'' if count == len(ids) else 'partly '}that of {unk}, not of "
             "the text")


def answer_log_probs(loaded: LoadedModel, prompts: Sequence[Sequence[int]],
                     answers: Sequence[Sequence[int]],
                     edits: Sequence[Edit] = ()) -> list[np.ndarray]:
    """Per pair, float64 [answer tokens]: log p(answer token j | prompt, answer tokens < j)."""
    sequences = [[*p, *a] for p, a in zip(prompts, answers, strict=True)]
    rows = log_probs(loaded, sequences, [len(p) for p in prompts], edits)
    return [row[np.arange(len(a)), list(a)] for row, a in zip(rows, answers, strict=True)]


def next_token(loaded: LoadedModel, prompts: Sequence[Sequence[int]],
               edits: Sequence[Edit] = ()) -> list[np.ndarray]:
    """Per prompt, float64 [vocab]: log p(next token | prompt)."""
    return [row[-1] for row in log_probs(loaded, prompts, [len(p) for p in prompts], edits)]


