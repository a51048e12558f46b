#!/usr/bin/env bash
# The README's causal check on the demo model: save the quickstart's difficulty direction, then
# zero its top 6 neurons at layer 0 on held-out hard and easy problems (never seen in training
# nor by the probe), each against 200 draws of 6 random layer-0 neurons.
set -euo pipefail

mkdir -p causal-out
lazarus introspect probe -m lazarus:demo \
    --class-a "47*47=|67*83=|53*59=|38*76=|91*23=|64*58=|29*84=|73*36=" --label-a hard \
    --class-b "20+30=|10*10=|11+11=|40+50=|10+20=|30*10=|12+12=|20*20=" --label-b easy \
    --save-direction causal-out/difficulty.npz > /dev/null
lazarus introspect ablate -m lazarus:demo -l 0 --from-direction causal-out/difficulty.npz --top-k 6 \
    --prompts "34*84=:2856|83*22=:1826|59*92=:5428|99*91=:9009|60*12=:720|29*28=:812|24*47=:1128|30*45=:1350|14*59=:826|35*12=:420|89*66=:5874|71*20=:1420" \
    --controls 200 -o causal-out/ablate-hard.json
echo
lazarus introspect ablate -m lazarus:demo -l 0 --from-direction causal-out/difficulty.npz --top-k 6 \
    --prompts "1+5=:6|2+1=:3|2+2=:4|2+5=:7|3+7=:10|4+0=:4|0*0=:0|0*8=:0|1*5=:5|2*0=:0|3*0=:0|3*1=:3" \
    --controls 200 -o causal-out/ablate-easy.json
