"""The SINE Edit docker in a real Krita 5.2 (Xvfb, trixie root) against the real daemon.

Krita opens a PNG; the plugin's automation hook (SINE_KRITA_AUTOTEST) shows the docker, fills the
panel and clicks its Edit button, waits for the result layer, saves a .kra, dumps every layer and
takes a screenshot. Here on the host we check the saved document, that the new layer holds exactly
the daemon's own output for the same request, and that the source layer is byte-identical.
"""

from __future__ import annotations

import json
import shutil
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from krita_host import REPO, lib_sh

from sine_protocol import RGBAImage

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

ARTIFACTS = REPO / "tests" / "artifacts"
WIDTH, HEIGHT = 96, 64
SETTINGS = {
    "prompt": "make the circle green",
    "subject": "circle",
    "style": "photo",
    "seed": 7,
    "steps": 6,
    "guidance": 7.5,
    "v": 0.7,
    "k": 400,
    "method": "lora",
    "finetune_steps": 4,
}


def make_source_png(path: Path) -> bytes:
    """A red circle on a blue-to-yellow gradient (RGB PNG); returns its RGBA bytes."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (WIDTH, HEIGHT))
    for x in range(WIDTH):
        ImageDraw.Draw(image).line([(x, 0), (x, HEIGHT)], fill=(x * 2, x * 2, 255 - x * 2))
    ImageDraw.Draw(image).ellipse([20, 12, 60, 52], fill=(220, 30, 30))
    image.save(path)
    return image.convert("RGBA").tobytes()


def run_krita(home, job: Path, endpoint: str, timeout_s: int = 400) -> tuple[int, str]:
    env = {
        "KHOME": home.path,
        "KJOB": home.inside(job),
        "KENDPOINT": endpoint,
        "KTIMEOUT": str(timeout_s),
    }
    snippet = (
        'RC_ENV=(SINE_KRITA_AUTOTEST="$KJOB" SINE_ENDPOINT="$KENDPOINT"); '
        'in_root "$KHOME" timeout -k 10 "$KTIMEOUT" xvfb-run -a -s "-screen 0 1280x960x24" krita --nosplash'
    )
    done = lib_sh(snippet, env, timeout=timeout_s + 30)
    return done.returncode, done.stdout + done.stderr


def daemon_edit(daemon, source: bytes):
    """The daemon's own answer to the request the panel sends for SETTINGS."""
    client = daemon.client()
    try:
        rid = client.submit_edit(
            RGBAImage(WIDTH, HEIGHT, source), SETTINGS["prompt"], subject=SETTINGS["subject"],
            style=SETTINGS["style"], seed=SETTINGS["seed"],
            sampling={"steps": SETTINGS["steps"], "w": SETTINGS["guidance"], "v": SETTINGS["v"], "k": SETTINGS["k"]},
            finetune={"method": SETTINGS["method"], "steps": SETTINGS["finetune_steps"], "patch": True},
            output_size=(WIDTH, HEIGHT),
        )  # fmt: skip
        return client.wait_result(rid, timeout=180)
    finally:
        client.close()


def kra_layers(kra: Path) -> tuple[tuple[int, int], list[dict[str, str]]]:
    """Canvas size and top-level layer attributes from the saved .kra's maindoc.xml."""
    with zipfile.ZipFile(kra) as z:
        root = ET.fromstring(z.read("maindoc.xml"))
    image = next(el for el in root.iter() if el.tag.endswith("IMAGE"))
    layers = next(el for el in image if el.tag.endswith("layers"))
    return (int(image.get("width")), int(image.get("height"))), [dict(el.attrib) for el in layers]


def test_docker_edit_in_real_krita(krita_home, sine_daemon):
    work = krita_home.host / "work"
    work.mkdir(exist_ok=True)
    source = make_source_png(work / "source.png")
    out = work / "out"
    shot = work / "krita-panel.png"
    job = work / "job.json"
    job.write_text(json.dumps({
        "input": krita_home.inside(work / "source.png"),
        "out_dir": krita_home.inside(out),
        "screenshot": krita_home.inside(shot),
        "settings": SETTINGS,
        "connect_timeout_s": 60,
        "edit_timeout_s": 240,
    }))
    krita_home.chown()
    daemon_edit(sine_daemon, source)  # warm the fine-tune cache for this source

    t0 = time.monotonic()
    rc, log = run_krita(krita_home, job, sine_daemon.endpoint)
    elapsed = time.monotonic() - t0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "krita-run.log").write_text(log)
    report_file = out / "result.json"
    assert report_file.exists(), f"no result from Krita (rc={rc}, {elapsed:.0f} s):\n{log[-4000:]}"
    report = json.loads(report_file.read_text())
    (ARTIFACTS / "krita-result.json").write_text(json.dumps(report, indent=1))
    if shot.exists():
        shutil.copyfile(shot, ARTIFACTS / "krita-panel.png")
    assert report["ok"], f"{report.get('error')}\n{log[-3000:]}"

    # The panel went through its phases and talked to the real daemon.
    assert report["connection"].startswith("daemon ") and " on CPU" in report["connection"]
    seen = " | ".join(report["progress_log"])
    assert f"sampling {SETTINGS['steps']}/{SETTINGS['steps']}" in seen, seen

    # The document: one new layer, directly above the source, named after prompt and seed.
    before, after = report["layers_before"], report["layers_after"]
    assert len(after) == len(before) + 1
    src_index = next(layer["index"] for layer in before if layer["name"] == report["active_node"])
    new = after[src_index + 1]
    assert new["name"] == f"SINE: {SETTINGS['prompt']} (seed {SETTINGS['seed']})"
    assert new["type"] == "paintlayer"
    assert new["bounds"] == [0, 0, WIDTH, HEIGHT]

    # The saved .kra has that layer at (0, 0) of a canvas of the source's size.
    size, kra = kra_layers(out / "result.kra")
    assert size == (WIDTH, HEIGHT)
    kra_new = [layer for layer in kra if layer.get("name") == new["name"]]
    assert len(kra_new) == 1 and kra_new[0].get("x") == "0" and kra_new[0].get("y") == "0"

    # Its pixels are exactly what the daemon gives for the same request (now a cache hit, like
    # Krita's was: the cache was warmed first, because a fresh fine-tune and a cached one may
    # differ in the last bit).
    assert report["result_header"]["cache_hit"] is True
    layer_pixels = (out / Path(new["raw"]).name).read_bytes()
    result = daemon_edit(sine_daemon, source)
    assert result.header["cache_hit"] is True
    assert result.image.size == (WIDTH, HEIGHT)
    assert layer_pixels == result.image.data
    assert layer_pixels != source

    # The source layer is untouched: equal to the PNG, before and after the edit.
    src_before = (out / Path(before[src_index]["raw"]).name).read_bytes()
    src_after = (out / Path(after[src_index]["raw"]).name).read_bytes()
    assert src_before == source and src_after == source

    # A screenshot of the window with the docker, for people (and the README).
    assert report.get("screenshot") is True and shot.stat().st_size > 20_000
    from PIL import Image

    with Image.open(shot) as im:
        assert im.width >= 800 and im.height >= 600
    print(f"krita run {elapsed:.1f} s; edit clicked at {report['edit_clicked_s']} s; total {report['total_s']} s")
