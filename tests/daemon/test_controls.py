"""The painter's controls through a real `sine daemon` subprocess and a tiny real diffusers model:
strength and start reach the engine, several results come back in one `result`, the style picture is
fine-tuned and cached like the source."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from daemon_helpers import Client, DaemonProcess, make_image
from PIL import Image

from sine_protocol.frames import RGBAImage
from sine_protocol.messages import Mask, encode_message, image_blob, make_request, mask_blob

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def daemon(tiny_model: Path):
    root = Path(tempfile.mkdtemp(prefix="sd-"))
    proc = DaemonProcess(root, tiny_model).start()
    yield proc
    assert proc.stop() == 0, proc.output()


def _edit(client: Client, image, style=None, count: int = 1, seed: int = 3, **sampling) -> list:
    rid = uuid.uuid4().hex
    header = make_request("edit", rid, client.token, prompt="a green square", subject="square", seed=seed,
                          count=count, sampling={"steps": 4, **sampling},
                          finetune={"method": "lora", "steps": 2, "patch": True})
    blobs = [image_blob(image)] + ([image_blob(style, "style")] if style is not None else [])
    client.send(encode_message(header, blobs))
    return client.events_until_final(rid)


def test_several_results_with_strength_and_a_style_picture(daemon: DaemonProcess):
    image, style = make_image(32, 32, seed=40), make_image(24, 40, seed=41)
    with Client(daemon.endpoint, daemon.token) as client:
        events = _edit(client, image, style, count=3, seed=2**32 - 1, strength=0.5, style_weight=0.2)
        result = events[-1]
        assert result.type == "result", result.header
        assert sum(e.is_final for e in events) == 1
        assert [r["seed"] for r in result.header["results"]] == [2**32 - 1, 0, 1]
        assert [r["index"] for r in result.header["results"]] == [0, 1, 2]
        images = result.images
        assert len(images) == 3 and all(img.size == (32, 32) for img in images)
        assert len({img.data for img in images}) == 3  # three seeds, three pictures
        assert (result.header["cache_hit"], result.header["style_cache_hit"]) == (False, False)
        finetunes = [e for e in events if e.type == "progress" and e.header["phase"] == "finetune" and
                     e.header["step"] == 0]
        assert len(finetunes) == 2  # the source, then the style picture
        sample = [e for e in events if e.type == "progress" and e.header["phase"] == "sample"]
        assert sample[-1].header["step"] == sample[-1].header["total"] == 2  # strength 0.5 of 4 steps, one batch

        again = _edit(client, image, style, strength=0.5, style_weight=0.2)[-1]
        assert (again.header["cache_hit"], again.header["style_cache_hit"]) == (True, True)
        assert len(again.images) == 1 and "style_cache_hit" not in _edit(client, image)[-1].header


def test_a_style_weight_of_0_skips_the_style_finetune_and_keeps_the_pixels(daemon: DaemonProcess):
    """β₂ = 0 weighs the style model by 0: the style picture is not fine-tuned, and the result is the plain
    edit's (content weight 1 − v, as one fine-tuned model guides), byte for byte."""
    image, style = make_image(32, 32, seed=45), make_image(24, 40, seed=46)
    with Client(daemon.endpoint, daemon.token) as client:
        zero = _edit(client, image, style, style_weight=0.0)
        plain = _edit(client, image)[-1]
    assert zero[-1].type == "result" and plain.type == "result", (zero[-1].header, plain.header)
    starts = [e.header["total"] for e in zero if e.type == "progress" and e.header["phase"] == "finetune"
              and e.header["step"] == 0]
    assert starts == [2]  # the source's 2 steps, never the style picture's
    assert "style_cache_hit" not in zero[-1].header and plain.header["cache_hit"]
    assert zero[-1].images[0].data == plain.images[0].data


def test_engine_refusals_come_back_as_errors(daemon: DaemonProcess):
    with Client(daemon.endpoint, daemon.token) as client:
        final = _edit(client, make_image(32, 32, seed=42), count=2, start="inversion")[-1]
        assert final.type == "error" and final.header["code"] == "bad_request", final.header
        assert "one result" in final.header["message"]
        ok = _edit(client, make_image(32, 32, seed=42), strength=0.25, start="inversion")[-1]
        assert ok.type == "result" and len(ok.images) == 1, ok.header


def test_a_request_without_strength_runs_the_painters_default_from_the_noised_source(daemon: DaemonProcess):
    image = make_image(32, 32, seed=43)
    with Client(daemon.endpoint, daemon.token) as client:
        default = _edit(client, image, steps=10)
        sample = [e for e in default if e.type == "progress" and e.header["phase"] == "sample"]
        assert sample[-1].header["step"] == sample[-1].header["total"] == 6  # round(0.6 × 10) steps
        explicit = _edit(client, image, steps=10, strength=0.6, start="noise")[-1]
        paper = _edit(client, image, steps=10, strength=1.0)[-1]
        assert default[-1].images[0].data == explicit.images[0].data  # the source noised to 0.6, same draw
        assert paper.images[0].data != default[-1].images[0].data


def test_the_cli_and_the_daemon_give_the_same_pixels_for_the_same_edit(daemon: DaemonProcess, tiny_model: Path,
                                                                       tmp_path: Path):
    """Same picture, selection, seeds and settings through `sine edit` and the daemon: the same bytes. Seeds
    from the top of the protocol's range wrap alike; a scaled result with a soft selection and transparency
    is finished alike (the CLI fine-tuned with the seed, and resized source and mask with other filters)."""
    pixels = np.frombuffer(make_image(32, 32, seed=44).data, np.uint8).reshape(32, 32, 4).copy()
    pixels[:6, :, 3] = 0
    pixels[6:10, :, 3] = 1
    pixels[10:14, :, 3] = 140
    selection = np.zeros((32, 32), np.uint8)
    selection[4:28, 4:20] = 255
    selection[4:28, 20:28] = 120
    Image.fromarray(pixels, "RGBA").save(tmp_path / "source.png")
    Image.fromarray(selection, "L").save(tmp_path / "mask.png")
    seed, output = 2**32 - 1, (40, 48)
    proc = subprocess.run(
        [sys.executable, "-m", "sine.cli", "edit", str(tmp_path / "source.png"), "--prompt", "a green square",
         "--subject", "square", "--model", str(tiny_model), "--method", "lora", "--finetune-steps", "2", "--patch",
         "--quality", "full", "--steps", "4", "--strength", "1", "--seed", str(seed), "--count", "2",
         "--mask", str(tmp_path / "mask.png"), "--width", str(output[0]), "--height", str(output[1]),
         "--device", "cpu", "--out", str(tmp_path / "cli.png")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "SINE_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    with Client(daemon.endpoint, daemon.token) as client:
        rid = uuid.uuid4().hex
        header = make_request("edit", rid, client.token, prompt="a green square", subject="square", seed=seed,
                              count=2, sampling={"steps": 4, "strength": 1.0},
                              finetune={"method": "lora", "steps": 2, "patch": True},
                              output={"width": output[0], "height": output[1]})
        client.send(encode_message(header, [image_blob(RGBAImage(32, 32, pixels.tobytes())),
                                            mask_blob(Mask(32, 32, selection.tobytes()))]))
        result = client.events_until_final(rid)[-1]
    assert result.type == "result", result.header
    for k, image in enumerate(result.images, 1):
        cli = Image.open(tmp_path / f"cli-{k}.png").convert("RGBA")
        assert cli.size == image.size == output
        assert cli.tobytes() == image.data, f"result {k} differs between the CLI and the daemon"
