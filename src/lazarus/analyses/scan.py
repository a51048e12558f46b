"""A corpus scan: windows -> shards -> one `Summary` per shard, on disk -> one merged summary.

The corpus's windows (`corpus.windows`), in order, are cut into shards of `shard_windows`
consecutive windows. A shard is the unit of work: its windows run through the model in the
engine's batches (`capture.run_batches`), hooked at the layer's site at every token position,
keeping only the chosen columns; the scored tokens' values stay on the device and, a few batches
at a time (up to FLUSH_VALUES), are reduced to a `Summary` (top and bottom N, moments,
positives, sketch) merged into the shard's, so nothing grows with the corpus. Each shard's
summary is written to the work folder as one file, complete or absent (`shards`). A run with the
same arguments finds the work folder by their hash, skips the shards already there and computes
the rest; then every shard is read back and merged in shard order, so the result is the same
whether the shards came from this run, a killed one, or Ray workers (`scan_ray`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lazarus.analyses.scan_summary import summarize
from lazarus.analyses.shard_checks import scored_tokens
from lazarus.analyses.shards import (
    ScanSettings,
    check_work_dir,
    read_shard,
    shard_path,
    write_shard,
    writing,
)
from lazarus.engine.capture import context_length, run_batches
from lazarus.engine.loading import LoadedModel
from lazarus.engine.trace import CaptureRequest
from lazarus.errors import LazarusError
from lazarus.io.corpus import Window, prefix_of, windows
from lazarus.io.files import remove_stale_temps, replace_atomically
from lazarus.stats.sketch import Summary
from lazarus.text import plural

FLUSH_VALUES = 1 << 20  # scored values (tokens x neurons) a shard holds before summarising
Progress = Callable[[int, int], None]  # (windows done, windows in the corpus)
# computes and writes the shards given, calling back with each one's window count
Executor = Callable[[Iterable[tuple[int, list[Window]]], Callable[[int], None]], None]


class _Reducer:
    """A shard's running summary. Batches' scored values wait on the device, up to
    FLUSH_VALUES, and are summarised together: one summary per few batches instead of one per
    batch, since on a small model the per-call cost of the summary rivals the forward's. A
    batch's scored tokens are each row's range [first, end) of token positions: they are
    found, copied out with one index per batch, and their ids made, only when summarised, so
    that the hook itself does almost nothing (right after a forward every Python step is slow,
    its caches cold)."""

    def __init__(self, shard: list[Window], prefix: int, keep: int, routed: bool) -> None:
        self.keep = keep
        self.routed = routed
        self.prefix = prefix
        # per window of the shard: doc, window index, first scored position, end (with prefix)
        self.where = np.array([(w.doc, w.index, prefix + w.scored_from, prefix + len(w.tokens))
                               for w in shard], np.int64).reshape(len(shard), 4)
        self.scored_count = [len(w.tokens) - w.scored_from for w in shard]  # per window
        self.summary: Summary | None = None
        # the batch that is running, then each committed one: its windows (ascending) and
        # its torch [rows, tokens, K] values
        self.pending: tuple[list[int], Any] | None = None
        self.parts: list[tuple[list[int], Any]] = []
        self.held = 0

    def hold(self, batch: list[int], kept: Any) -> None:
        """Note `kept` ([rows, tokens, K] for the windows `batch`, in order); its scored
        tokens count once the batch is committed."""
        self.pending = batch, kept

    def commit(self) -> None:
        assert self.pending is not None
        batch, kept = self.pending
        self.pending = None
        self.parts.append((batch, kept))
        self.held += sum(self.scored_count[i] for i in batch) * kept.shape[-1]
        if self.held >= FLUSH_VALUES:
            self.flush()

    def _scored(self, batch: list[int], tokens: int) -> np.ndarray:
        """int64 indices of the scored tokens among a batch's [rows * tokens] (row-major)."""
        rows = np.asarray(batch, np.int64)
        positions = np.arange(tokens)
        first, end = self.where[rows, 2:3], self.where[rows, 3:4]
        return np.flatnonzero((positions >= first) & (positions < end))

    def values(self) -> Any:
        """torch [tokens, K]: the held batches' scored tokens, in order, in one copy."""
        import torch

        parts = [(kept.reshape(-1, kept.shape[-1]), self._scored(batch, kept.shape[1]))
                 for batch, kept in self.parts]  # [rows * tokens, K], their scored rows
        if parts[0][0].device.type != "cpu":
            return torch.cat([flat.index_select(0, torch.from_numpy(scored).to(flat.device))
                              for flat, scored in parts])
        # numpy's take, straight into the result: no wake-up of torch's thread pool, and no
        # per-batch copies to concatenate
        arrays = [(flat.numpy(), scored) for flat, scored in parts]
        out = np.empty((sum(len(scored) for _, scored in arrays), arrays[0][0].shape[1]),
                       arrays[0][0].dtype)
        at = 0
        for array, scored in arrays:
            array.take(scored, axis=0, out=out[at:at + len(scored)])
            at += len(scored)
        return torch.from_numpy(out)

    def ids(self) -> np.ndarray:
        """int64 [tokens, 3] (doc, window, token) of the held values, in their order."""
        where = self.where[np.concatenate([batch for batch, _ in self.parts])]
        counts = where[:, 3] - where[:, 2]
        ids = np.repeat(where[:, :3], counts, axis=0)
        starts = np.cumsum(counts) - counts  # each window's first row among the held ones
        ids[:, 2] += np.arange(len(ids)) - np.repeat(starts, counts) - self.prefix
        return ids

    def flush(self) -> Summary:
        if self.parts:
            part = summarize(self.values(), self.ids(), self.keep, self.routed)
            self.summary = part if self.summary is None else self.summary.merge(part, self.keep)
            self.parts, self.held = [], 0
        assert self.summary is not None
        return self.summary


