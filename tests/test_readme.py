"""The README's quickstart shows the real output of scripts/quickstart.sh on the demo model."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import update_readme  # noqa: E402


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("lazarus") is None, reason="needs the installed console script")
def test_readme_shows_the_quickstart_output_of_today():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    expected = update_readme.readme_block(update_readme.quickstart_output())
    assert update_readme.current_block(readme) == expected, (
        "README's quickstart output is stale: run python scripts/update_readme.py")
