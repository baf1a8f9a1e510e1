#!/usr/bin/env bash
# One GPU session's measurements, in one command (a lent GPU machine is short-lived and bare). The parts,
# in this order, each only when PARTS names it (default: all but sdxl and vae):
#   edit     a painter's figures (bench/edit_speed.py), SD1.5-shaped random weights: adaptation wall time,
#            warm edits at 512² (100 and 50 steps), 1024², 2048², 4096² (default strategy), time to first
#            preview, peak VRAM, and the overhead ratio (guided sampling ÷ the same UNet calls bare),
#   sdxl     SDXL (bench/sdxl_speed.py): s/step of the LoRA fine-tune and of guided sampling at 1024², peak
#            VRAM, for an SDXL-shaped random model (its ~5 GB of weights are built on the machine first),
#   compile  the same warm 512² edits with the UNet calls compiled and graphed ($SINE_COMPILE=1), and the
#            first call's cost (compile + capture: the overhead line's "first sampling"),
#   entry    the SD1.5 LoRA entry's size and read/verify/parse time (bench/lora_entry.py), the whole load
#            of a stored fine-tune (bench/lora_load.py), the LoRA step's cost at 1, 2 and 4 views per step,
#   vae      demo model v3: fresh VAEs with 4- and 8-channel latents, 2.5 min each, judged on stars (bench/vae_shape_probe.py),
#   canvas   one big latent vs whole-view tiles vs SINE per tile at 2048² and 4096² (bench/canvas_speed.py),
#   speed    fine-tune and sampling steps (bench/speed.py),
#   train    the shapes-world demo model trained with the `gpu` config in what time is left (skipped under 60 s),
#            or, with DEMO_FROM, an earlier session's model trained on; then its held-out evaluation.
#            TRAIN_ARGS adds `sine train-demo` options (e.g. "--vae-latent-channels 8").
# Results go to $OUT (default bench/results/gpu); with TAR set, $OUT is also packed into that one file after
# each part (a device call brings back at most 8 files). Each part has its own time limit, cut to what is
# left of LIMIT_S, so a slow part cannot eat the next one's time. Python packages the machine lacks are
# taken from .whl/ if present (git-ignored; carried with the device call). The H200 image has torch,
# peft, accelerate and huggingface_hub 1.33 (enough for diffusers and transformers; hub 2.x would need
# httpx2, which it lacks) but no diffusers; the wheels prepared on 2026-11-30, with this repo's versions:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 -d .whl diffusers==0.42.1 transformers==5.24.0 peft==0.21.2 tokenizers==0.23.3
# (rehearsed here with huggingface_hub 1.33.0 in front of the venv's 2.4.0: SMOKE=1, every part ran).
#
#   OUT=/tmp/gpu LIMIT_S=560 bash bench/gpu_run.sh
#   PARTS="edit sdxl compile entry" TAR=/x/results.tgz LIMIT_S=560 bash bench/gpu_run.sh
#   PARTS=train DEMO_FROM=.gpu/demo_model.tgz TAR=/x/r.tgz bash bench/gpu_run.sh  # .gpu git-ignored, carried
#   SMOKE=1 PARTS="edit sdxl compile entry canvas speed train" bash bench/gpu_run.sh   # CPU rehearsal, tiny sizes
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
LIMIT_S=${LIMIT_S:-560}
mkdir -p "$OUT"
start=$SECONDS
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=backend:shared${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY=${PY:-python3}
PARTS=${PARTS:-edit compile entry canvas speed train}
wants() { case " $PARTS " in *" $1 "*) return 0;; esac; return 1; }
part() { wants "$1" && return 0; echo "== part $1 skipped (PARTS=\"$PARTS\")"; return 1; }
# `within LIMIT cmd…`: timeout at LIMIT s or at what is left of LIMIT_S (less a margin), skipped under 20 s
within() {
  local cap=$((LIMIT_S - (SECONDS - start) - 15)) lim=$1; shift
  [ "$cap" -lt "$lim" ] && lim=$cap
  if [ "$lim" -lt 20 ]; then echo "== no time left for: $*"; return 124; fi
  timeout "$lim" "$@"
}
save() { [ -n "${TAR:-}" ] && tar -C "$OUT" -czf "$TAR" . ; echo "== saved at $((SECONDS - start)) s"; }

if [ "${SMOKE:-0}" = 1 ]; then
  model=tiny; dev=cpu; speed_sizes="64"; canvas_sizes="128 256"; train="--config cpu --threads 2"
  edits="64x4 64x2 128x2"; ft="--ft-steps 2 --overhead-steps 4"; entry="--skip-merge --repeats 1"; vb_steps=2
  sdxl="--tiny --device cpu --ft-steps 3 --steps 3"; compile_ft="--ft-steps 2 --overhead-steps 4"; compile_edits="64x4"; eval_n=4
  vae_minutes=0.1; vae_every=2; vae_limit=60
else
  nvidia-smi -L
  "$PY" -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)"
  if wants edit || wants compile || wants entry || wants canvas || wants speed; then
    "$PY" -c "from sine.tiny_models import make_sd15_shaped; make_sd15_shaped('/tmp/sd15')" 2>&1 | tail -2
  fi
  model=/tmp/sd15; dev=cuda; speed_sizes="512 1024"; canvas_sizes="2048 4096"; train="--config gpu"
  edits="512x100 512x50 1024x100 2048x100 4096x50"; ft=""; entry="--skip-merge"; vb_steps=10
  sdxl="--device cuda"; compile_ft="--ft-steps 4"; compile_edits="512x100 512x50"; eval_n=128
  vae_minutes=2.5; vae_every=500; vae_limit=200
