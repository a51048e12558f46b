"""Help texts of `ablate` and `steer` (plain strings: `--help` imports nothing heavy)."""

from __future__ import annotations

DEMO = "lazarus:demo"

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
  p = (1 + #{draws with effect >= the chosen neurons' effect}) / (1 + N), z = (effect - mean of
  the draws) / their std (ddof=1)
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
  scale = the mean L2 norm of the site's vectors at the layer over every token of the
  prompts (coefficient 1 adds a vector as long as a typical activation); --absolute: 1
  --neurons id:value,...   adds coefficient x value to each neuron, nothing else (absolute)
coefficient 0 is always run: it is the unmodified model, and changes are against it
measured per prompt and coefficient: the continuation, and for each --tokens word the change
  in its log-probability right after the prompt (its tokens teacher-forced, summed; nats)
"""

STEER_EXAMPLES = f"""\
examples:
  lazarus introspect steer -m {DEMO} -p "47*47=|2+3=" --direction difficulty.npz \\
      --compare -4,-2,2,4 --tokens "2|5"
  lazarus introspect steer -m {DEMO} -p "12+" -l 1 --positive "47*47=|67*83=" \\
      --negative "2+3=|4*2=" --coefficient 2 --max-tokens 10 -o steer.json
"""
