"""Help texts of every command (plain strings: `--help` imports nothing heavy)."""

from __future__ import annotations

from lazarus.engine.model_info import DEMO_MODEL

DEMO = DEMO_MODEL
MAX_ROWS = 50  # default row limit of the map and heatmap, beyond which a summary row stands in


DEFINITIONS = f"""\
definitions:
  neuron   one coordinate of a site of decoder block L at one token position; by default the
           residual stream output by the block (resid_post) at the prompt's last token, before
           the final norm. At MoE layers, mlp_post neuron e*I+u is unit u of expert e, with a
           value only for tokens routed to that expert
  layer    0 is the first block's output (not the embeddings); layer L equals Hugging Face's
           output_hidden_states[L + 1], except that for the last block HF applies the final
           norm and lazarus does not; negative layers count from the end (-1 = last block)
  prompts  tokenized as the model's tokenizer does by default (its own special tokens, no chat
           template)
  std      neurons' statistics: population standard deviation (ddof=0); the probe's class
           spreads: sample standard deviation (ddof=1)

models:
  a Hugging Face Hub ID (org/name; the local cache is used first, so cached models work
  offline), a local folder saved with save_pretrained, or '{DEMO_MODEL}', the small arithmetic
  model that ships with lazarus
"""


PROBE_NOTES = """\
statistics:
  accuracy   held out, balanced: the mean of the two classes' recall in each fold, so chance
             is 50% whatever the class sizes; mean ± std over stratified folds (as many as
             the smaller class holds, at most 5; one prompt of the smaller class held out per
             fold for tiny sets)
  baseline   the same cross-validation on shuffled labellings (--permutations, default 200),
             per layer: accuracy that means nothing
  p          permutation test of the whole layer search: the share of shuffled labellings
             whose best layer did at least as well as the real labels' best layer,
             (1 + count) / (1 + shuffles)
  best layer highest mean balanced accuracy (ties go to the larger held-out separation, then
             the earlier layer), marked only when p < --alpha (default 0.05); otherwise no layer
             beats chance, no direction is saved without --force-save, and the exit status is 3
  direction  unit length in raw activation coordinates, positive = more like class A;
             logistic: L2-penalised logistic regression on centred raw activations;
             difference: mean(A) - mean(B)
  separation in-sample: Cohen's d of the training prompts' projections on the direction
  threshold  in-sample: a test prompt is class A when its projection is above it (where the
             fit's probability of A is 50%), shown with the test predictions
  ranking    top neurons are ranked by the separation lost when the neuron is left out of the
             direction (stored in the file as 'importance')
"""


NEURONS_EXAMPLES = f"""\
examples:
  lazarus introspect neurons -m {DEMO_MODEL} -l 0 -p "2+3=|45*45=|58*67=" -n 78,191
  lazarus introspect neurons -m {DEMO_MODEL} -l 0,-1 -p @prompts.txt --labels @labels.txt -o out.csv
  lazarus introspect neurons -m {DEMO_MODEL} -l 0 -p "2+3=|45*45=" \\
      --from-direction difficulty.npz --top-k 6
"""


PROBE_EXAMPLES = f"""\
examples:
  lazarus introspect probe -m {DEMO_MODEL} --label-a hard --label-b easy \\
      --class-a "47*47=|67*83=|53*59=|38*76=|91*23=|64*58=|29*84=|73*36=" \\
      --class-b "20+30=|10*10=|11+11=|40+50=|10+20=|30*10=|12+12=|20*20=" \\
      --save-direction difficulty.npz
  lazarus introspect probe -m {DEMO_MODEL} --class-a @hard.txt --class-b @easy.txt -l 0-2 \\
      -t "58*67=|2+2=" -o probe.json
"""


EXIT_STATUS = """\
exit status:
  0    done
  2    a mistake in the input: one line on stderr says what and how to fix it
  3    ran fine, found nothing: probe found no layer that beats chance (p >= --alpha), and
       no direction was saved unless --force-save; or neurons --auto-discover found no
       neuron that survives the correction. The report says why; output files are written
  130  interrupted by Ctrl-C (SIGINT); 143 by SIGTERM; no temporary file is left
  141  the reader of stdout went away (e.g. '| head'): the run ends quietly, output files
       already written
"""


