"""What the picture tests check of a written file: a PNG's signature and pixel size (from its
IHDR chunk), an SVG's root element, and the CLI run that writes them."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from lazarus.cli.main import main

SVG = "{http://www.w3.org/2000/svg}svg"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, after checking the signature."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def svg_root(path: Path) -> ElementTree.Element:
    """The parsed SVG's root, after checking it is an <svg> element."""
    root = ElementTree.parse(path).getroot()
    assert root.tag == SVG, root.tag
    return root


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def artist(axes, gid: str):
    """The one artist (line, collection or text) of `axes` with this gid."""
    found = [a for a in [*axes.lines, *axes.collections, *axes.texts] if a.get_gid() == gid]
    assert len(found) == 1, (gid, len(found))
    return found[0]
