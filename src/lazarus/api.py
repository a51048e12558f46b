"""The public API, the one the CLI is built on: load a model once, then ask it questions.

    import lazarus

    model = lazarus.load("lazarus:demo")          # reads config.json; weights load on first use
    acts = model.capture(["2+3=", "45*45="], layers="0,-1")
    acts.to_numpy(0).shape                        # (2, 256): prompts x neurons at layer 0
    result = model.neurons(["2+3=", "45*45="], layers=0, labels=["easy", "hard"])
    result.to_json()                              # exactly what `neurons -o` writes
    report = model.probe(hard, easy, label_a="hard", label_b="easy")

A handle keeps the loaded model, so later calls pay neither the imports nor the load again
(`Model.loads` counts the loads). Rows come from the activation cache when they are there, as
in the CLI (`use_cache=False` skips it). Notes go to the `lazarus` logger and warnings through
`warnings.warn`, unless `notify` / `warn` callbacks are given; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lazarus.analyses.ablate import analyse_ablation
from lazarus.analyses.attribute import analyse_attribution
from lazarus.analyses.attribute_options import AttributeOptions
from lazarus.analyses.card import analyse_card
from lazarus.analyses.card_options import CardOptions
from lazarus.analyses.examples import analyse_examples
from lazarus.analyses.neurons import analyse_neurons
from lazarus.analyses.options import (
    AblateOptions,
    ExamplesOptions,
    NeuronsOptions,
    ProbeOptions,
    SteerOptions,
)
from lazarus.analyses.patch import analyse_patch
from lazarus.analyses.patch_options import PatchOptions
from lazarus.analyses.probe import analyse_probe
from lazarus.analyses.steer import analyse_steer
from lazarus.engine.arguments import builds, checked
from lazarus.engine.checks import Layers
from lazarus.engine.collect import Progress, collect
from lazarus.engine.handle import Handle
from lazarus.engine.positions import Position, parse_position
from lazarus.engine.trace import CaptureRequest
from lazarus.io.directions import Direction
from lazarus.results.ablation import AblationResult
from lazarus.results.activations import Activations
from lazarus.results.attribute import AttributionResult
from lazarus.results.card import CardResult
from lazarus.results.examples import ExamplesResult
from lazarus.results.neurons import NeuronsResult
from lazarus.results.patch import PatchResult
from lazarus.results.probe import ProbeResult
from lazarus.results.steer import SteerResult


def load(model: str, *, device: str = "auto", dtype: str = "auto",
         trust_remote_code: bool = False, device_map: str | None = None,
         use_cache: bool = True) -> Model:
    """A handle on `model` (a Hub ID, a local folder, or "lazarus:demo"); see `Model`."""
    return Model(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code,
                 device_map=device_map, use_cache=use_cache)


class Model(Handle):
    """A model, read once: its config now, its weights at the first call that computes.

    `whole=True` loads every block, so any later layer is free; `whole=False` loads only the
    blocks the call needs (what the CLI does for one run), and a later call that needs deeper
    blocks loads again.
    """

    @checked
    def capture(self, prompts: Sequence[str], layers: Layers = -1, *, site: str = "resid_post",
                position: Position = "last", progress: Progress | None = None) -> Activations:
        """Every neuron of `site` at `layers`, at one token `position` of each prompt."""
        position = parse_position(str(position))
        resolved = self.layers(layers)
        collected = collect(self.info, prompts,
                            CaptureRequest(resolved, site, position), self.settings,
                            progress=progress, notify=self.notify, loader=self.weights)
        return Activations(rows=collected.rows, prompts=tuple(prompts), layers=resolved,
                           site=site, position=position, model_id=self.model_id,
                           device=collected.device, dtype=collected.dtype)

    @builds(NeuronsOptions)
    def neurons(self, prompts: Sequence[str], layers: Layers = -1, *, site: str = "resid_post",
                position: Position = "last", neurons: Sequence[int] | None = None,
                direction: Direction | str | None = None, top_k: int = 10,
                labels: Sequence[str] | None = None,
                progress: Progress | None = None, auto_discover: bool = False,
                permutations: int = 1000) -> NeuronsResult:
        """How chosen neurons fire across `prompts`: `neurons` by id, the top-k of a
        `direction` (a `Direction` or the path of a probe's .npz), with `auto_discover` the
        top-k of every neuron of the (one) layer whose `labels` means differ after a bootstrap
        test corrected across all of them (`permutations` resamples), or else the k that spread
        most across the prompts. The result is what `lazarus introspect neurons` renders."""
        options = NeuronsOptions(layers=layers, site=site, position=position, neurons=neurons,
                                 direction=direction, top_k=top_k, labels=labels,
                                 auto_discover=auto_discover, permutations=permutations)
        return analyse_neurons(self, prompts, options, progress)

    @builds(ProbeOptions)
    def probe(self, class_a: Sequence[str], class_b: Sequence[str], *,
              label_a: str = "class_a", label_b: str = "class_b", layers: Layers | None = None,
              site: str = "resid_post", position: Position = "last", method: str = "logistic",
              test: Sequence[str] = (), test_labels: Sequence[str] | None = None,
              permutations: int | None = None, alpha: float | None = None,
              progress: Progress | None = None) -> ProbeResult:
        """Cross-validated linear probes between two classes at each of `layers` (default:
        every layer), a permutation test of the whole layer search (`permutations` shuffled
        labellings, default 200; a layer is best only when p < `alpha`, default 0.05), the
        chosen layer's direction, and predictions for `test` prompts (with a held-out accuracy
        given their `test_labels`). `.significant` says whether any layer beats chance;
        `.save_direction(path)` refuses otherwise, unless `force=True`."""
        options = ProbeOptions(label_a=label_a, label_b=label_b, layers=layers, site=site,
                               position=position, method=method, test=test,
                               test_labels=test_labels, permutations=permutations, alpha=alpha)
        return analyse_probe(self, class_a, class_b, options, progress)

    @builds(AblateOptions)
    def ablate(self, prompts: Sequence[str], layers: Layers, *,
               answers: Sequence[str] | None = None, labels: Sequence[str] | None = None,
               neurons: Sequence[int] | None = None, direction: Direction | str | None = None,
               top_k: int = 10, component: str | None = None, site: str | None = None,
               method: str = "zero", reference: Sequence[str] | None = None,
               controls: int = 100, seed: int = 0, sweep: bool = False, max_tokens: int = 8,
               progress: Callable[[int, int], None] | None = None) -> AblationResult:
        """Knock out `neurons` (or a `direction`'s top-k, or a whole `component`, "mlp" or
        "attention") at `layers` by `method` (zero, mean, resample), and measure each prompt's
        `answers` (log-prob, greedy match) or next-token KL, against `controls` draws of random
        neurons (seeded). What `lazarus introspect ablate` renders; see
        `lazarus.analyses.ablate`."""
        options = AblateOptions(layers=layers, answers=answers, labels=labels, neurons=neurons,
                                direction=direction, top_k=top_k, component=component,
                                site=site, method=method, reference=reference,
                                controls=controls, seed=seed, sweep=sweep,
                                max_tokens=max_tokens)
        return analyse_ablation(self, prompts, options, progress)

    @builds(ExamplesOptions)
    def examples(self, corpus: str, layer: Layers = -1, *, site: str = "resid_post",
                 neurons: Sequence[int] | None = None, direction: Direction | str | None = None,
                 top_k: int | None = None, projection: bool = False, examples: int = 10,
                 window: int = 64, stride: int | None = None, text_field: str = "text",
                 work_dir: str | None = None, shard_windows: int = 256, ray: bool = False,
                 ray_workers: int | None = None, ray_address: str | None = None,
                 token_budget: int | None = None, max_batch: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> ExamplesResult:
        """The `examples` highest and lowest activating tokens of `neurons` (or a `direction`'s
        `top_k`, default 10, or every neuron of `site`) at `layer` over every token of a `corpus`
        file (.txt, .jsonl with `text_field`, .parquet), cut into windows of `window` tokens every
        `stride`; with each neuron's mean, std, fraction positive, quantiles and histogram.
        `projection=True` reads the `direction`'s projection instead, as one unit: at every
        token the activation's dot product with the vector as stored (not rescaled). Streamed
        and resumable: shards of `shard_windows` windows are kept in `work_dir`
        (default: the cache folder's examples/), so a rerun skips the finished ones; `ray=True`
        runs the shards on `ray_workers` local Ray actors (default: one per GPU, or the CPUs
        divided by torch's threads; `ray_address`: on that cluster's, which must see the work
        folder at the same path). What `lazarus introspect examples`
        renders; see `lazarus.io.corpus`, `lazarus.stats.sketch` and `lazarus.analyses.scan`."""
        options = ExamplesOptions(layer=layer, site=site, neurons=neurons, direction=direction,
                                  top_k=top_k, projection=projection, examples=examples,
                                  window=window, stride=stride,
                                  text_field=text_field, work_dir=work_dir,
                                  shard_windows=shard_windows, ray=ray, ray_workers=ray_workers,
                                  ray_address=ray_address, token_budget=token_budget,
                                  max_batch=max_batch)
        return analyse_examples(self, corpus, options, progress)

    @builds(SteerOptions)
    def steer(self, prompts: Sequence[str], layer: int | None = None, *,
              direction: Direction | str | None = None, positive: Sequence[str] | None = None,
              negative: Sequence[str] | None = None, neurons: dict[int, float] | None = None,
              coefficients: Sequence[float] | None = None, absolute: bool = False,
              site: str | None = None, tokens: Sequence[str] = (), max_tokens: int = 20,
              temperature: float = 0.0, seed: int = 0, clamp: bool = False,
              compare: bool = False) -> SteerResult:
        """Generate from `prompts` with coefficient x scale x a unit `direction` (a probe's
        .npz, or the mean difference of `positive` and `negative` prompts) added at `layer`,
        or coefficient x `neurons` values; scale is the mean activation norm there (or 1 with
        `absolute`); `clamp` sets the `neurons` to coefficient x value instead. `coefficients`
        None: 0.2 for a direction, 1 for `neurons` or `absolute`, or with `compare` a sweep
        of the mode's range (`steer_strength`); each run's `added_fraction` is its vector's
        length over the mean activation norm. What
        `lazarus introspect steer` renders; see `lazarus.analyses.steer`."""
        options = SteerOptions(layer=layer, direction=direction, positive=positive,
                               negative=negative, neurons=neurons, coefficients=coefficients,
                               absolute=absolute, site=site, tokens=tokens,
                               max_tokens=max_tokens, temperature=temperature, seed=seed,
                               clamp=clamp, compare=compare)
        return analyse_steer(self, prompts, options)

    @builds(AttributeOptions)
    def attribute(self, clean: Sequence[str], corrupt: Sequence[str], answers: Sequence[str],
                  wrongs: Sequence[str] | None = None, *, metric: str = "logit_diff",
                  sites: Sequence[str] = ("mlp_post",), layers: Layers = "all",
                  method: str = "atp", steps: int = 10, top: int = 20,
                  self_check: int | None = None, seed: int = 0,
                  progress: Progress | None = None) -> AttributionResult:
        """Every unit's estimated effect of patching its `clean` values into the `corrupt`
        run (attribution patching, or with `method="ig"` integrated gradients of `steps`
        points), normalised by the clean - corrupted gap of `metric`, for the units of `sites`
        at `layers`; the `top` units by |estimate|, and a self-check that patches the
        `self_check` top units (default 20, or half the units when fewer) and as many random
        ones (`seed`) for real. What `lazarus introspect attribute` renders."""
        options = AttributeOptions(clean=clean, corrupt=corrupt, answers=answers,
                                   wrongs=wrongs, metric=metric, sites=sites, layers=layers,
                                   method=method, steps=steps, top=top,
                                   self_check=self_check, seed=seed)
        return analyse_attribution(self, options, progress)

    @builds(PatchOptions)
    def patch(self, clean: Sequence[str], corrupt: Sequence[str], answers: Sequence[str],
              wrongs: Sequence[str] | None = None, *, metric: str = "logit_diff",
              sites: Sequence[str] | str = ("resid_post",), layers: Layers = "all",
              direction: str = "denoise", seed: int = 0,
              progress: Callable[[int, int], None] | None = None) -> PatchResult:
        """Activation patching between `clean` and `corrupt` prompts (pairs of equal token
        length; `answers` and `wrongs`: one for every pair, or one per pair): for each of
        `sites` (resid_pre, resid_post, attn_out, mlp_out: layers x token positions; attn_head:
        layers x heads), each of `layers` and each column, the `metric` (logit_diff, logprob or
        kl) with that one activation patched from the other run, `direction` "denoise" (clean
        into corrupted) or "noise" (corrupted into clean), normalised so that 1 = the clean
        run and 0 = the corrupted one, with a bootstrap interval over pairs (`seed`). What
        `lazarus introspect patch` renders; see `lazarus.analyses.patch`."""
        options = PatchOptions(clean=clean, corrupt=corrupt, answers=answers, wrongs=wrongs,
                               metric=metric, sites=sites, layers=layers, direction=direction,
                               seed=seed)
        return analyse_patch(self, options, progress)

    @builds(CardOptions)
    def card(self, layer: Layers = -1, *, site: str | None = None,
             neurons: Sequence[int] | None = None, direction: Direction | str | None = None,
             corpus: str | None = None, top_k: int = 10, examples: int = 5, window: int = 64,
             stride: int | None = None, text_field: str = "text", work_dir: str | None = None,
             causal: bool = False, causal_windows: int = 8, controls: int = 20, seed: int = 0,
             coefficients: Sequence[float] | None = None, prompt: str | None = None,
             max_tokens: int = 12,
             progress: Callable[[int, int], None] | None = None) -> CardResult:
        """A page per unit at `layer`: `neurons` of `site` (default mlp_post; at an MoE layer,
        column e*I+u is expert e's unit u; at attn_head, heads) or one saved `direction` over
        the residual stream. Each card has the weight view (the `top_k` tokens the unit's write
        vector promotes and suppresses through the final norm's scale and W_U); with a `corpus`,
        `examples`' scan (statistics, quantiles, histogram, the `examples` top and bottom
        tokens, each context shaded token by token); with `causal`, the next-token loss change
        of zero-ablating it over the corpus' first `causal_windows` windows against `controls`
        random units (`seed`), and greedy continuations of `prompt` (default: the corpus' first
        tokens) steered at `coefficients`. What `lazarus introspect card` renders; see
        `lazarus.analyses.card`."""
        options = CardOptions(layer=layer, site=site, neurons=neurons, direction=direction,
                              top_k=top_k, examples=examples, window=window, stride=stride,
                              text_field=text_field, work_dir=work_dir, causal=causal,
                              causal_windows=causal_windows, controls=controls, seed=seed,
                              coefficients=coefficients, prompt=prompt, max_tokens=max_tokens)
        return analyse_card(self, corpus, options, progress)