ABLATE_NOTES = """\
what is knocked out:
  neurons   --neurons ids, or the --top-k of --from-direction FILE, at every layer of -l, at
            --site (default: the direction's site, else resid_post)
  component --component mlp (the mlp_out site) or attention (attn_out): everything that
            sub-block adds to the residual stream
  -l 0,1 knocks out all the layers' at once; with --sweep, one layer at a time
how (--method), at every token position, generated tokens included:
  zero      set to 0 (default)
  mean      set to their mean over every token of the --reference prompts (default: --prompts)
  resample  each prompt takes another reference prompt's values (drawn with --seed; never its
            own when the reference is --prompts), token t taking that prompt's token
            min(t, its last)
measured, per prompt, baseline and ablated:
  'prompt:answer' items (split at the last ':'): the answer's log-probability under teacher
            forcing (summed over its tokens) and whether greedy decoding still produces it;
            effect = mean drop in that log-probability (nats)
  bare prompts: KL(baseline || ablated) of the next-token distribution and the greedy
            continuation (--max-tokens); effect = mean KL (nats)
control (neurons): --controls N draws (default 100) of as many random neurons at each of the
  same layers and site, uniformly without replacement among the neurons not chosen
  (numpy default_rng(--seed)), ablated the same way;
  p = (1 + #{draws with effect >= the chosen neurons' effect}) / (1 + N): the test;
  z = (effect - mean of the draws) / their std (ddof=1): descriptive only, not a test (the
  draws' effects are skewed, so z > 1.645 comes about 8% of the time by chance)
"""

ABLATE_EXAMPLES = f"""\
examples:
  lazarus introspect ablate -m {DEMO} -l 0 --prompts "45*45=:2025|58*67=:3886|2+3=:5" \\
      --from-direction difficulty.npz --top-k 6 --labels "hard|hard|easy"
  lazarus introspect ablate -m {DEMO} -l 0-3 --sweep --component mlp --prompts @pairs.txt
  lazarus introspect ablate -m {DEMO} -l 2 --site mlp_post -n 12,400 --method mean \\
      --prompts "The cat|A dog" -o ablate.json
"""

STEER_NOTES = """\
the vector added at every token position (prompt and generated tokens, KV cache on):
  coefficient x scale x unit, unit = the direction at unit length:
    --direction FILE       a probe's .npz (layer and site: the file's, unless -l / --site)
    --positive/--negative  mean of the site's values at the last token of the --positive
                           prompts minus that of the --negative ones, at -l
  scale = the mean L2 norm of the site's vectors at the layer over the prompts' tokens, a
  BOS-like prefix left out (coefficient 1 adds a vector as long as a typical activation);
  --absolute: 1 (the coefficient is the added length)
  --neurons id:value,...   adds coefficient x value to each neuron, nothing else (absolute)
how strong: "of norm" is the added vector's length over that mean norm (measured in every
  mode). On the demo model text stays well-formed up to about 0.3 and breaks from about 0.5
  (README: How strong to steer): default coefficient 0.2 for a direction, 1 with --neurons
  or --absolute; a bare --compare sweeps ±0.1,±0.2,±0.3 (a direction), ±0.5,±1,±1.5
  (--neurons), ±0.1..±0.3 x the norm as lengths (--absolute); a warning past 0.3x (4x for
  --neurons: one sparse neuron is large beside its site's norm; none with --clamp, nor for
  a direction's bare --compare)
MoE mlp_post (expert units): added to, and the norm over, each token's routed experts' units
coefficient 0 is always run: it is the unmodified model, and changes are against it
measured per prompt and coefficient: the continuation, and for each --tokens word the change
  in its log-probability right after the prompt (its tokens teacher-forced, summed; nats)
"""

STEER_EXAMPLES = f"""\
examples:
  lazarus introspect steer -m {DEMO} -p "47*47=|2+3=" --direction difficulty.npz \\
      --compare --tokens "2|5"
  lazarus introspect steer -m {DEMO} -p "12+" -l 1 --positive "47*47=|67*83=" \\
      --negative "2+3=|4*2=" --coefficient 0.3 --max-tokens 10 -o steer.json
"""

