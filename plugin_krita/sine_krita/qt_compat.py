"""The one place that knows whether Krita runs PyQt5 (Krita 5) or PyQt6 (Krita 6).

Krita has already imported its own binding before any plugin loads, so we take the one its
``krita`` module is built on (else the one found in ``sys.modules``) and never import the other:
loading a second Qt into the process would crash it.
Outside Krita (unit tests) PyQt6 is preferred, then PyQt5. Enum spellings differ between the two
(PyQt6 only has scoped enums), so the rest of the plugin uses the aliases defined here.
"""

from __future__ import annotations

import importlib
import os
import sys


def binding_of_krita() -> str | None:
    """``"PyQt5"``/``"PyQt6"``: the binding Krita's own ``krita`` module is built on, if loaded."""
    krita = sys.modules.get("krita")
    for cls in getattr(getattr(krita, "Krita", None), "__mro__", ()):
        package = (getattr(cls, "__module__", "") or "").split(".")[0]
        if package in ("PyQt5", "PyQt6"):
            return package
    return None


def _pick_binding() -> str:
    forced = os.environ.get("SINE_KRITA_QT")  # "PyQt5" / "PyQt6": only for debugging
    if forced:
        return forced
    from_krita = binding_of_krita()
    if from_krita:
        return from_krita
    for name in ("PyQt6", "PyQt5"):
        if f"{name}.QtCore" in sys.modules:
            return name
    for name in ("PyQt6", "PyQt5"):
        try:
            importlib.import_module(f"{name}.QtCore")
            return name
        except ImportError:
            continue
    raise ImportError("SINE Edit needs PyQt6 or PyQt5 (Krita bundles one of them)")


BINDING = _pick_binding()
QtCore = importlib.import_module(f"{BINDING}.QtCore")
QtGui = importlib.import_module(f"{BINDING}.QtGui")
QtWidgets = importlib.import_module(f"{BINDING}.QtWidgets")
QT6 = BINDING == "PyQt6"

Qt = QtCore.Qt
QObject = QtCore.QObject
QTimer = QtCore.QTimer
pyqtSignal = QtCore.pyqtSignal
QImage = QtGui.QImage
QPixmap = QtGui.QPixmap
QIcon = QtGui.QIcon
QSize = QtCore.QSize
QKeySequence = QtGui.QKeySequence

QAction = QtGui.QAction if QT6 else QtWidgets.QAction
QCheckBox = QtWidgets.QCheckBox
QComboBox = QtWidgets.QComboBox
QDockWidget = QtWidgets.QDockWidget
QDoubleSpinBox = QtWidgets.QDoubleSpinBox
QFormLayout = QtWidgets.QFormLayout
QGridLayout = QtWidgets.QGridLayout
QGroupBox = QtWidgets.QGroupBox
QHBoxLayout = QtWidgets.QHBoxLayout
QLabel = QtWidgets.QLabel
QLineEdit = QtWidgets.QLineEdit
QListWidget = QtWidgets.QListWidget
QListWidgetItem = QtWidgets.QListWidgetItem
QPlainTextEdit = QtWidgets.QPlainTextEdit
QProgressBar = QtWidgets.QProgressBar
QPushButton = QtWidgets.QPushButton
QSlider = QtWidgets.QSlider
QSpinBox = QtWidgets.QSpinBox
QToolButton = QtWidgets.QToolButton
QVBoxLayout = QtWidgets.QVBoxLayout
QWidget = QtWidgets.QWidget
QApplication = QtWidgets.QApplication
QScrollArea = QtWidgets.QScrollArea
QFrame = QtWidgets.QFrame


def _enum(owner: object, scoped: str, name: str) -> object:
    """``owner.scoped.name`` on PyQt6, ``owner.name`` on PyQt5."""
    return getattr(getattr(owner, scoped), name) if QT6 else getattr(owner, name)


FORMAT_RGBA8888 = _enum(QImage, "Format", "Format_RGBA8888")
ALIGN_CENTER = _enum(Qt, "AlignmentFlag", "AlignCenter")
KEEP_ASPECT = _enum(Qt, "AspectRatioMode", "KeepAspectRatio")
IGNORE_ASPECT = _enum(Qt, "AspectRatioMode", "IgnoreAspectRatio")
SMOOTH = _enum(Qt, "TransformationMode", "SmoothTransformation")
TEXT_SELECTABLE = _enum(Qt, "TextInteractionFlag", "TextSelectableByMouse")
RICH_TEXT_OFF = _enum(Qt, "TextFormat", "PlainText")
HORIZONTAL = _enum(Qt, "Orientation", "Horizontal")
SCROLLBAR_OFF = _enum(Qt, "ScrollBarPolicy", "ScrollBarAlwaysOff")
SCROLLBAR_AS_NEEDED = _enum(Qt, "ScrollBarPolicy", "ScrollBarAsNeeded")
TOOL_BUTTON_TEXT_UNDER_ICON = _enum(Qt, "ToolButtonStyle", "ToolButtonTextUnderIcon")
NO_FRAME = _enum(QFrame, "Shape", "NoFrame")
WRAP_LONG_ROWS = _enum(QFormLayout, "RowWrapPolicy", "WrapLongRows")
ALL_FIELDS_GROW = _enum(QFormLayout, "FieldGrowthPolicy", "AllNonFixedFieldsGrow")


def qimage_from_rgba(data: bytes, width: int, height: int) -> QImage:
    """A QImage that owns a copy of straight-alpha RGBA8 rows (the wire format)."""
    image = QImage(data, width, height, width * 4, FORMAT_RGBA8888)
    return image.copy()  # detach from the Python buffer, which may be freed


def qimage_to_rgba(image: QImage) -> bytes:
    """Tightly packed RGBA8 rows of ``image`` (converted if needed)."""
    if image.format() != FORMAT_RGBA8888:
        image = image.convertToFormat(FORMAT_RGBA8888)
    width, height = image.width(), image.height()
    stride = image.bytesPerLine()
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    raw = bytes(ptr)
    if stride == width * 4:
        return raw[: width * height * 4]
    return b"".join(raw[y * stride : y * stride + width * 4] for y in range(height))


def scale_rgba(data: bytes, width: int, height: int, new_width: int, new_height: int) -> bytes:
    """Smoothly resize RGBA8 pixels (used when the output size differs from the canvas)."""
    image = qimage_from_rgba(data, width, height)
    return qimage_to_rgba(image.scaled(new_width, new_height, IGNORE_ASPECT, SMOOTH))
