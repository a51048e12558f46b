"""Per-neuron summaries of a stream of activations that merge exactly (numpy only).

A `Summary` holds, for K neurons, what a corpus scan keeps: the count of tokens, exact moments
(mean and M2, merged by Chan et al.'s rule, in float64), the count of positive values, the N
highest and N lowest values with their token's (doc, window, token) ids, and a quantile sketch.
Summaries of disjoint parts of a corpus merge into the summary of the whole, so the result does
not depend on how the work was split: counts, top and bottom examples and the sketch exactly,
moments to float rounding (and bit for bit when merged in the same order, as `scan` does).

Top and bottom examples: ordered by value (highest first, resp. lowest first), ties broken by
(doc, window, token) ascending, so the N kept are fully determined by the data.

Quantile sketch (log-like buckets read from the float's bits, on a fixed grid): a float32 value
x with MIN_ABS <= |x| goes to the bucket named by its exponent and its MANTISSA_BITS leading
mantissa bits, on its sign's side; |x| < MIN_ABS goes to a zero bucket; |x| beyond MAX_ABS to
the outermost bucket. A bucket holds [a, b) with b = a (1 + 2^-MANTISSA_BITS) at most, and
stands for 2ab / (a + b), so a quantile read from the sketch is within ALPHA (0.78%) of the true
value relative to it, or within MIN_ABS of it near zero, for |x| up to MAX_ABS (beyond, the
exact min and max bound it). A value's bucket is a function of its bits alone (integer
operations, no logarithm), so it is the same on any device and in any split; the grid is the
same for every shard, so merging is adding counts. Quantile q is the value of rank
floor(q (n - 1)) in ascending order (numpy's "lower" method).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MANTISSA_BITS = 6  # buckets per octave: 2^6
SHIFT = 23 - MANTISSA_BITS  # float32 bits below the bucket's
MIN_ABS = 2.0 ** -14  # values closer to 0 than this share the zero bucket (6.1e-5)
MAX_ABS = 2.0 ** 14  # values beyond this share the outermost buckets
LOW = (127 - 14) << MANTISSA_BITS  # MIN_ABS's bits >> SHIFT: the first bucket's
SIDE = ((127 + 14) << MANTISSA_BITS) - LOW  # buckets per sign, MIN_ABS to MAX_ABS
BUCKETS = 2 * SIDE + 1  # negative (most negative first), zero, positive
ALPHA = 2.0 ** -MANTISSA_BITS / (2 + 2.0 ** -MANTISSA_BITS)  # relative error of the quantiles
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def beyond_note(low: float | None, high: float | None) -> str | None:
    """What the quantiles and histogram of values from `low` to `high` miss when some are beyond
    MAX_ABS (they share the outermost bucket, read as about its value); None when none are (or
    there are no values)."""
    if low is None or high is None or not max(abs(low), abs(high)) >= MAX_ABS:
        return None
    edge = float(bucket_values()[-1])
    return (f"some values are beyond +-{MAX_ABS:g} (2^14), where the sketch does not resolve "
            f"them: they are counted at about +-{edge:.0f}, so quantiles and histogram bins "
            "among them are not their values (min, max, mean, std and the examples are exact)")


def bucket_values() -> np.ndarray:
    """The value each sketch bucket stands for, ascending: float64 [BUCKETS]."""
    first = np.arange(LOW, LOW + SIDE, dtype=np.uint32)  # each bucket's top bits
    low = (first << SHIFT).view(np.float32).astype(np.float64)
    high = ((first + 1) << SHIFT).view(np.float32).astype(np.float64)
    magnitude = 2 * low * high / (low + high)
    return np.concatenate([-magnitude[::-1], [0.0], magnitude])


@dataclass
class Summary:
    """What is kept of K neurons' values over some tokens (see the module's notes)."""

    count: int  # tokens seen (each neuron has a value at every token)
    mean: np.ndarray  # float64 [K]
    m2: np.ndarray  # float64 [K]: sum of squared deviations from the mean
    positive: np.ndarray  # int64 [K]: values > 0
    sketch: np.ndarray  # int64 [K, BUCKETS]
    top: np.ndarray  # float32 [K, m], m = min(count, N): highest first
    top_ids: np.ndarray  # int64 [K, m, 3]: (doc, window, token)
    bottom: np.ndarray  # float32 [K, m]: lowest first
    bottom_ids: np.ndarray  # int64 [K, m, 3]

    @classmethod
    def empty(cls, width: int) -> Summary:
        return cls(0, np.zeros(width), np.zeros(width), np.zeros(width, np.int64),
                   np.zeros((width, BUCKETS), np.int64), np.zeros((width, 0), np.float32),
                   np.zeros((width, 0, 3), np.int64), np.zeros((width, 0), np.float32),
                   np.zeros((width, 0, 3), np.int64))

    @property
    def width(self) -> int:
        return int(self.mean.shape[0])

    def merge(self, other: Summary, keep: int) -> Summary:
        """The summary of both parts' tokens (keeping `keep` examples each way)."""
        total = self.count + other.count
        if total == 0:
            return self
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / total)
        m2 = self.m2 + other.m2 + delta * delta * (self.count * other.count / total)
        top, top_ids = select(np.concatenate([self.top, other.top], axis=1),
                              np.concatenate([self.top_ids, other.top_ids], axis=1),
                              keep, highest=True)
        bottom, bottom_ids = select(np.concatenate([self.bottom, other.bottom], axis=1),
                                    np.concatenate([self.bottom_ids, other.bottom_ids], axis=1),
                                    keep, highest=False)
        return Summary(total, mean, m2, self.positive + other.positive,
                       self.sketch + other.sketch, top, top_ids, bottom, bottom_ids)

    def std(self) -> np.ndarray:
        """Population standard deviation (ddof=0)."""
        return np.sqrt(self.m2 / self.count) if self.count else np.full(self.width, np.nan)

    def quantiles(self, levels: tuple[float, ...] = QUANTILES) -> np.ndarray:
        """float64 [K, len(levels)] read from the sketch, within [min, max]."""
        if not self.count:
            return np.full((self.width, len(levels)), np.nan)
        ranks = np.floor(np.asarray(levels) * (self.count - 1)).astype(np.int64)
        cumulative = np.cumsum(self.sketch, axis=1)  # [K, BUCKETS]
        values = bucket_values()
        found = np.stack([values[np.searchsorted(row, ranks, side="right")]
                          for row in cumulative])
        return np.clip(found, self.bottom[:, :1].astype(np.float64),
                       self.top[:, :1].astype(np.float64))

    def histogram(self, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(edges [K, bins + 1], counts [K, bins]): the sketch's buckets put into equal bins
        between each neuron's min and max (a bucket counts in the bin of the value it stands
        for, clamped to [min, max])."""
        values = bucket_values()
        edges = np.zeros((self.width, bins + 1))
        counts = np.zeros((self.width, bins), np.int64)
        for k in range(self.width):
            low, high = (float(self.bottom[k, 0]), float(self.top[k, 0])) if self.count \
                else (0.0, 0.0)
            edges[k] = np.linspace(low, high, bins + 1)
            span = (high - low) or 1.0
            where = np.clip(((np.clip(values, low, high) - low) / span * bins).astype(int),
                            0, bins - 1)
            counts[k] = np.bincount(where, weights=self.sketch[k], minlength=bins)
        return edges, counts

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"count": np.array([self.count], np.int64), "mean": self.mean, "m2": self.m2,
                "positive": self.positive, "sketch": self.sketch, "top": self.top,
                "top_ids": self.top_ids, "bottom": self.bottom, "bottom_ids": self.bottom_ids}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], keep: int) -> Summary:
        """Check every array's type and shape (ValueError if one is off), then build."""
        width = int(getattr(arrays.get("mean"), "shape", (0,))[0])
        count = int(_checked(arrays, "count", np.int64, (1,))[0])
        m = min(count, keep)
        return cls(count, _checked(arrays, "mean", np.float64, (width,)),
                   _checked(arrays, "m2", np.float64, (width,)),
                   _checked(arrays, "positive", np.int64, (width,)),
                   _checked(arrays, "sketch", np.int64, (width, BUCKETS)),
                   _checked(arrays, "top", np.float32, (width, m)),
                   _checked(arrays, "top_ids", np.int64, (width, m, 3)),
                   _checked(arrays, "bottom", np.float32, (width, m)),
                   _checked(arrays, "bottom_ids", np.int64, (width, m, 3)))


def _checked(arrays: dict[str, np.ndarray], key: str, dtype: type, shape: tuple) -> np.ndarray:
    array = arrays.get(key)
    if array is None or array.dtype != dtype or array.shape != shape:
        raise ValueError(f"{key}: expected {np.dtype(dtype)} {shape}")
    return array


def select(values: np.ndarray, ids: np.ndarray, keep: int,
           highest: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per row of float32 [K, n] values with int64 [K, n, 3] ids, the `keep` first in the order
    (value, highest or lowest first; then doc, window, token ascending)."""
    if values.shape[1] == 0:
        return values.astype(np.float32), ids.astype(np.int64)
    key = -values.astype(np.float64) if highest else values.astype(np.float64)
    order = np.lexsort((ids[..., 2], ids[..., 1], ids[..., 0], key), axis=-1)[:, :keep]
    return (np.take_along_axis(values, order, axis=1).astype(np.float32),
            np.take_along_axis(ids, order[..., None], axis=1).astype(np.int64))