EXAMPLES_NOTES = """\
corpus (--corpus):
  .txt      one document per line (blank lines skipped); a document's id is its line (0-based)
  .jsonl    one JSON object per line, the text in --text-field (default: text)
  .parquet  a text column named --text-field (needs pyarrow: pip install 'lazarus[ray]')
windows:
  each document is tokenized without special tokens and cut into windows of --window tokens
  (default 64) starting every --stride tokens (default: --window, no overlap); the last window
  ends at the document's end. The tokenizer's own prefix (e.g. <s>) comes before every window
  and is not scored. With an overlap, a window scores only the tokens the previous one did not
  hold: every token of the corpus counts once, with at least window - stride tokens before it
what is kept, per neuron, over every token (streamed: memory does not grow with the corpus):
  top/bottom  the --examples N highest and lowest tokens (ties: lower doc, window, token first),
              shown with up to 16 tokens of their window before and 4 after, the token in
              [brackets] (in colour with --color on a colour terminal); id doc:window:token
  moments     count, mean and population std (ddof=0), exact (Chan's merge, float64)
  positive    the share of tokens with a value > 0
  quantiles   p1..p99 from a sketch of log-like buckets (the float's exponent and 6 leading
              mantissa bits): within 0.78% of the true value (of rank floor(q (n - 1))), or
              within 6.1e-5 of it near zero
  histogram   10 equal bins between the min and the max, filled from the sketch (each
              value counted at its bucket's value, so counts near a bin edge are approximate)
shards and resume:
  the windows are cut into shards of --shard-windows (default 256); each shard's summary is
  written atomically to a folder of --work-dir (default: <cache folder>/examples) named by a
  hash of the arguments, the corpus file and the model's files. A rerun with the same
  arguments (after a crash, a kill, or Ctrl-C) computes only the missing shards; the shards are
  merged in order, so the result does not depend on how the work was split
--ray: the shards run as Ray Data map_batches on --ray-workers local model actors, each
  loading the model once, each shard written as Parquet (needs pip install 'lazarus[ray]');
  the result is the same as in one process (on GPUs, to float rounding).
  --ray-address ADDR runs them on an existing cluster's actors instead, which must see
  --work-dir and the model at the same paths (a shared filesystem)
"""

EXAMPLES_EXAMPLES = f"""\
examples:
  lazarus introspect examples -m {DEMO} -l 0 --corpus corpus.txt -n 78,191
  lazarus introspect examples -m {DEMO} -l 0 --corpus docs.jsonl --text-field body \\
      --from-direction difficulty.npz --top-k 3 --examples 5 -o examples.json
  lazarus introspect examples -m {DEMO} -l 1 --site mlp_post --corpus corpus.parquet \\
      --window 32 --stride 16 -o examples.parquet --ray
"""

PATCH_NOTES = """\
what is patched (--site, several comma-separated; default resid_post):
  resid_pre, resid_post, attn_out, mlp_out   layers x token positions: the site's whole vector
            at one token of one layer, alone
  attn_head  layers x heads: one head's output (before the output projection) at every token
which way (--direction):
  denoise   clean activations patched into the corrupted run (default): 1 means the patched
            activation alone restores the clean answer
  noise     corrupted activations patched into the clean run: 0 means it alone destroys it
the metric (--metric), at the first token where the answer and the wrong text differ (their
  shared start is appended to both prompts): logit_diff (default), logprob, or kl; each cell is
  (mean over pairs of the patched run's metric - mean corrupted) / (mean clean - mean
  corrupted): 1 = the clean run, 0 = the corrupted run, in both directions
pairs: a clean and a corrupted prompt must tokenize to the same length; pairs of different
  lengths share the grid counted from their ends (the shortest pair's length). With several
  pairs each cell gets a 95% expanded percentile bootstrap interval over pairs (1000
  resamples, --seed; widened for few pairs; rough below 5 pairs)
output: a text heatmap per site; -o FILE.json (every number, per-pair scores included) or
  FILE.csv (one row per site x layer x column); --plot FILE.png or .svg (one heatmap per site)
"""

PATCH_EXAMPLES = f"""\
examples:
  lazarus introspect patch -m {DEMO} --clean "23+45=" --corrupt "23+46=" \\
      --answer 68 --wrong 69
  lazarus introspect patch -m {DEMO} --clean "23+45=|12+34=" --corrupt "23+46=|12+35=" \\
      --answer "68|46" --wrong "69|47" --site resid_post,attn_out,mlp_out --plot patch.png
  lazarus introspect patch -m {DEMO} --pairs pairs.tsv --direction noise -o patch.csv
"""

