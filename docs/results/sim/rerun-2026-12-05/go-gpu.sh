#!/bin/bash
# #19 at-scale re-run with the current simulator (commit in each file's meta), 2026-12-05; two streams in parallel.
source "$(dirname "$0")/common.sh"
S="--slo ttft_ms=2000,tpot_ms=100"
G="--cost gpu-h100-llama3-8b"
syn=/tmp/sim22/azure-conv-tiled-6h-SYNTHETIC.csv
stream_a() {
  $T sim --trace azure-conv $G --replicas 1 --rate-scale 1.5 --num-requests 1500 --policy least_loaded $S --out $O/gpu-scaling-1.json
  $T sim --trace azure-conv $G --replicas 4 --rate-scale 6.0 --num-requests 3000 --policy least_loaded $S --out $O/gpu-scaling-4.json
  $T sim --trace azure-conv $G --replicas 16 --rate-scale 24.0 --num-requests 6000 --policy least_loaded $S --out $O/gpu-scaling-16.json
  $T sim --trace $syn $G --replicas 64 --rate-scale 96 --num-requests 29000 --policy least_loaded $S --out $O/gpu-scaling-64-long.json
  $T sim --trace $syn $G --replicas 256 --rate-scale 384 --policy least_loaded $S --out $O/gpu-scaling-256.json
  $T sim --trace mooncake $G --replicas 16 --rate-scale 3.2 --num-requests 3000 --policy round_robin,least_loaded,prefix_affinity --out $O/gpu-mooncake-16-rate3.2.json
  $T sim --trace mooncake $G --replicas 16 --rate-scale 3.2 --num-requests 3000 --policy prefix_affinity --index-blocks 24766 --out $O/gpu-mooncake-16-rate3.2-prefix_affinity-index24766.json
}
stream_b() {
  $T sim --trace mooncake $G --replicas 16 --rate-scale 9.6 --num-requests 3000 --policy round_robin,least_loaded,prefix_affinity --out $O/gpu-mooncake-16.json
  $T sim --trace mooncake $G --replicas 16 --rate-scale 9.6 --num-requests 3000 --policy prefix_affinity --index-blocks 24766 --out $O/gpu-mooncake-16-prefix_affinity-index24766.json
  $T sim --trace mooncake $G --replicas 64 --rate-scale 38.4 --num-requests 12000 --policy round_robin,least_loaded,prefix_affinity --out $O/gpu-mooncake-64.json
  $T sim --trace mooncake $G --replicas 64 --rate-scale 38.4 --num-requests 12000 --policy prefix_affinity --index-blocks 24766 --out $O/gpu-mooncake-64-prefix_affinity-index24766.json
  $T sim --trace mooncake $G --replicas 64 --rate-scale 12.8 --num-requests 12000 --policy round_robin,least_loaded,prefix_affinity --out $O/gpu-mooncake-64-rate12.8.json
  $T sim --trace mooncake $G --replicas 64 --rate-scale 12.8 --num-requests 12000 --policy prefix_affinity --index-blocks 24766 --out $O/gpu-mooncake-64-rate12.8-prefix_affinity-index24766.json
}
date -u
stream_a > /work/runs/sim22/a.log 2>&1 &
stream_b > /work/runs/sim22/b.log 2>&1 &
wait
date -u