def scan_shard(loaded: LoadedModel, shard: list[Window], prefix: tuple[int, ...],
               settings: ScanSettings, token_budget: int | None = None,
               max_batch: int | None = None) -> Summary:
    """One shard's summary: its windows through the model up to the layer, in the engine's
    batches (`capture.run_batches`), every scored token's values kept on the device until a
    few batches' worth are reduced together (`_Reducer`)."""
    import torch

    request = CaptureRequest((settings.layer,), settings.site, "all", settings.neurons)
    rows = [prefix + w.tokens for w in shard]
    reducer = _Reducer(shard, len(prefix), settings.examples, settings.routed)
    direction = None if settings.direction is None else torch.tensor(settings.direction,
                                                                     dtype=torch.float32)

    def keep(batch: list[int], layer: int, kept: Any) -> None:  # kept: [batch, tokens, K]
        if direction is not None:  # one pseudo-unit: the float32 dot product with the vector
            kept = project(kept, direction)
        reducer.hold(batch, kept)

    run_batches(loaded, rows, request, keep, token_budget, max_batch,
                after_batch=lambda batch: reducer.commit(),
                unit="window", too_long="give a smaller --window")
    return reducer.flush()


def project(values: Any, direction: Any) -> Any:
    """torch [..., width] values . the float32 [width] direction as stored, in float32:
    [..., 1]."""
    return (values.float() @ direction.to(values.device)).unsqueeze(-1)


def shards_of(stream: Iterator[Window], size: int) -> Iterator[tuple[int, list[Window]]]:
    shard: list[Window] = []
    number = 0
    for window in stream:
        shard.append(window)
        if len(shard) == size:
            yield number, shard
            shard, number = [], number + 1
    if shard:
        yield number, shard


@dataclass(frozen=True)
class ScanOutcome:
    summary: Summary
    documents: int
    windows: int
    shards: int
    resumed: int  # shards found complete in the work folder
    folder: Path
    scored: int = 0  # the corpus' scored tokens (summary.count with `routed`: those routed)


