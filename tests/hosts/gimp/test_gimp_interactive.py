"""The INTERACTIVE path inside a real GIMP 3 GUI (Xvfb): settings dialog, progress window, Cancel.

Nobody can click in CI, so the plug-in's dialogs take scripted answers from the JSON file named
by $SINE_GIMP_AUTOTEST (written by the batch driver before each case); everything else is the
code a user runs: GimpUi.ProcedureDialog, the progress window fed by the real daemon, its Cancel
button, the result layer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

W, H = 48, 32
SCREEN = (800, 600)  # a small screen: the dialogs must fit it
ARGS = {"prompt": "a yellow triangle", "subject": "shape", "seed": 5, "steps": 3, "finetune-steps": 2}
LONG_EDIT = {"finetune-steps": 20000}  # many minutes of fine-tuning: cancelled, or the daemon killed, long before


def picture(salt: int) -> Image.Image:
    return Image.frombytes(
        "RGB", (W, H), bytes(v for y in range(H) for x in range(W) for v in (x * 5, y * 7, salt))
    )


@pytest.fixture(scope="module")
def interactive_session(gimp_home, daemon_env, run_gimp) -> dict[str, dict]:
    work = gimp_home.host / "work"
    picture(1).save(work / "ok.png")
    picture(2).save(work / "cancel.png")
    cases = [
        {"name": "dialog-ok", "input": gimp_home.inside(work / "ok.png"), "out": gimp_home.inside(work / "dialog-ok"),
         "interactive": True, "autotest": {"dialog": "ok"}, "args": ARGS},
        {"name": "dialog-again", "input": gimp_home.inside(work / "ok.png"), "out": gimp_home.inside(work / "dialog-again"),
         "interactive": True, "autotest": {"dialog": "cancel", "weights": gimp_home.inside(work / "dialog-again" / "shown.json")},
         "args": {}},  # Filters > SINE again, nothing passed: the dialog shows what the last edit used
        {"name": "repeat", "input": gimp_home.inside(work / "ok.png"), "out": gimp_home.inside(work / "repeat"),
         "repeat": True, "args": {}},  # Filters > Repeat: the last edit's values, no dialog
        {"name": "dialog-cancel", "input": gimp_home.inside(work / "ok.png"),
         "out": gimp_home.inside(work / "dialog-cancel"), "interactive": True,
         "autotest": {"dialog": "cancel", "screenshot": gimp_home.inside(work / "dialog-cancel" / "dialog.png"),
                      "move": {"style-weight": 0.9},  # the painter drags the style weight up...
                      "expand_advanced": True,  # ...and opens the Advanced settings, on a 1024x600 screen
                      "weights": gimp_home.inside(work / "dialog-cancel" / "weights.json")},
         "args": ARGS},
        {"name": "progress-cancel", "input": gimp_home.inside(work / "cancel.png"),
         "out": gimp_home.inside(work / "progress-cancel"), "interactive": True,
         "autotest": {"dialog": "ok", "cancel_at_step": 1}, "args": {**ARGS, **LONG_EDIT}},
        {"name": "close-image", "input": gimp_home.inside(work / "cancel.png"),
         "out": gimp_home.inside(work / "close-image"), "interactive": True,
         "autotest": {"dialog": "ok", "close_image_at_step": 1}, "args": {**ARGS, **LONG_EDIT, "seed": 6}},
        {"name": "scale-image", "input": gimp_home.inside(work / "ok.png"),
         "out": gimp_home.inside(work / "scale-image"), "interactive": True,
         "autotest": {"dialog": "ok", "scale_image_at_step": 1}, "args": {**ARGS, "seed": 8}},
    ]  # fmt: skip
    env = {
        **daemon_env,
        "SINE_GIMP_AUTOTEST": gimp_home.inside(work / "autotest.json"),
    }
    run = run_gimp(gimp_home, cases, env, gui=True, screen=f"{SCREEN[0]}x{SCREEN[1]}x24")
    print(f"GIMP GUI session ({len(cases)} interactive runs): {run.wall_s:.1f} s")
    assert run.returncode == 0, run.log[-4000:]
    (work / "close-image" / "gimp.log").write_text(run.log)
    shot = work / "dialog-cancel" / "dialog.png"
    if shot.exists():  # what a painter sees: kept for people to look at
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, ARTIFACTS / "gimp-dialog.png")
    return {c["name"]: json.loads((work / c["name"] / "result.json").read_text()) for c in cases}


def test_dialog_ok_runs_the_edit_into_a_new_layer(interactive_session) -> None:
    record = interactive_session["dialog-ok"]
    assert record["status"] == "success", record["message"]
    assert [layer["name"] for layer in record["layers"]] == ["SINE: a yellow triangle (seed 5)", "Background"]
    assert record["layers"][0]["size"] == [W, H] and record["layers"][0]["offsets"] == [0, 0]


def test_the_dialog_opens_with_the_last_edits_values(gimp_home, interactive_session) -> None:
    shown = json.loads((gimp_home.host / "work" / "dialog-again" / "shown.json").read_text())
    assert shown["prompt"] == ARGS["prompt"] and shown["seed"] == ARGS["seed"], shown


def test_filters_repeat_runs_the_last_edit_again(interactive_session) -> None:
    """Filters > Repeat (RUN_WITH_LAST_VALS) after the dialog's edit: the same edit, without a dialog."""
    record = interactive_session["repeat"]
    assert record["status"] == "success", record["message"]
    assert [layer["name"] for layer in record["layers"]] == ["SINE: a yellow triangle (seed 5)", "Background"]


