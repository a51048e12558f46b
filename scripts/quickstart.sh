#!/usr/bin/env bash
# The spec's workflow on the built-in demo model, offline: train a probe that separates hard
# from easy arithmetic (prompts of equal length, so that length cannot give the answer away),
# save its direction, then look at how that direction's top neurons fire on new prompts.
set -euo pipefail

mkdir -p quickstart-out
lazarus introspect probe -m lazarus:demo \
    --class-a "47*47=|67*83=|53*59=|38*76=|91*23=|64*58=|29*84=|73*36=" --label-a hard \
    --class-b "20+30=|10*10=|11+11=|40+50=|10+20=|30*10=|12+12=|20*20=" --label-b easy \
    --save-direction quickstart-out/difficulty.npz
echo
lazarus introspect neurons -m lazarus:demo -l 0 \
    --prompts "2+3=|4*2=|10*10=|45*45=|58*67=|94*39=" \
    --from-direction quickstart-out/difficulty.npz --top-k 6 \
    --labels "easy|easy|easy|hard|hard|hard" -o quickstart-out/neurons.json