ATTRIBUTE_NOTES = """\
the estimate (--method atp, default): attribution patching. For each pair, one forward on the
  clean prompt (its values kept), one forward on the corrupted prompt with gradients, one
  backward of the metric; per unit, gradient at the corrupted run x (clean - corrupted),
  summed over the unit's columns (a head's head_dim; a position's whole vector) and, for
  neurons and heads, over every token position. Averaged over the pairs and divided by the
  gap (mean clean - mean corrupted metric): it predicts the normalised effect of patching the
  unit's clean values into the corrupted run (denoising): 1 = the whole gap, 0 = no change.
--method ig --steps N: integrated gradients (midpoint rule, N points from corrupted to clean
  values), one layer and site at a time: N rows of forward + backward per pair, layer and site
  (about N x the cost of atp per layer); exact in the limit where atp's straight line is not.
units (--site, comma-separated; default mlp_post):
  mlp_post   neurons (MoE layers: expert units, column e x units + u; 0 where not routed)
  attn_head  heads
  resid_pre, resid_post, attn_out, mlp_out   token positions (each position's whole vector;
             the pairs must be of one token length)
self-check (--check K, default 20; 0: none): the K units of largest |estimate| and K drawn at
  random among the rest (numpy default_rng(--seed)) are patched for real, one run per unit and
  pair. Spearman rank correlation of estimate and real effect, twice: over all 2K units (a
  stratified sample: an estimate that only tells the top from the rest, with no order within
  the top, still scores ~0.75 there) and within the top K alone (their order; undefined for
  K < 3). The verdict is the worse of the two: good if both >= 0.9 (trust the ranking), fair
  if both >= 0.5, else poor (try --method ig); undetermined if either is undefined. Only the
  2K units are tested.
"""

ATTRIBUTE_EXAMPLES = f"""\
examples:
  lazarus introspect attribute -m {DEMO} --clean "23+45=" --corrupt "23+46=" \\
      --answer 68 --wrong 69
  lazarus introspect attribute -m {DEMO} --pairs pairs.tsv --site mlp_post,resid_post \\
      --method ig --steps 20 -o attribution.json --plot attribution.png
"""

CARD_NOTES = """\
units (all at one layer and site):
  --neurons   neurons of --site (default mlp_post); at an MoE layer, mlp_post column e*I+u is
              unit u of expert e; at attn_head, heads
  --from-direction  one saved direction over the residual stream (its site, else resid_post)
views:
  weights  the tokens the unit's write vector promotes and suppresses: its down-projection
           column x the final norm's scale x W_U (a direction, or a neuron of a residual-width
           site: its logit lens); the norm's centring and division by each token's statistics
           are left out. No view for a head (it writes a subspace) or a router weight
  corpus   with --corpus: examples' scan (mean, std, share > 0, quantiles, histogram, the
           --examples top and bottom tokens, resumable in --work-dir), each context's tokens
           with the unit's value at each (read again with capture)
  causal   with --causal: the next-token loss change (nats) of zeroing the unit over the
           corpus' first --causal-windows windows, against --controls distinct random units
           of the site (seeded, drawn once for every card; every other unit when the site has
           fewer): their mean, std, p (one-sided: loss rising) and the unit's percentile
           (each unit's p is its own, uncorrected across the units of the card: with N
           units the output says so and gives the Bonferroni threshold 0.05 / N);
           and greedy continuations of --prompt (default: the first window's first tokens)
           with coefficient x the unit's largest |value| there added to it (a direction:
           coefficient x the mean activation norm), per --coefficients (default -1,1,2 for
           a unit, ±0.1,±0.2,±0.3 for a direction: below steer's warning)
"""

CARD_EXAMPLES = f"""\
examples:
  lazarus introspect card -m {DEMO} -l 2 -n 12,400
  lazarus introspect card -m {DEMO} -l 2 -n 12 --corpus corpus.txt --causal -o card.json
  lazarus introspect card -m {DEMO} -l 3 -n 10,20,154 --corpus corpus.txt -o cards.html
  lazarus introspect card -m {DEMO} -l 1 --site attn_head -n 0,3 --corpus corpus.txt
  lazarus introspect card -m {DEMO} -l 2 --from-direction difficulty.npz
"""
