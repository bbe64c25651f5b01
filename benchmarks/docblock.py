"""Writing a benchmark's table into a markdown file between its own markers, so reruns replace it."""

from __future__ import annotations

from pathlib import Path


def write_block(path: Path, name: str, block: str) -> None:
    """Replace the text between `<!-- {name}:begin -->` and `<!-- {name}:end -->` in `path` with
    `block`; append the markers and block when the file lacks them (or does not exist)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else ""
    wrapped = f"{begin}\n{block}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + wrapped + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + wrapped + "\n"
    path.write_text(text)


def publish(block: str, name: str, path: Path | None) -> None:
    """Print a benchmark's `block`, and write it into `path` between its markers when a path is given."""
    print(block)
    if path is not None:
        write_block(path, name, block)