def local_executor(weights: Callable[[], LoadedModel], settings: ScanSettings, folder: Path,
                   token_budget: int | None = None, max_batch: int | None = None) -> Executor:
    """Shards computed here, one after the other; `weights()` is asked for the model at the
    first shard, so a run whose shards are all done loads nothing."""

    def execute(work: Iterable[tuple[int, list[Window]]], report: Callable[[int], None]) -> None:
        for number, shard in work:
            compute_shard(weights(), folder, number, shard, settings, token_budget, max_batch)
            report(len(shard))

    return execute


def compute_shard(loaded: LoadedModel, folder: Path, number: int, shard: list[Window],
                  settings: ScanSettings, token_budget: int | None = None,
                  max_batch: int | None = None, parquet: bool = False,
                  stamp: dict[str, str] | None = None) -> None:
    """Scan one shard and write its summary to the work folder (`shards.write_shard`)."""
    summary = scan_shard(loaded, shard, prefix_of(loaded.tokenizer), settings, token_budget,
                         max_batch)
    write_shard(folder, number, summary, settings, parquet, stamp)


def run_scan(tokenizer: Any, config: dict, settings: ScanSettings, folder: Path,
             executor: Executor, progress: Progress | None = None, width: int | None = None,
             warn: Callable[[str], None] | None = None) -> ScanOutcome:
    """Scan the corpus into `folder`, then merge its shards. Shards already there are kept if
    they pass the checks (`shards.read_shard`, for `width` neurons, None: as many as the first
    kept); a damaged one is named to `warn` (as are documents skipped, a null text); the others
    go to `executor`. Only the tokenizer is needed here, not the model."""
    prefix = prefix_of(tokenizer)
    limit = context_length(config)
    if limit is not None and settings.window + len(prefix) > limit:
        special = plural(len(prefix), "special token")
        raise LazarusError(f"--window {settings.window} (+{special}) is longer than this "
                           f"model's context of {limit} tokens (give at most "
                           f"{limit - len(prefix)})")

    def stream(note: Callable[[str], None] | None = None) -> Iterator[Window]:
        return windows(settings.corpus, tokenizer, settings.window, settings.stride,
                       settings.text_field, note)

    # A first pass: the counts, every input error early, and the shards already done, each
    # checked against its own windows (one shard's windows held at a time). `warn`: documents
    # skipped (a null text), said once.
    total, documents, last, tokens, complete = 0, 0, None, [], set()
    for number, shard in shards_of(stream(warn), settings.shard_windows):
        for window in shard:
            documents += window.doc != last
            last = window.doc
        total += len(shard)
        tokens.append(scored_tokens(shard))
        found = read_shard(folder, number, settings, tokens[-1], width, shard, warn)
        if found is not None:
            complete.add(number)
            width = found.width
    if total == 0:
        raise LazarusError(f"{settings.corpus} holds no text (give a corpus with at least one "
                           "non-empty document)")
    count = len(tokens)
    made = not folder.exists()
    check_work_dir(folder)
    manifest = folder / "settings.json"
    if not manifest.exists():
        text = json.dumps({**settings.identity(), "windows": total, "shards": count}, indent=2)
        try:
            with writing(manifest):
                replace_atomically(manifest, lambda temp: temp.write_text(text + "\n"))
        except LazarusError:
            if made:  # leave no empty work folder behind a run that never started
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
    remove_stale_temps(shard_path(folder, 0), any_target=True)
    done = [sum(min(settings.shard_windows, total - n * settings.shard_windows)
                for n in complete)]
    if progress is not None:
        progress(done[0], total)

    def pending() -> Iterator[tuple[int, list[Window]]]:
        for number, shard in shards_of(stream(), settings.shard_windows):
            if number not in complete:
                yield number, shard

    def report(windows: int) -> None:
        done[0] += windows
        if progress is not None:
            progress(done[0], total)

    executor(pending(), report)
    summary = None
    for number in range(count):
        part = read_shard(folder, number, settings, tokens[number], width, warn=warn)
        if part is None:
            raise LazarusError(f"shard {number} of the scan in {folder} is missing or damaged "
                               "(run again to compute it)")
        width = part.width
        summary = part if summary is None else summary.merge(part, settings.examples)
    assert summary is not None
    return ScanOutcome(summary, documents, total, count, len(complete), folder, sum(tokens))
