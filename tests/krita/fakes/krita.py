"""A small stand-in for Krita's ``krita`` Python module, for unit tests outside Krita.

It models just what the plugin uses, with Krita's real conventions: ``pixelData`` returns B,G,R,A
bytes for RGBA/U8 in document coordinates, ``addChildNode(child, above)`` inserts directly above
``above``, ``createNode`` returns a detached layer, the selection is 1 byte per pixel. Changes to
the attached layer tree are logged in ``Document.history`` so tests can count undoable steps.
The real Krita is exercised by tests/hosts/krita.
"""

from __future__ import annotations

import weakref
from typing import Any

from PyQt6.QtCore import QObject, QRect, pyqtSignal
from PyQt6.QtGui import QAction
from PyQt6.QtWidgets import QDockWidget, QMainWindow


class InfoObject:
    def __init__(self) -> None:
        self.properties: dict[str, Any] = {}


class Selection:
    def __init__(self, width: int, height: int, mask: bytes) -> None:
        self._w, self._h, self._mask = width, height, bytes(mask)

    def _box(self) -> tuple[int, int, int, int]:
        xs = [i % self._w for i, v in enumerate(self._mask) if v]
        ys = [i // self._w for i, v in enumerate(self._mask) if v]
        if not xs:
            return 0, 0, 0, 0
        return min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1

    def width(self) -> int:
        return self._box()[2]

    def height(self) -> int:
        return self._box()[3]

    def pixelData(self, x: int, y: int, w: int, h: int) -> bytes:  # noqa: N802
        out = bytearray(w * h)
        for row in range(h):
            for col in range(w):
                sx, sy = x + col, y + row
                if 0 <= sx < self._w and 0 <= sy < self._h:
                    out[row * w + col] = self._mask[sy * self._w + sx]
        return bytes(out)


class Node:
    def __init__(self, doc: Document, name: str, node_type: str = "paintlayer") -> None:
        self._doc = doc
        self._name = name
        self._type = node_type
        self.color = (doc.colorModel(), doc.colorDepth())
        self.profile = doc.colorProfile()
        self._ps = 4 * {"U16": 2, "F16": 2, "F32": 4}.get(self.color[1], 1)  # bytes a pixel
        self._pixels = bytearray(doc.width() * doc.height() * self._ps)  # BGRA, canvas-sized
        self._parent: Node | None = None
        self._children: list[Node] = []
        self._opacity, self._blending, self._inherit_alpha = 255, "normal", False
        self.is_animated = False  # Krita's animated(): the layer has keyframes

    def animated(self) -> bool:
        return self.is_animated

    def opacity(self) -> int:
        return self._opacity

    def setOpacity(self, value: int) -> None:  # noqa: N802
        self._opacity = int(value)

    def blendingMode(self) -> str:  # noqa: N802
        return self._blending

    def setBlendingMode(self, value: str) -> None:  # noqa: N802
        self._blending = value

    def inheritAlpha(self) -> bool:  # noqa: N802
        return self._inherit_alpha

    def setInheritAlpha(self, value: bool) -> None:  # noqa: N802
        self._inherit_alpha = bool(value)

    def name(self) -> str:
        return self._name

    def type(self) -> str:
        return self._type

    def colorModel(self) -> str:  # noqa: N802
        return self.color[0]

    def colorDepth(self) -> str:  # noqa: N802
        return self.color[1]

    def colorProfile(self) -> str:  # noqa: N802
        return self.profile

    def parentNode(self) -> Node | None:  # noqa: N802
        return self._parent

    def childNodes(self) -> list[Node]:  # noqa: N802
        return list(self._children)

    def attached(self) -> bool:
        node: Node | None = self
        while node is not None:
            if node is self._doc.rootNode():
                return True
            node = node._parent
        return False

    def remove(self) -> bool:
        """Krita's Node.remove(): out of the document, but the Python wrapper lives on."""
        if self._parent is None:
            return False
        self._parent._children.remove(self)
        self._parent = None
        self._doc.history.append(("remove", self.name()))
        return True

    def addChildNode(self, child: Node, above: Node | None) -> bool:  # noqa: N802
        index = self._children.index(above) + 1 if above is not None else len(self._children)
        self._children.insert(index, child)
        child._parent = self
        if self.attached():
            self._doc.history.append(("add", child.name()))
        return True

    def bounds(self) -> QRect:
        w, h = self._doc.width(), self._doc.height()
        ps, a = self._ps, 3 * self._ps // 4
        filled = [i for i in range(w * h) if any(self._pixels[ps * i + a : ps * (i + 1)])]
        if not filled:
            return QRect()
        xs, ys = [i % w for i in filled], [i // w for i in filled]
        return QRect(min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1)

    def pixelData(self, x: int, y: int, w: int, h: int) -> bytes:  # noqa: N802
        cw, ch, ps = self._doc.width(), self._doc.height(), self._ps
        out = bytearray(w * h * ps)
        for row in range(h):
            sy = y + row
            if not 0 <= sy < ch:
                continue
            for col in range(w):
                sx = x + col
                if 0 <= sx < cw:
                    o, s = ps * (row * w + col), ps * (sy * cw + sx)
                    out[o : o + ps] = self._pixels[s : s + ps]
        return bytes(out)

    def projectionPixelData(self, x: int, y: int, w: int, h: int) -> bytes:  # noqa: N802
        """The layer as drawn: masks change nothing here (the real Krita's masks are tested in tests/hosts)."""
        return self.pixelData(x, y, w, h)

    def setPixelData(self, data: bytes, x: int, y: int, w: int, h: int) -> bool:  # noqa: N802
        data = bytes(data)
        ps = self._ps
        if len(data) != w * h * ps:
            raise ValueError("setPixelData: wrong buffer size")
        cw, ch = self._doc.width(), self._doc.height()
        for row in range(h):
            for col in range(w):
                sx, sy = x + col, y + row
                if 0 <= sx < cw and 0 <= sy < ch:
                    s, o = ps * (row * w + col), ps * (sy * cw + sx)
                    self._pixels[o : o + ps] = data[s : s + ps]
        if self.attached():
            self._doc.history.append(("pixels", self._name))
        return True


class Document(QObject):
    def __init__(self, width: int, height: int, color_model: str = "RGBA", color_depth: str = "U8",
                 profile: str = "sRGB-elle-V2-srgbtrc.icc") -> None:  # fmt: skip
        super().__init__()
        self._profile = profile  # Krita names a profile by its description, e.g. "sRGB-elle-V2-g10.icc"
        self._w, self._h = width, height
        self._color = (color_model, color_depth)
        self.history: list[tuple[str, str]] = []
        self._root = Node(self, "root", "grouplayer")
        self._active: Node | None = None
        self._selection: Selection | None = None
        self.projection_refreshes = 0
        self.closed = False

    def currentTime(self) -> int:  # noqa: N802
        return getattr(self, "time", 0)

    def width(self) -> int:
        return 0 if getattr(self, "closed", False) else self._w  # as Krita's wrapper of a closed document

    def height(self) -> int:
        return 0 if getattr(self, "closed", False) else self._h

    def colorModel(self) -> str:  # noqa: N802
        return self._color[0]

    def colorDepth(self) -> str:  # noqa: N802
        return self._color[1]

    def colorProfile(self) -> str:  # noqa: N802
        return self._profile

    def rootNode(self) -> Node | None:  # noqa: N802
        return None if self.closed else self._root  # as Krita's wrapper of a closed document

    def close(self) -> bool:
        self.closed = True
        return True

    def topLevelNodes(self) -> list[Node]:  # noqa: N802
        return self._root.childNodes()

    def activeNode(self) -> Node | None:  # noqa: N802
        return self._active

    def setActiveNode(self, node: Node) -> None:  # noqa: N802
        self._active = node

    def createNode(self, name: str, node_type: str) -> Node:  # noqa: N802
        return Node(self, name, node_type)

    def selection(self) -> Selection | None:
        return self._selection

    def setSelection(self, selection: Selection | None) -> None:  # noqa: N802
        self._selection = selection

    def refreshProjection(self) -> None:  # noqa: N802
        self.projection_refreshes += 1

    def resizeImage(self, x: int, y: int, w: int, h: int) -> bool:  # noqa: N802
        """Krita's canvas resize: the new canvas's left and top edges are (x, y) of the old one, so every
        layer keeps its pixels and moves by (-x, -y)."""
        def nodes(parent: Node) -> list[Node]:
            return [n for child in parent.childNodes() for n in (child, *nodes(child))]

        for node in nodes(self._root):
            old = node.pixelData(x, y, w, h)
            node._pixels = bytearray(old)
        self._w, self._h = w, h
        self.history.append(("resize", f"{w}x{h}"))
        return True

    def waitForDone(self) -> None:  # noqa: N802
        pass

    def pixelData(self, x: int, y: int, w: int, h: int) -> bytes:  # noqa: N802
        """Visible composite: straight-alpha "over" of the top-level layers, bottom to top."""
        out = bytearray(w * h * 4)
        for node in self.topLevelNodes():
            src = node.pixelData(x, y, w, h)
            for i in range(0, len(out), 4):
                a_s = src[i + 3] / 255
                a_d = out[i + 3] / 255
                a_o = a_s + a_d * (1 - a_s)
                if a_o <= 0:
                    continue
                for c in range(3):
                    out[i + c] = round((src[i + c] * a_s + out[i + c] * a_d * (1 - a_s)) / a_o)
                out[i + 3] = round(a_o * 255)
        return bytes(out)


class Notifier(QObject):
    windowCreated = pyqtSignal()  # noqa: N815
    applicationClosing = pyqtSignal()  # noqa: N815


class View:
    def __init__(self, doc: Document) -> None:
        self._doc = doc

    def document(self) -> Document:
        return self._doc


class Window(QObject):
    """A main window: ``createAction`` as in Krita (id, text, menu location); ``shown`` is the document
    of its active view (None: no view)."""

    _all: list[Any] = []  # weak references to every window made, for Krita.windows()

    def __init__(self) -> None:
        super().__init__()
        self._qwindow = QMainWindow()
        self.actions: dict[str, QAction] = {}
        self.shown: Document | None = None
        Window._all.append(weakref.ref(self))

    def activeView(self) -> View | None:  # noqa: N802
        return View(self.shown) if self.shown is not None else None

    def forget(self) -> None:
        """Krita deletes the Window wrapper it hands to ``Extension.createActions`` (the main window lives
        on): seen in Krita 5.2 as "wrapped C/C++ object of type Window has been deleted" at the shortcut."""
        self.forgotten = True

    def qwindow(self) -> QMainWindow:
        if getattr(self, "forgotten", False):
            raise RuntimeError("wrapped C/C++ object of type Window has been deleted")
        return self._qwindow

    def createAction(self, name: str, text: str, menu: str = "") -> QAction:  # noqa: N802
        action = QAction(text, self._qwindow)
        action.setObjectName(name)
        action.setProperty("menu", menu)
        self.actions[name] = action
        return action

    def dockers(self) -> list[QDockWidget]:
        return self.qwindow().findChildren(QDockWidget)


class _Rewrapped:
    """A new wrapper of a window whose first wrapper Krita deleted."""

    def __init__(self, window: Window) -> None:
        self._window = window

    def qwindow(self) -> QMainWindow:
        return self._window._qwindow

    def activeView(self) -> View | None:  # noqa: N802
        return View(self._window.shown) if self._window.shown is not None else None

    def dockers(self) -> list[QDockWidget]:
        return self._window._qwindow.findChildren(QDockWidget)


class Krita(QObject):
    _instance: Krita | None = None

    def __init__(self) -> None:
        super().__init__()
        self.dock_factories: list[DockWidgetFactory] = []
        self.extensions: list[Any] = []
        self._notifier = Notifier()
        self._active: Document | None = None
        self.settings: dict[tuple[str, str], str] = {}  # kritarc: (group, name) -> value, kept as text

    @classmethod
    def instance(cls) -> Krita:
        if cls._instance is None:
            cls._instance = Krita()
        return cls._instance

    def version(self) -> str:
        return "fake-5.2"

    def notifier(self) -> Notifier:
        return self._notifier

    def addDockWidgetFactory(self, factory: DockWidgetFactory) -> None:  # noqa: N802
        self.dock_factories.append(factory)

    def addExtension(self, extension: Any) -> None:  # noqa: N802
        self.extensions.append(extension)

    def activeDocument(self) -> Document | None:  # noqa: N802
        return self._active

    def windows(self) -> list[Any]:
        """Live wrappers of every window (Krita makes new ones each call: a forgotten one's window lives on)."""
        return [_Rewrapped(w) if getattr(w, "forgotten", False) else w
                for w in (ref() for ref in Window._all) if w is not None]  # fmt: skip

    def setActiveDocument(self, doc: Document | None) -> None:  # noqa: N802
        self._active = doc

    def readSetting(self, group: str, name: str, default: str) -> str:  # noqa: N802
        return self.settings.get((group, name), default)

    def writeSetting(self, group: str, name: str, value: str) -> None:  # noqa: N802
        self.settings[(group, name)] = str(value)


class Extension(QObject):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)


class DockWidget(QDockWidget):
    def canvasChanged(self, canvas: Any) -> None:  # noqa: N802
        raise NotImplementedError


class DockWidgetFactoryBase:
    DockRight = 2


class DockWidgetFactory:
    def __init__(self, dock_id: str, area: int, cls: type) -> None:
        self.id, self.area, self.cls = dock_id, area, cls

    def create(self, window: Window) -> DockWidget:
        dock = self.cls()
        dock.setObjectName(self.id)
        dock.setParent(window.qwindow())
        return dock
