"""Turning the Krita plugin on in kritarc (`[python]` / `enable_sine_krita=true`) and off again,
leaving every other byte of the file alone: Krita owns that file and the user's settings are in it.
"""

from __future__ import annotations

SECTION = "[python]"
KEY = "enable_sine_krita"
LINE = f"{KEY}=true"


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _section_bounds(lines: list[str]) -> tuple[int, int] | None:
    """(header index, end index) of the [python] section, end exclusive; None when absent."""
    start = None
    for i, raw in enumerate(lines):
        stripped = raw.strip()
        if start is None:
            if stripped == SECTION:
                start = i
        elif stripped.startswith("[") and stripped.endswith("]"):
            return start, i
    return None if start is None else (start, len(lines))


def enable(text: str) -> tuple[str, dict[str, object]]:
    """Return the new kritarc text and a record of what changed (for `disable`)."""
    nl = _newline(text)
    lines = text.splitlines(keepends=True)
    bounds = _section_bounds(lines)
    record: dict[str, object] = {"added_section": False, "original_line": None}
    if bounds is None:
        prefix = text
        if prefix and not prefix.endswith(("\n", "\r")):
            prefix += nl
        if prefix.strip():
            prefix += nl  # Krita separates sections with a blank line
        record["added_section"] = True
        return f"{prefix}{SECTION}{nl}{LINE}{nl}", record
    start, end = bounds
    for i in range(start + 1, end):
        if lines[i].split("=", 1)[0].strip() == KEY:
            if lines[i].strip() == LINE:
                return text, {"added_section": False, "original_line": None, "unchanged": True}
            record["original_line"] = lines[i]
            lines[i] = LINE + (nl if lines[i].endswith(("\n", "\r")) else "")
            return "".join(lines), record
    # insert after the section's last non-blank line
    insert_at = end
    while insert_at > start + 1 and not lines[insert_at - 1].strip():
        insert_at -= 1
    if not lines[insert_at - 1].endswith(("\n", "\r")):
        lines[insert_at - 1] += nl
    lines.insert(insert_at, LINE + nl)
    return "".join(lines), record


def disable(text: str, record: dict[str, object]) -> str:
    """Undo `enable` on a kritarc Krita may have rewritten since: drop or restore our line only."""
    lines = text.splitlines(keepends=True)
    bounds = _section_bounds(lines)
    if bounds is None:
        return text
    start, end = bounds
    for i in range(start + 1, end):
        if lines[i].split("=", 1)[0].strip() == KEY:
            original = record.get("original_line")
            if original is not None:
                lines[i] = str(original)
            else:
                del lines[i]
                end -= 1
            break
    if record.get("added_section") and all(not ln.strip() for ln in lines[start + 1:end]):
        # remove the header, its now-empty body and the blank line we put before it
        del lines[start:end]
        if start > 0 and not lines[start - 1].strip() and start == len(lines):
            del lines[start - 1]
    return "".join(lines)