def test_dialog_cancel_changes_nothing(interactive_session) -> None:
    record = interactive_session["dialog-cancel"]
    assert record["status"] == "cancel"
    with Image.open(ARTIFACTS / "gimp-dialog.png") as shot:  # the dialog was drawn (with every argument)
        assert shot.width > 200 and shot.height > 200
    assert [layer["name"] for layer in record["layers"]] == ["Background"]


def test_the_dialog_with_advanced_open_fits_a_small_screen(gimp_home, interactive_session) -> None:
    """Advanced settings open on 800x600: the dialog (OK and Cancel at its bottom) stays on the screen;
    the advanced fields scroll inside it."""
    shown = json.loads((gimp_home.host / "work" / "dialog-cancel" / "weights.json").read_text())
    assert shown["advanced_expanded"] is True and shown["screen"] == list(SCREEN)
    assert shown["window"][1] <= SCREEN[1] - 40, shown  # room left for a title bar / panel
    # The form scrolls there, and a scrollbar says so (GTK's overlay one is drawn only under the pointer).
    assert shown["form_scrolls"] is True and shown["scrollbar_always_drawn"] is True, shown
    with Image.open(ARTIFACTS / "gimp-dialog.png") as shot:
        assert shot.height == shown["window"][1]


def test_raising_the_style_weight_in_the_dialog_lowers_the_content_weight(gimp_home, interactive_session) -> None:
    """...and the content weight gives way, so style + content never pass the daemon's limit of 1."""
    weights = json.loads((gimp_home.host / "work" / "dialog-cancel" / "weights.json").read_text())
    assert weights["style-weight"] == pytest.approx(0.9)
    assert weights["content-weight"] == pytest.approx(0.1)


def test_cancel_button_stops_the_daemon_job(interactive_session, sine_daemon) -> None:
    record = interactive_session["progress-cancel"]
    assert record["status"] == "cancel", record
    assert record["elapsed_s"] < 60
    assert [layer["name"] for layer in record["layers"]] == ["Background"]
    sine_daemon.assert_idle(timeout_s=10)


def test_closing_the_image_during_the_edit_cancels_the_daemon_job(gimp_home, interactive_session, sine_daemon) -> None:
    """The painter closes the image while the progress window runs: the daemon's job is cancelled at
    once (not run to its end for nothing) and the plug-in says why, instead of an "Internal error"."""
    record = interactive_session["close-image"]
    assert record.get("image_closed") is True and record["status"] == "cancel", record
    assert record["elapsed_s"] < 30, record  # 20000 fine-tune steps would take many minutes
    log = (gimp_home.host / "work" / "close-image" / "gimp.log").read_text()
    assert "sine-gimp: The image was closed during the edit; its SINE job was cancelled." in log, log[-3000:]
    sine_daemon.assert_idle(timeout_s=10)


