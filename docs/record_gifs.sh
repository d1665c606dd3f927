#!/usr/bin/env bash
# The recorded GIFs of docs/recording.md (docs/record_*.gif): one per view, 960x540, each step held about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
R="explorer record --size 960x540 --fps 10 --quiet"
$R --view generate --steps 10 --seconds-per-step 0.8 --out docs/record_generate.gif \
  --caption 'Step {step}: chose “{token}” with p = {p:.2f} (rank {rank}); the distribution’s entropy is {entropy:.2f} bits'
$R --view attention --seconds-per-step 1.2 --out docs/record_attention.gif \
  --caption 'Q block {q_block} × KV tile {kv_block} ({tile}): {rescales} rows found a larger max and rescaled by α = exp(m_old − m_new)'
$R --view speculative --steps 8 --seconds-per-step 1.2 --out docs/record_speculative.gif \
  --prompt $'def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n' \
  --caption 'Step {step}: the draft proposed {drafted}, the target accepted {accepted} and added a {ending} token · α = {alpha:.2f}'
$R --view amp --steps 12 --seconds-per-step 1.0 --set init_scale_log2=22 --set growth_interval=3 --out docs/record_amp.gif \
  --caption 'Step {step}: loss scale 2^{scale_log2} → 2^{next_scale_log2}, {status}; unscaled, {flushed_unscaled:.2f}% of gradients would flush to zero'
