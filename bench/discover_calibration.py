"""`--auto-discover`'s test against the shuffle test it replaced, on synthetic neurons (issue 20).

    python bench/discover_calibration.py           # 200 runs per row (about 3-5 minutes)
    python bench/discover_calibration.py --quick   # 60 runs per row

Rows are standard normal neurons (the demo model's width, 192, or 576 as in the issue), labels
of the given sizes, 200 resamples (or shuffles) per run, alpha 0.05. Measured, with the binomial
standard error of each rate:

1. "any survivor" with equal means and three times the spread in the first (smaller) label:
   the family-wise error the test promises to keep at 5%. Goal: <= alpha + 3 SE.
2. the same with equal spreads (the clean null).
3. power: how often a neuron whose first-label mean is shifted by d (sd 1) survives.
4. the smallest detectable d the report prints (`stats.power`, mean over the null runs of row
   2) against the test's simulated power at that d. Goal: 80% within a few points.

"shuffled eta2" is the test before issue 20 (eta-squared, labels shuffled), written out here.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from lazarus.stats.power import critical_value, detectable_welch
from lazarus.stats.welch import bootstrap_test, within_label_draws

ALPHA = 0.05
COUNT = 200  # resamples or shuffles per run


def shuffled_eta2(values: np.ndarray, codes: np.ndarray, seed: int) -> np.ndarray:
    """Corrected p of the old test: eta-squared, labels shuffled, max-statistic."""
    rng = np.random.default_rng(seed)
    centred = values - values.mean(axis=0)
    total = (centred**2).sum(axis=0)
    one_hot = (codes[:, None] == np.arange(2)).astype(float)

    def eta(hot: np.ndarray) -> np.ndarray:  # [..., n, 2] -> [..., m]
        sums = np.swapaxes(hot, -1, -2) @ centred
        return (sums**2 / hot.sum(axis=-2)[..., None]).sum(axis=-2) / total

    observed = eta(one_hot)
    orders = np.argsort(rng.random((COUNT, codes.size)), axis=1)
    largest = eta(one_hot[orders]).max(axis=1)
    return (1 + (largest[None, :] >= observed[:, None] * (1 - 1e-9)).sum(axis=1)) / (1 + COUNT)


def welch_bootstrap(values: np.ndarray, codes: np.ndarray, seed: int):
    return bootstrap_test(values, codes, within_label_draws(codes, COUNT, seed))


def rate(hits: int, runs: int) -> str:
    share = hits / runs
    return f"{share:6.1%} ± {math.sqrt(max(share, ALPHA) * (1 - share) / runs):.1%}"


def data(sizes: tuple[int, int], neurons: int, seed: int, spread: float = 1.0,
         shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    codes = np.repeat([0, 1], sizes)
    values = np.random.default_rng(seed).normal(size=(codes.size, neurons))
    values[codes == 0] *= spread
    values[codes == 0, 0] += shift
    return values, codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 runs per row instead of 200")
    runs = 60 if parser.parse_args().quick else 200
    bound = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)
    print(f"{runs} runs per row, {COUNT} resamples/shuffles each; goal for rows 1-2: "
          f"<= {bound:.1%}")
    print(f"{'row':<44} {'shuffled eta2':>16} {'Welch bootstrap':>16}")
    for spread, name in ((3.0, "1. equal means, spread 3:1"), (1.0, "2. equal means, spread 1:1")):
        for sizes in ((5, 20), (10, 10), (8, 8)):
            for neurons in (192, 576):
                old = new = 0
                for seed in range(runs):
                    values, codes = data(sizes, neurons, seed, spread)
                    old += int((shuffled_eta2(values, codes, seed) < ALPHA).any())
                    new += int((welch_bootstrap(values, codes, seed).p_corrected < ALPHA).any())
                label = f"{name}, {sizes[0]} + {sizes[1]}, {neurons} neurons"
                print(f"{label:<44} {rate(old, runs):>16} {rate(new, runs):>16}", flush=True)
    for sizes in ((5, 20), (10, 10)):
        for d in (1.0, 2.0, 3.0, 4.0):
            old = new = 0
            for seed in range(runs):
                values, codes = data(sizes, 192, seed, shift=d)
                old += int(shuffled_eta2(values, codes, seed)[0] < ALPHA)
                new += int(welch_bootstrap(values, codes, seed).p_corrected[0] < ALPHA)
            label = f"3. power, {sizes[0]} + {sizes[1]}, 192 neurons, d = {d:g}"
            print(f"{label:<44} {rate(old, runs):>16} {rate(new, runs):>16}", flush=True)
    for sizes in ((8, 8), (10, 10), (5, 20)):
        effects = []
        for seed in range(20):
            values, codes = data(sizes, 192, 10**6 + seed)
            test = welch_bootstrap(values, codes, seed)
            effects.append(detectable_welch(critical_value(test.max_null, ALPHA), sizes))
        effect = float(np.mean(effects))
        hits = sum(int(welch_bootstrap(*data(sizes, 192, seed, shift=effect), seed)
                       .p_corrected[0] < ALPHA) for seed in range(runs))
        print(f"4. {sizes[0]} + {sizes[1]}, 192 neurons: smallest detectable d = {effect:.2f} "
              f"(sd over null runs {np.std(effects):.2f}); simulated power there "
              f"{rate(hits, runs).strip()}", flush=True)


if __name__ == "__main__":
    main()
