#!/usr/bin/env bash
# One GPU session's measurements, in one command (a lent GPU machine is short-lived and bare), in this order:
#   1. a painter's figures (bench/edit_speed.py), SD1.5-shaped random weights: adaptation wall time, warm edits
#      at 512² (100 and 50 steps), 1024², 2048², 4096² (default strategy), time to first preview, peak VRAM,
#      and the overhead ratio (guided sampling ÷ the same UNet calls bare); the SD1.5 LoRA entry's size and
#      read/verify/parse time (bench/lora_entry.py), the whole load of a stored fine-tune (bench/lora_load.py),
#      and the LoRA step's cost per view at 1, 2 and 4 views per step (bench/view_batch_speed.py),
#   2. large canvases: one big latent vs whole-view tiles vs SINE per tile at 2048² and 4096² (bench/canvas_speed.py),
#   3. fine-tune and sampling steps (bench/speed.py),
#   4. the shapes-world demo model trained with the `gpu` config in what time is left (skipped under 60 s).
#   5. SDXL (bench/sdxl_speed.py): s/step of the LoRA fine-tune and of guided sampling at 1024², peak VRAM,
#      for an SDXL-shaped random model (its ~5 GB of weights are built on the machine first): only when
#      PARTS names it, as one device session cannot hold it and the rest.
# Results go to $OUT (default bench/results/gpu). Each part has its own time limit, so a slow part
# cannot eat the next one's time. PARTS picks the parts (default: "edit canvas speed train"). Python
# packages the machine lacks are taken from .whl/ if present.
#
#   OUT=/tmp/gpu LIMIT_S=560 bash bench/gpu_run.sh
#   PARTS="sdxl train" LIMIT_S=560 bash bench/gpu_run.sh   # a later session: SDXL, then the demo model
#   SMOKE=1 bash bench/gpu_run.sh        # CPU rehearsal with tiny sizes (checks the script itself)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
LIMIT_S=${LIMIT_S:-560}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=backend:shared${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY=${PY:-python3}
start=$SECONDS
PARTS=${PARTS:-edit canvas speed train}
wants() { case " $PARTS " in *" $1 "*) return 0;; esac; return 1; }
part() { wants "$1" && return 0; echo "== part $1 skipped (PARTS=\"$PARTS\")"; return 1; }

if [ "${SMOKE:-0}" = 1 ]; then
  model=tiny; dev=cpu; speed_sizes="64"; canvas_sizes="128 256"; train="--config cpu --threads 2"
  edits="64x4 64x2 128x2"; ft="--ft-steps 2 --overhead-steps 4"; entry="--skip-merge --repeats 1"; vb_steps=2
  sdxl="--tiny --device cpu --ft-steps 2 --steps 2"
else
  nvidia-smi -L
  "$PY" -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)"
  if wants edit || wants canvas || wants speed; then
    "$PY" -c "from sine.tiny_models import make_sd15_shaped; make_sd15_shaped('/tmp/sd15')" 2>&1 | tail -2
  fi
  model=/tmp/sd15; dev=cuda; speed_sizes="512 1024"; canvas_sizes="2048 4096"; train="--config gpu"
  edits="512x100 512x50 1024x100 2048x100 4096x100"; ft=""; entry="--skip-merge"; vb_steps=10
  sdxl="--device cuda"
fi
echo "== setup done at $((SECONDS - start)) s"

if part edit; then
timeout 300 "$PY" bench/edit_speed.py --model "$model" --device "$dev" --edit $edits $ft \
  --out "$OUT/edit_speed.json" 2>&1 | grep -v "shards\|float32" | tee "$OUT/edit_speed.log"
timeout 120 "$PY" bench/lora_entry.py $entry --out "$OUT/lora_entry.json" 2>&1 | grep -E "entry_mb|_s\"" \
  | tee "$OUT/lora_entry.log"
timeout 90 "$PY" bench/lora_load.py --model "$model" --device "$dev" --out "$OUT/lora_load.json" 2>&1 | tail -1 \
  | tee "$OUT/lora_load.log"
timeout 90 "$PY" bench/view_batch_speed.py --model "$model" --device "$dev" --methods lora --batches 1 2 4 \
  --steps $vb_steps --warmup 2 --repeats 1 --out "$OUT/view_batch.json" 2>&1 | grep '"batch"' | tee "$OUT/view_batch.log"
echo "== edit speed, LoRA entry and views per step done at $((SECONDS - start)) s"
fi

if part canvas; then
timeout 150 "$PY" bench/canvas_speed.py --model "$model" --device "$dev" --sizes $canvas_sizes \
  --strategies single tiled tiled-per-tile --tile-sizes 0 1024 --out "$OUT/canvas_speed.json" 2>&1 | grep -v "shards\|float32" | tee "$OUT/canvas_speed.log"
echo "== canvas done at $((SECONDS - start)) s"
fi

if part speed; then
timeout 120 "$PY" bench/speed.py --model "$model" --device "$dev" --sizes $speed_sizes \
  --out "$OUT/speed.json" 2>&1 | grep -v "shards\|float32" | tee "$OUT/speed.log"
echo "== speed done at $((SECONDS - start)) s"
fi

if part sdxl; then
timeout 300 "$PY" bench/sdxl_speed.py $sdxl --out "$OUT/sdxl.json" 2>&1 | grep -v "shards\|float32" \
  | tee "$OUT/sdxl.log"
echo "== sdxl done at $((SECONDS - start)) s"
fi
part train || { echo "== all done at $((SECONDS - start)) s"; exit 0; }

left=$((LIMIT_S - (SECONDS - start) - 45))
if [ "$left" -lt 60 ]; then
  echo "== no time left to train the demo model ($left s)"; echo "== all done at $((SECONDS - start)) s"; exit 0
fi
minutes=$("$PY" -c "print(round(max(0.5, $left / 60), 2))")
echo "== training the demo model for $minutes min"
rm -rf /tmp/demo_model
timeout $((left + 40)) "$PY" -m sine.cli train-demo --out /tmp/demo_model $train --minutes "$minutes" \
  > "$OUT/train.log" 2>&1
echo "train rc $?"
grep -E "done|budget|encoded|saved|step [0-9]*000 " "$OUT/train.log" | tail -20
tar -C /tmp -czf "$OUT/demo_model.tgz" demo_model && ls -la "$OUT"
echo "== all done at $((SECONDS - start)) s"