def test_an_image_scaled_during_the_edit_gets_no_misfit_result(interactive_session) -> None:
    """The painter scales the image (Image > Scale Image, to half) while the daemon works: the result, of
    the layer's old size, went in over the halved layer (its corner on it, the rest beyond, the source's
    pixels outside the selection read past the layer's edge as transparent). It is refused in words."""
    record = interactive_session["scale-image"]
    assert record["status"] == "execution-error", record
    assert "changed size during the edit (48x32, now 24x16)" in record["message"], record
    assert [layer["name"] for layer in record["layers"]] == ["Background"], record
    assert record["layers"][0]["size"] == [W // 2, H // 2], record


def test_starting_the_daemon_shows_progress_with_cancel(gimp_home, run_gimp, closed_endpoint) -> None:
    """Nothing answers, the daemon is installed: "Start it now?" Yes opens a progress window whose
    Cancel ends the wait at once (here the "daemon" is `sleep`, so it would never answer)."""
    work = gimp_home.host / "work"
    picture(3).save(work / "start.png")
    config = work / "start-config"
    config.mkdir(mode=0o700, exist_ok=True)
    (config / "daemon.json").write_text(json.dumps({"argv": ["sleep", "120"]}))
    case = {"name": "start-cancel", "input": gimp_home.inside(work / "start.png"),
            "out": gimp_home.inside(work / "start-cancel"), "interactive": True,
            "autotest": {"dialog": "ok", "start_daemon": "yes", "cancel_start": True}, "args": ARGS}  # fmt: skip
    env = {"SINE_ENDPOINT": closed_endpoint, "SINE_CONFIG_DIR": gimp_home.inside(config),
           "SINE_STATE_DIR": gimp_home.inside(work / "start-state"),
           "SINE_GIMP_AUTOTEST": gimp_home.inside(work / "autotest.json")}  # fmt: skip
    run = run_gimp(gimp_home, [case], env, gui=True, timeout_s=300)
    assert run.returncode == 0, run.log[-4000:]
    record = json.loads((work / "start-cancel" / "result.json").read_text())
    assert record["status"] == "cancel", record
    said = [line for line in run.log.splitlines() if line.startswith("sine-gimp: ")]  # GIMP drops a CANCEL's text
    assert said == ["sine-gimp: Stopped waiting for the SINE daemon to start (it may still be starting)."], said
    assert record["elapsed_s"] < 60, record  # the window's Cancel ended the wait, not the 120 s timeout
    assert [layer["name"] for layer in record["layers"]] == ["Background"]


def run_with_the_daemon_killed(gimp_home, run_gimp, gimp_env, tmp_path, case: dict, **session) -> None:
    """One GIMP session (``session``: run_gimp's options) running ``case`` against a daemon of its own, which
    is SIGKILLed one second into the plug-in's job."""
    from host_common import kill_once_working, running_daemon

    from sine.tiny_models import make_tiny_sd

    with running_daemon(tmp_path, make_tiny_sd(tmp_path / "model")) as doomed:
        env = {**gimp_env(doomed, gimp_home, f"{case['name']}-config"),
               "SINE_GIMP_AUTOTEST": gimp_home.inside(gimp_home.host / "work" / "autotest.json")}  # fmt: skip
        killed = kill_once_working(doomed)
        run = run_gimp(gimp_home, [case], env, timeout_s=300, **session)
    assert run.returncode == 0, run.log[-4000:]
    assert killed, "the daemon never ran the plug-in's job"


def test_a_daemon_killed_mid_edit_is_told_and_adds_nothing(gimp_home, run_gimp, gimp_env, tmp_path) -> None:
    """The daemon dies while the progress window runs (SIGKILL, as the kernel's out-of-memory killer does): the
    filter ends at once with the daemon's stop in words (that nothing was added, where its log is, what to do),
    not a traceback nor the 30 s silence; the image keeps its one layer."""
    work = gimp_home.host / "work"
    picture(4).save(work / "killed.png")
    long_edit = {**LONG_EDIT, "seed": 9}
    case = {"name": "daemon-killed", "input": gimp_home.inside(work / "killed.png"),
            "out": gimp_home.inside(work / "daemon-killed"), "interactive": True,
            # typed into the dialog: it opens with the last edit's values (a quick cached edit after the session's)
            "autotest": {"dialog": "ok", "move": long_edit}, "args": {**ARGS, **long_edit}}  # fmt: skip
    run_with_the_daemon_killed(gimp_home, run_gimp, gimp_env, tmp_path, case, gui=True)
    record = json.loads((work / "daemon-killed" / "result.json").read_text())
    message = record["message"] or ""
    assert record["status"] == "execution-error", record
    # told on the closed connection ("stopped during the edit"), not after the silence ("stopped answering")
    assert message.startswith("The SINE daemon stopped during the edit"), message
    assert "nothing was added" in message and "daemon.log" in message and "Run the filter again" in message, message
    assert "Traceback" not in message and "Errno" not in message and "lost the connection" not in message.lower()
    assert [layer["name"] for layer in record["layers"]] == ["Background"], record
    assert record["elapsed_s"] < 120, record  # 20000 fine-tune steps would take many minutes


def test_a_daemon_killed_mid_edit_from_the_menu_opens_one_message(gimp_home, run_gimp, gimp_env, tmp_path) -> None:
    """As the painter sees it: Filters > SINE > Edit with text… clicked in the image's window, the daemon
    SIGKILLed while the progress window runs. GIMP opens one message dialog (the plug-in's words) and the
    image keeps its one layer; the screen is kept in artifacts/ to look at."""
    work = gimp_home.host / "work"
    picture(5).save(work / "killed-menu.png")
    case = {"name": "daemon-killed-menu", "input": gimp_home.inside(work / "killed-menu.png"),
            "out": gimp_home.inside(work / "daemon-killed-menu"), "display": True, "menu": "python-fu-sine-edit",
            "args": {}, "autotest": {"dialog": "ok", "move": {**ARGS, **LONG_EDIT, "seed": 10}},
            "timeout_s": 30, "look_after_s": 2}  # fmt: skip
    run_with_the_daemon_killed(gimp_home, run_gimp, gimp_env, tmp_path, case, windows=True, screen="1280x800x24")
    out = work / "daemon-killed-menu"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "screen.png", ARTIFACTS / f"gimp-daemon-killed-menu-{gimp_home.root.name}.png")
    record = json.loads((out / "result.json").read_text())
    assert len(record["layers"]) == 1, record
    assert record["new_message_windows"] == 1, record
