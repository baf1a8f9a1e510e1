"""Write the bundled demo sources (PNG + masks + assets.json) into `backend/sine/demo_assets/`.

Run: `python -m sine.shapes.demo_assets [OUT_DIR]`. The files are committed; this script is how they
were made, and the tests check that the committed files still match it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from .sources import Source, benchmark_sources

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "demo_assets"
N_ASSETS = 3


def describe(src: Source) -> dict:
    """JSON-ready description of one source: the files, prompts, objects and suggested edits."""
    scene = src.scene
    return {
        "file": f"{src.name}.png",
        "subject": src.subject,
        "style": "photo",
        "caption": src.caption,
        "objects": [
            {**asdict(o), "mask": f"{src.name}_object{i}.png"} for i, o in enumerate(scene.objects)
        ],
        "background": {"kind": scene.background.kind, "colors": list(scene.background.colors),
                       "mask": f"{src.name}_background.png"},
        "scene_seed": scene.seed,
        "edits": [{"prompt": e.prompt, "target": e.target, "index": e.index, "color": e.color} for e in src.edits],
    }


def _save_mask(mask: np.ndarray, path: Path) -> None:
    Image.fromarray(mask.astype(np.uint8) * 255, "L").save(path, optimize=True)


def write_assets(out: str | Path = DEFAULT_DIR, n: int = N_ASSETS) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = {}
    for src in benchmark_sources()[:n]:
        image, masks = src.scene.render()
        image.save(out / f"{src.name}.png", optimize=True)
        for i, m in enumerate(masks.objects):
            _save_mask(m, out / f"{src.name}_object{i}.png")
        _save_mask(masks.background, out / f"{src.name}_background.png")
        index[src.name] = describe(src)
    (out / "assets.json").write_text(json.dumps(index, indent=2) + "\n")
    return out


if __name__ == "__main__":
    print(write_assets(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_DIR))