fi
echo "== setup done at $((SECONDS - start)) s"
filter() { grep --line-buffered -v "shards\|float32"; }

if part edit; then
  within 240 "$PY" bench/edit_speed.py --model "$model" --device "$dev" --edit $edits $ft \
    --out "$OUT/edit_speed.json" 2>&1 | filter | tee "$OUT/edit_speed.log"
  save
fi

if part sdxl; then
  within 200 "$PY" bench/sdxl_speed.py $sdxl --out "$OUT/sdxl.json" 2>&1 | filter | tee "$OUT/sdxl.log"
  save
fi

if part compile; then
  # the overhead line's "first sampling" is the compile and capture a painter would wait for, once per size
  SINE_COMPILE=1 within 200 "$PY" bench/edit_speed.py --model "$model" --device "$dev" --edit $compile_edits \
    $compile_ft --out "$OUT/edit_speed_compiled.json" 2>&1 | filter | tee "$OUT/edit_speed_compiled.log"
  save
fi

if part entry; then
  within 120 "$PY" bench/lora_entry.py $entry --out "$OUT/lora_entry.json" 2>&1 | grep -E "entry_mb|_s\"" \
    | tee "$OUT/lora_entry.log"
  within 90 "$PY" bench/lora_load.py --model "$model" --device "$dev" --out "$OUT/lora_load.json" 2>&1 | tail -1 \
    | tee "$OUT/lora_load.log"
  within 90 "$PY" bench/view_batch_speed.py --model "$model" --device "$dev" --methods lora --batches 1 2 4 \
    --steps $vb_steps --warmup 2 --repeats 1 --out "$OUT/view_batch.json" 2>&1 | grep '"batch"' \
    | tee "$OUT/view_batch.log"
  save
fi

if part vae; then
  # demo model v3: does a VAE with an 8-channel latent keep the stars a 4-channel one loses? Both from scratch
  for channels in 4 8; do
    within $vae_limit "$PY" bench/vae_shape_probe.py --start fresh --latent-channels $channels --device "$dev" \
      --minutes $vae_minutes --batch 64 --every $vae_every --threads 8 --out "$OUT/vae_fresh_latent$channels.json" \
      2>&1 | grep -v "Loading" | tail -3 | tee "$OUT/vae_fresh_latent$channels.log"
  done
  save
fi

if part canvas; then
  within 150 "$PY" bench/canvas_speed.py --model "$model" --device "$dev" --sizes $canvas_sizes \
    --strategies single tiled tiled-per-tile --tile-sizes 0 1024 --out "$OUT/canvas_speed.json" 2>&1 | filter \
    | tee "$OUT/canvas_speed.log"
  save
fi

if part speed; then
  within 120 "$PY" bench/speed.py --model "$model" --device "$dev" --sizes $speed_sizes \
    --out "$OUT/speed.json" 2>&1 | filter | tee "$OUT/speed.log"
  save
fi

part train || { echo "== all done at $((SECONDS - start)) s"; exit 0; }
# DEMO_FROM: a demo-model folder or .tgz from an earlier session (carried along): stage 2 resumes on it, so
# the UNet's training adds up over sessions; without it the model is trained from scratch. Either way the
# held-out evaluation (python -m sine.shapes.evaluate, 90 s kept for it) lands beside the model.
left=$((LIMIT_S - (SECONDS - start) - 45 - 90))
if [ "$left" -lt 60 ]; then
  echo "== no time left to train the demo model ($left s)"; echo "== all done at $((SECONDS - start)) s"; exit 0
fi
minutes=$("$PY" -c "print(round(max(0.5, $left / 60), 2))")
rm -rf /tmp/demo_model
stage=""
if [ -n "${DEMO_FROM:-}" ]; then  # a .tgz this script made (its top folder is demo_model/) or a model folder
  echo "== resuming the demo model from $DEMO_FROM for $minutes min"
  if [ -f "$DEMO_FROM" ]; then tar -C /tmp -xzf "$DEMO_FROM"; else cp -r "$DEMO_FROM" /tmp/demo_model; fi
  stage="--stage resume --unet-steps 100000000"  # the clock, not a step count, ends a resumed round
else
  echo "== training the demo model for $minutes min"
fi
timeout $((left + 40)) "$PY" -m sine.cli train-demo --out /tmp/demo_model $train ${TRAIN_ARGS:-} $stage \
  --minutes "$minutes" > "$OUT/train.log" 2>&1
echo "train rc $?"
grep -E "done|budget|encoded|saved|resume|step [0-9]*000 " "$OUT/train.log" | tail -20
if [ -f /tmp/demo_model/training_info.json ]; then
  timeout 90 "$PY" -m sine.shapes.evaluate /tmp/demo_model --n $eval_n > /tmp/demo_model/evaluation.json \
    2> "$OUT/evaluate.log"
  echo "evaluate rc $?"; grep -A12 '"samples"' /tmp/demo_model/evaluation.json
  tar -C /tmp -czf "$OUT/demo_model.tgz" demo_model && ls -la "$OUT"
fi
save
echo "== all done at $((SECONDS - start)) s"
