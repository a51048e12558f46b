"""The README's quickstart shows the real output of scripts/quickstart.sh on the demo model."""

from __future__ import annotations

import re
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


def test_readme_quickstart_marks_no_interval_that_reaches_zero():
    # the old quickstart marked r = -0.53 [-0.94, +0.49] as "fires low": a mark must stand on
    # an interval that excludes 0 (the output itself is checked against a real run above)
    block = update_readme.current_block((REPO / "README.md").read_text(encoding="utf-8"))
    section = block.split("LABEL CORRELATION")[1]
    rows = re.findall(r"r=([+-]\d\.\d\d) \[([+-]\d\.\d\d), ([+-]\d\.\d\d)\](.*)", section)
    assert len(rows) == 12  # 6 neurons x 2 labels, every one with an interval
    marked = [(float(low), float(high)) for _, low, high, rest in rows if "← fires" in rest]
    assert marked  # the quickstart's direction does find neurons that track the labels
    assert all(low > 0 or high < 0 for low, high in marked)
