"""Corpus examples against brute force: every activation of every window held in memory through
`Model.capture(..., position="all")`, windows cut here by hand (the tiny models' tokenizer has one
token per character, after a BOS), for several batch sizes and shard counts; and the summaries'
merge rule on hand-made values with exact ties."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import lazarus
from lazarus.analyses import scan_summary
from lazarus.analyses.scan_summary import summarize
from lazarus.stats.sketch import ALPHA, MIN_ABS, QUANTILES, Summary

CORPUS = Path(__file__).parent / "data" / "corpus.txt"
NEURONS = (0, 5, 17, 63)
KEEP = 6
WINDOW, STRIDE = 12, 8


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    lines = CORPUS.read_text().splitlines()[:60]
    path.write_text("\n".join(lines[:30]) + "\n\n" + "\n".join(lines[30:]) + "\n")
    return path


def brute_force(model, path: Path, layer: int, neurons: tuple[int, ...]):
    """(values float64 [tokens, K], ids [(doc, window, token)]) of every scored token."""
    texts, where = [], []
    for doc, line in enumerate(path.read_text().split("\n")):
        if not line.strip():
            continue
        start, index, previous_end = 0, 0, 0
        while True:
            end = min(start + WINDOW, len(line))
            texts.append(line[start:end])
            where.append((doc, index, max(0, previous_end - start)))
            if end >= len(line):
                break
            previous_end, start, index = end, start + STRIDE, index + 1
    acts = model.capture(texts, layers=layer, position="all")
    values, ids = [], []
    for rows, (doc, index, first) in zip(acts.to_numpy(layer), where, strict=True):
        rows = rows[1:]  # the BOS token is context, never scored
        for token in range(first, len(rows)):
            values.append(rows[token, list(neurons)])
            ids.append((doc, index, token))
    return np.array(values, np.float64), ids


def expected_order(values: np.ndarray, ids: list, k: int, highest: bool) -> list[tuple]:
    keyed = sorted(((-v if highest else v), *at) for v, at in zip(values, ids, strict=True))
    return [tuple(item[1:]) for item in keyed[:KEEP]]


@pytest.mark.parametrize(("shard_windows", "token_budget", "max_batch"),
                         [(1000, None, None), (7, 64, 3), (25, 200, 16)])
def test_summaries_equal_brute_force(llama_dir, small_corpus, tmp_path, shard_windows,
                                     token_budget, max_batch):
    model = lazarus.load(str(llama_dir))
    values, ids = brute_force(model, small_corpus, 1, NEURONS)
    result = model.examples(str(small_corpus), 1, neurons=NEURONS, examples=KEEP,
                            window=WINDOW, stride=STRIDE, work_dir=str(tmp_path),
                            shard_windows=shard_windows, token_budget=token_budget,
                            max_batch=max_batch)
    assert result.tokens == len(values)
    assert result.shards == math.ceil(result.windows / shard_windows)
    lookup = {at: k for k, at in enumerate(ids)}
    for k, neuron in enumerate(result.neurons):
        column = values[:, k]
        print(neuron.neuron, "mean diff", abs(neuron.mean - column.mean()))
        assert neuron.neuron == NEURONS[k]
        assert neuron.count == len(column)
        assert neuron.mean == pytest.approx(column.mean(), abs=1e-5)
        assert neuron.std == pytest.approx(column.std(), abs=1e-5)
        assert neuron.fraction_positive == pytest.approx((column > 0).mean(), abs=1e-3)
        assert sum(neuron.histogram_counts) == len(column)
        for chosen, highest in ((neuron.top, True), (neuron.bottom, False)):
            got = [e.value for e in chosen]
            want = sorted(column, reverse=highest)[:KEEP]
            np.testing.assert_allclose(got, want, atol=1e-5)
            for example in chosen:  # each example is the token it names
                at = (example.doc, example.window, example.token)
                assert example.value == pytest.approx(column[lookup[at]], abs=1e-5)
        exact = np.sort(column)
        for q in QUANTILES:
            truth = exact[int(math.floor(q * (len(exact) - 1)))]
            got = neuron.quantiles[f"p{round(q * 100)}"]
            assert abs(got - truth) <= ALPHA * abs(truth) + MIN_ABS + 1e-4, (q, got, truth)


def test_examples_context_is_the_window_text(llama_dir, small_corpus, tmp_path):
    model = lazarus.load(str(llama_dir))
    result = model.examples(str(small_corpus), 0, neurons=(3,), examples=4, window=WINDOW,
                            stride=STRIDE, work_dir=str(tmp_path))
    lines = small_corpus.read_text().split("\n")
    for example in result.neurons[0].top + result.neurons[0].bottom:
        start = example.window * STRIDE
        window = lines[example.doc][start:start + WINDOW]
        assert example.text == window[example.token]
        assert example.before == window[max(0, example.token - 16):example.token]
        assert example.after == window[example.token + 1:example.token + 5]


def hand_made() -> tuple[np.ndarray, np.ndarray]:
    """Values with exact ties across chunk boundaries, zeros, and tiny and huge magnitudes."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(200, 3)).round(1).astype(np.float32)  # many exact ties
    values[::17, 1] = 0.0
    values[5, 2], values[6, 2] = 5e-5, -3e4
    ids = np.array([(d // 10, d % 10 // 5, d % 5) for d in range(200)], np.int64)
    return values, ids


@pytest.mark.parametrize("cuts", [[200], [1, 199], [50, 50, 100], [13] * 15 + [5]])
def test_merge_is_exact_whatever_the_split(cuts):
    values, ids = hand_made()
    merged, at = None, 0
    for size in cuts:
        part = summarize(torch.from_numpy(values[at:at + size]), ids[at:at + size], KEEP)
        merged = part if merged is None else merged.merge(part, KEEP)
        at += size
    whole = summarize(torch.from_numpy(values), ids, KEEP)
    assert merged.count == 200
    for name in ("positive", "sketch", "top", "top_ids", "bottom", "bottom_ids"):
        np.testing.assert_array_equal(getattr(merged, name), getattr(whole, name))
    np.testing.assert_allclose(merged.mean, values.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.m2 / 200, values.astype(np.float64).var(axis=0),
                               rtol=1e-10)
    for k in range(3):  # ties go to the lower (doc, window, token)
        order = sorted(range(200), key=lambda i, k=k: (-values[i, k], *ids[i]))[:KEEP]
        assert [tuple(x) for x in merged.top_ids[k]] == [tuple(ids[i]) for i in order]
        order = sorted(range(200), key=lambda i, k=k: (values[i, k], *ids[i]))[:KEEP]
        assert [tuple(x) for x in merged.bottom_ids[k]] == [tuple(ids[i]) for i in order]


@pytest.mark.parametrize("block", [1, 7, 64])
def test_summary_the_same_in_blocks_of_rows(monkeypatch, block):
    """`summarize` makes its passes a few rows at a time (BLOCK_VALUES); any block size gives
    the one-pass counts exactly and the moments to float64 rounding."""
    values, ids = hand_made()
    whole = summarize(torch.from_numpy(values), ids, KEEP)
    monkeypatch.setattr(scan_summary, "BLOCK_VALUES", block)
    blocked = summarize(torch.from_numpy(values), ids, KEEP)
    np.testing.assert_array_equal(blocked.positive, (values > 0).sum(axis=0))
    np.testing.assert_array_equal(blocked.sketch, whole.sketch)
    assert blocked.sketch.sum(axis=1).tolist() == [200, 200, 200]
    np.testing.assert_allclose(blocked.m2 / 200, values.astype(np.float64).var(axis=0),
                               rtol=1e-12)
    np.testing.assert_allclose(blocked.mean, values.astype(np.float64).mean(axis=0), rtol=1e-12)


def test_sketch_quantiles_within_documented_error():
    values, ids = hand_made()
    summary = summarize(torch.from_numpy(values), ids, KEEP)
    got = summary.quantiles()
    for k in range(3):
        exact = np.sort(values[:, k].astype(np.float64))
        for j, q in enumerate(QUANTILES):
            truth = exact[int(math.floor(q * (len(exact) - 1)))]
            assert abs(got[k, j] - truth) <= ALPHA * abs(truth) + MIN_ABS


def test_arrays_round_trip_and_refuse_other_shapes():
    values, ids = hand_made()
    summary = summarize(torch.from_numpy(values), ids, KEEP)
    again = Summary.from_arrays(summary.to_arrays(), KEEP)
    np.testing.assert_array_equal(again.top_ids, summary.top_ids)
    broken = {**summary.to_arrays(), "sketch": summary.sketch[:, :-1]}
    with pytest.raises(ValueError):
        Summary.from_arrays(broken, KEEP)


def test_a_batch_out_of_memory_is_split_in_half(llama_dir, small_corpus):
    from lazarus.analyses.scan import scan_shard
    from lazarus.analyses.shards import ScanSettings
    from lazarus.io.corpus import prefix_of, windows

    loaded = lazarus.load(str(llama_dir)).weights(1)
    prefix = prefix_of(loaded.tokenizer)
    shard = list(windows(str(small_corpus), loaded.tokenizer, WINDOW, STRIDE))
    settings = ScanSettings(str(small_corpus), 1, neurons=NEURONS, examples=KEEP,
                            window=WINDOW, stride=STRIDE)
    whole = scan_shard(loaded, shard, prefix, settings, token_budget=4096, max_batch=64)
    rows = []

    def refuse(module, args, kwargs):  # the allocator's failure, for batches of more than 4
        hidden = args[0] if args else kwargs["hidden_states"]
        rows.append(hidden.shape[0])
        if hidden.shape[0] > 4:
            raise MemoryError("simulated: out of memory")

    handle = loaded.model.model.layers[0].register_forward_pre_hook(refuse, with_kwargs=True)
    try:
        split = scan_shard(loaded, shard, prefix, settings, token_budget=4096, max_batch=64)
    finally:
        handle.remove()
    assert max(rows) > 4  # batches were refused, and their halves ran
    assert min(rows) <= 4
    assert split.count == whole.count
    np.testing.assert_array_equal(split.sketch.sum(axis=1), whole.sketch.sum(axis=1))
    np.testing.assert_allclose(split.top, whole.top, atol=1e-5)
    np.testing.assert_allclose(split.bottom, whole.bottom, atol=1e-5)
    np.testing.assert_allclose(split.mean, whole.mean, atol=1e-6)


def test_ties_at_the_cut_are_taken_in_id_order_whatever_the_row_order():
    """A shard summarises several batches at once, and the engine plans batches by length, so
    rows do not come in id order: ties at the cut must still be broken by id."""
    rng = np.random.default_rng(3)
    values = rng.integers(0, 3, size=(200, 4)).astype(np.float32)  # three values: many ties
    ids = np.stack([rng.integers(0, 5, 200), rng.integers(0, 5, 200), np.arange(200)], axis=1)
    shuffled = rng.permutation(200)
    got = summarize(torch.from_numpy(values[shuffled]), ids[shuffled], KEEP)
    listed = [tuple(int(x) for x in row) for row in ids]
    for k in range(4):
        for chosen, highest in ((got.top_ids[k], True), (got.bottom_ids[k], False)):
            want = expected_order(values[:, k], listed, KEEP, highest)
            assert [tuple(int(x) for x in row) for row in chosen] == want


@pytest.mark.parametrize(("rows", "kind"), [(5000, "repeated"), (3000, "sorted"),
                                            (700, "zeros"), (130, "normal"), (9, "normal")])
def test_top_and_bottom_equal_a_full_sort_whatever_the_values(rows, kind):
    """Top and bottom are chosen among a few candidates per column (those reaching a cut set by
    blocks of rows' best values): they must equal a full sort's, with every value repeated
    (ties across the cut), sorted columns (one block holds all the best), a column of zeros and
    -0.0 (all tied), and fewer rows than blocks."""
    rng = np.random.default_rng(rows)
    values = rng.normal(size=(rows, 3)).astype(np.float32)
    if kind == "repeated":
        values = np.tile(values[:rows // 5], (5, 1))[rng.permutation(rows)]
    elif kind == "sorted":
        values = np.sort(values, axis=0)
        values[:, 2] = values[::-1, 2]
    elif kind == "zeros":
        values[:, 0] = 0.0
        values[::3, 0] = -0.0
        values[::2, 1] = 0.0
    ids = np.stack([rng.integers(0, 7, rows), rng.integers(0, 7, rows), rng.permutation(rows)],
                   axis=1)
    summary = summarize(torch.from_numpy(values), ids, KEEP)
    listed = [tuple(int(x) for x in row) for row in ids]
    for k in range(3):
        for chosen, value, highest in ((summary.top_ids[k], summary.top[k], True),
                                       (summary.bottom_ids[k], summary.bottom[k], False)):
            want = expected_order(values[:, k], listed, KEEP, highest)
            assert [tuple(int(x) for x in row) for row in chosen] == want
            np.testing.assert_array_equal(value, [values[listed.index(at), k] for at in want])


@pytest.mark.parametrize("parquet", [False, True])
def test_a_shard_file_round_trips_and_a_damaged_one_reads_as_absent(tmp_path, parquet):
    """Both shard formats (the single process's .npz, Ray's .parquet) give back the summary
    array for array; a truncated file, or one of other neurons, is no shard of this scan, and
    is named and removed (to be computed again)."""
    if parquet:
        pytest.importorskip("pyarrow")
    from lazarus.analyses.shards import ScanSettings, read_shard, write_shard

    rng = np.random.default_rng(5)
    values = rng.normal(size=(50, 3)).astype(np.float32)
    ids = np.stack([np.zeros(50, np.int64), np.zeros(50, np.int64), np.arange(50)], axis=1)
    summary = summarize(torch.from_numpy(values), ids, KEEP)
    settings = ScanSettings("corpus.txt", 1, neurons=(4, 8, 9), examples=KEEP)
    path = write_shard(tmp_path, 7, summary, settings, parquet=parquet)
    assert path.suffix == (".parquet" if parquet else ".npz")
    again = read_shard(tmp_path, 7, settings, 50, 3)
    assert again is not None
    for name, want in summary.to_arrays().items():
        np.testing.assert_array_equal(again.to_arrays()[name], want)
    told = []
    assert read_shard(tmp_path, 7, ScanSettings("corpus.txt", 1, neurons=(4, 8),
                                                examples=KEEP), 50, 2, warn=told.append) is None
    assert not path.exists()
    write_shard(tmp_path, 7, summary, settings, parquet=parquet)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert read_shard(tmp_path, 7, settings, 50, 3, warn=told.append) is None
    assert not path.exists()
    assert [message.split(" is damaged (")[0] for message in told] == [str(path)] * 2


def test_a_run_whose_shards_are_all_done_loads_no_weights(llama_dir, small_corpus, tmp_path):
    settings = {"neurons": NEURONS, "examples": KEEP, "window": WINDOW, "stride": STRIDE,
                "work_dir": str(tmp_path), "shard_windows": 10}
    first = lazarus.load(str(llama_dir))
    done = first.examples(str(small_corpus), 1, **settings)
    assert first.loads == 1
    again = lazarus.load(str(llama_dir))
    resumed = again.examples(str(small_corpus), 1, **settings)
    assert again.loads == 0
    assert resumed.resumed_shards == done.shards
    assert resumed.to_json() | {"resumed_shards": 0} == done.to_json()


def test_sketch_buckets_equal_the_float_s_exponent_and_mantissa_bits():
    """Each value's bucket, against an independent route: math.frexp's exponent and the
    mantissa's leading bits, at the grid's edges (MIN_ABS, MAX_ABS, -0.0, bucket bounds)."""
    from lazarus.stats.sketch import BUCKETS, LOW, MANTISSA_BITS, MAX_ABS, SIDE

    rng = np.random.default_rng(11)
    edges = [0.0, -0.0, MIN_ABS, -MIN_ABS, np.nextafter(np.float32(MIN_ABS), 0), MAX_ABS,
             -MAX_ABS, 3e4, -1e30, 1.0, 1.0 + 2 ** -6, 1.0 + 2 ** -6 - 2 ** -23, 1e-30]
    values = np.concatenate([np.array(edges, np.float32),
                             (rng.normal(size=300) * 10.0 ** rng.uniform(-6, 5, 300))
                             .astype(np.float32)])

    def bucket(x: float) -> int:
        if abs(x) < MIN_ABS:
            return SIDE
        mantissa, exponent = math.frexp(abs(x))  # |x| = mantissa 2^exponent, mantissa in [.5, 1)
        top = (exponent - 1 + 127) * 2 ** MANTISSA_BITS + int((2 * mantissa - 1)
                                                               * 2 ** MANTISSA_BITS)
        k = min(max(top - LOW + 1, 1), SIDE)
        return SIDE + (k if x > 0 else -k)

    summary = summarize(torch.from_numpy(values[:, None]), np.zeros((len(values), 3),
                                                                   np.int64), 1)
    want = np.bincount([bucket(float(x)) for x in values], minlength=BUCKETS)
    np.testing.assert_array_equal(summary.sketch[0], want)


def test_a_site_without_a_value_at_every_token_is_refused():
    """MoE expert units are NaN at the tokens not routed to the expert: no summary of them."""
    from lazarus.errors import LazarusError

    values = np.ones((5, 2), np.float32)
    values[3, 1] = np.nan
    with pytest.raises(LazarusError, match="no value at some tokens"):
        summarize(torch.from_numpy(values), np.zeros((5, 3), np.int64), KEEP)


def test_values_beyond_the_sketch_s_range_are_said_where_quantiles_are_shown():
    """The sketch stops at 2^14: a value of 2e6 is counted at about 16320, so its quantile read
    from the sketch is not its value; the text says so, and says nothing within the range."""
    from lazarus.render.examples import render_neuron
    from lazarus.results.examples import NeuronExamples
    from lazarus.stats.sketch import beyond_note

    values = np.array([[1.0], [2e6], [3e6]], dtype=np.float32)
    ids = np.array([[0, 0, i] for i in range(3)], dtype=np.int64)
    summary = summarize(torch.from_numpy(values), ids, KEEP)
    assert summary.quantiles()[0, QUANTILES.index(0.5)] < 2e4  # far from 2e6, hence the note
    assert beyond_note(-1.0, 16000.0) is None
    note = beyond_note(-1.0, 2e6)
    assert "beyond +-16384" in note

    def neuron(top: float) -> NeuronExamples:
        return NeuronExamples(neuron=0, count=3, mean=0.0, std=1.0, fraction_positive=1.0,
                              min=1.0, max=top, quantiles={"p50": 2.0},
                              histogram_edges=(1.0, top), histogram_counts=(3,), top=(),
                              bottom=())

    assert note in "\n".join(render_neuron(neuron(2e6)))
    assert "beyond" not in "\n".join(render_neuron(neuron(3.0)))
