"""The procedure's declared arguments (PDB names, ranges, defaults) and their reading back.

Declared arguments make the edit scriptable: batch mode and other plug-ins set them on the
procedure's config; the interactive dialog is generated from the same declarations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GObject  # noqa: E402

from sine_protocol import defaults  # noqa: E402  (the vendored package: sine-gimp.py puts it first on sys.path)

if TYPE_CHECKING:
    from sine_gimp_job import EditRequest

RW = GObject.ParamFlags.READWRITE
MAX_SIDE = 16384
STYLES = (("photo", "Photo"), ("painting", "Painting"))
METHODS = (("lora", "LoRA (fast)"), ("full", "Full fine-tune (paper recipe)"))
_START_LABELS = {"noise": "Source noised at random", "inversion": "Source's own noise (DDIM inversion)"}
STARTS = tuple((mode, _START_LABELS[mode]) for mode in defaults.START_MODES)


def _choice(entries: tuple[tuple[str, str], ...]) -> Gimp.Choice:
    choice = Gimp.Choice.new()
    for index, (nick, label) in enumerate(entries):
        choice.add(nick, index, label, "")
    return choice


def declare_arguments(procedure: Gimp.Procedure) -> None:
    """Add every edit setting as a PDB argument (names use dashes, as GIMP requires)."""
    procedure.add_string_argument(
        "prompt", "_Edit prompt", "What the edit should do, e.g. 'wearing a red hat'", "", RW
    )
    procedure.add_string_argument(
        "subject", "_Subject", "What the picture shows, e.g. 'dog' (may stay empty)", "", RW
    )
    procedure.add_choice_argument(
        "style", "St_yle", "Photo or painting (chooses the source prompt)", _choice(STYLES), defaults.STYLE, RW
    )
    procedure.add_int_argument("seed", "S_eed", "Random seed of the sampler", 0, 2**31 - 1, defaults.SEED, RW)
    procedure.add_int_argument("steps", "Sampling s_teps", "DDIM steps", *defaults.STEPS_RANGE, defaults.STEPS, RW)
    procedure.add_double_argument(
        "guidance", "_Guidance", "Classifier-free guidance scale w", *defaults.GUIDANCE_RANGE, defaults.GUIDANCE, RW
    )
    procedure.add_double_argument(
        "v", "_v (pre-trained weight)", "Weight of the pre-trained model in the guided mix", *defaults.V_RANGE,
        defaults.V, RW
    )
    procedure.add_int_argument(
        "k", "_K (guidance until step)", "Timestep below which only the pre-trained model guides",
        *defaults.K_RANGE, defaults.K, RW,
    )
    procedure.add_choice_argument("method", "_Method", "Fine-tuning recipe", _choice(METHODS), defaults.METHOD, RW)
    procedure.add_int_argument(
        "finetune-steps", "_Fine-tune steps", "0 = the daemon's default for the method", 0, 20000, 0, RW
    )
    procedure.add_int_argument(
        "output-width", "Output _width (0 = layer's)",
        "0 = the layer's width: the result is a new layer over it. Another size opens a new image", 0, MAX_SIDE, 0, RW,
    )  # fmt: skip
    procedure.add_int_argument(
        "output-height", "Output _height (0 = layer's)",
        "0 = the layer's height: the result is a new layer over it. Another size opens a new image", 0, MAX_SIDE, 0,
        RW,
    )  # fmt: skip
    procedure.add_double_argument(
        "strength", "St_rength", "How much may change: 1 samples from pure noise (SINE), lower keeps more of the "
        "source", 0.05, 1.0, defaults.STRENGTH, RW,
    )  # fmt: skip
    procedure.add_choice_argument(
        "start", "Sta_rt", "Where sampling starts when strength is below 1", _choice(STARTS), defaults.START, RW
    )
    procedure.add_int_argument(
        "count", "_Results", "How many results (seeds seed, seed+1, ...): each becomes a layer, all in one undo step",
        1, defaults.MAX_COUNT, 1, RW,
    )  # fmt: skip
    procedure.add_layer_argument(
        "style-layer", "Style from _layer", "A layer whose colours and style the edit takes (may stay empty)", True, RW
    )
    procedure.add_file_argument(
        "style-file", "Style from _file", "A picture whose colours and style the edit takes (when no style layer)",
        Gimp.FileChooserAction.OPEN, True, None, RW,
    )  # fmt: skip
    procedure.add_double_argument(
        "style-weight", "Style _weight", "Weight of the style picture's model (style + content weight at most 1)",
        0.0, 1.0, defaults.STYLE_WEIGHT, RW,
    )  # fmt: skip
    procedure.add_double_argument(
        "content-weight", "C_ontent weight", "Weight of the source's own model beside the style picture's: higher "
        "keeps more of the layer (default 1 - v, the engine's)", 0.0, 1.0, defaults.CONTENT_WEIGHT, RW,
    )  # fmt: skip
    procedure.add_layer_return_value("layer", "Layer", "The new layer holding the (first) result", True, RW)


def request_from_config(config: Gimp.ProcedureConfig) -> EditRequest:
    """Read the arguments back into the host-independent request."""
    from sine_gimp_job import EditRequest  # imports the client: only once the plug-in runs

    get = config.get_property
    return EditRequest(
        prompt=get("prompt") or "",
        subject=get("subject") or "",
        style=get("style") or defaults.STYLE,
        seed=int(get("seed")),
        steps=int(get("steps")),
        guidance=float(get("guidance")),
        v=float(get("v")),
        k=int(get("k")),
        method=get("method") or "lora",
        finetune_steps=int(get("finetune-steps")),
        output_width=int(get("output-width")),
        output_height=int(get("output-height")),
        strength=float(get("strength")),
        start=get("start") or "noise",
        count=int(get("count")),
        style_weight=float(get("style-weight")),
        content_weight=float(get("content-weight")),
    )
