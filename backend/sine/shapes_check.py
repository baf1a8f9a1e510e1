"""Is a picture from the demo model's "shapes world"? A cheap test, so `sine edit` can warn before a
photo is edited with the demo model (which only knows flat coloured shapes: a photo comes out as noise).

The world's pictures (sine.shapes.world) are flat: a few named colours, a two-colour gradient, or one
colour scaled by noise. Seen at 64×64 (the demo model's size), the number of colour bins (16 levels
per channel) that cover 95 % of the pixels tells them from photos: measured on 300 random scenes at
64×64 and 512×384, at most 31 (gradients; plain and striped ≤ 5); photo-like pictures (sine.synthetic)
233–425. The threshold sits between. (The distance to the named colours does not separate them: blends
of ten colours that span the RGB cube come within reach of almost every photo pixel.) Numpy on a
64×64 thumbnail: milliseconds, no torch.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

THUMB = 64
MAX_COLOURS = 64
INSTALL_HINT = "python3 installer/install.py --model stable-diffusion-v1-5/stable-diffusion-v1-5"
# The daemon sends this to the plug-ins (sine.job_notes); `sine edit` adds how to pass the model.
DEMO_PICTURE_NOTE = ("the demo model only knows flat coloured shapes, so on this picture its edit will be "
                     f"noise; install a real model with `{INSTALL_HINT}`")
DEMO_MODEL_NOTE = f"note: {DEMO_PICTURE_NOTE} and pass it with --model"


def colour_count(image: Image.Image, share: float = 0.95) -> int:
    """Bins of 16 levels per channel that cover `share` of the pixels of the 64×64 thumbnail (alpha over white)."""
    rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    q = np.asarray(flat.resize((THUMB, THUMB), Image.Resampling.BOX), dtype=np.int64).reshape(-1, 3) // 16
    _, counts = np.unique(q[:, 0] * 256 + q[:, 1] * 16 + q[:, 2], return_counts=True)
    covered = np.cumsum(np.sort(counts)[::-1])
    return int(np.searchsorted(covered, share * len(q)) + 1)


def looks_like_shapes_world(image: Image.Image) -> bool:
    return colour_count(image) <= MAX_COLOURS
