"""The card dashboard in a real headless browser (Debian's chromium through Selenium), as a
person would use it: from a file:// URL, the index lists the units, sorts by a column, filters
by the search box, opens a unit whose shown values are `CardResult.to_json()`'s, moves with the
keyboard, shows a hostile corpus line and prompt as text without running them, and fetches
nothing. Skipped, with the reason, only when Selenium, chromium or chromedriver is missing
(.ci/run installs them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lazarus.cli.main import main
from lazarus.text import escape

pytestmark = pytest.mark.integration  # starts a browser: CI's integration tier

WINDOW = 32
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
LINES = ["the cat sat on a mat", "a big red house & more", "then it ran to the mat"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium, or '.[dev]')")
    binary = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip(f"no browser to drive: chromium {binary or 'not found'}, chromedriver "
                    f"{driver_path or 'not found'} (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    try:  # the driver named, so Selenium Manager never downloads one
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
    except Exception as err:  # noqa: BLE001 - any failure to start is a reason to skip
        pytest.skip(f"{binary} with {driver_path} did not start: {str(err).splitlines()[0]}")
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def dashboard(llama_dir, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A card HTML and the JSON of the same run (`-o` of each; the scan resumed the second
    time), over a corpus whose every line carries the hostile markup."""
    folder = tmp_path_factory.mktemp("dashboard")
    corpus = folder / "hostile.txt"
    corpus.write_text("".join(f"{HOSTILE} {line}\n" for line in LINES))
    common = ["introspect", "card", "-m", str(llama_dir), "-l", "1", "-n", "3,50,7",
              "--corpus", str(corpus), "--window", str(WINDOW), "--examples", "2", "--causal",
              "--causal-windows", "2", "--controls", "2", "--coefficients", "1",
              "--max-tokens", "3", "--prompt", HOSTILE, "--work-dir", str(folder / "w")]
    assert main([*common, "-o", str(folder / "card.html")]) == 0
    assert main([*common, "-o", str(folder / "card.json")]) == 0
    return folder / "card.html", json.loads((folder / "card.json").read_text())


def _shown_ids(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [row.find_element(By.TAG_NAME, "a").text
            for row in driver.find_elements(By.CSS_SELECTOR, "#units tbody tr")
            if row.is_displayed()]


def test_dashboard_in_a_browser(browser, dashboard, capsys):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    page, document = dashboard
    units = document["units"]
    ids = [u["id"] for u in units]
    browser.get(page.as_uri())
    assert browser.find_element(By.ID, "index").is_displayed()
    assert _shown_ids(browser) == ids

    header = browser.find_element(By.XPATH, "//table[@id='units']//th[text()='max']")
    header.click()
    by_max = sorted(units, key=lambda u: u["corpus"]["max"])
    assert header.get_attribute("aria-sort") == "ascending"
    assert _shown_ids(browser) == [u["id"] for u in by_max]
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    assert _shown_ids(browser) == [u["id"] for u in reversed(by_max)]

    search = browser.find_element(By.ID, "search")
    search.send_keys("n50")
    assert _shown_ids(browser) == ["L1 N50"]
    assert browser.find_element(By.ID, "shown").text == "1 of 3 units"
    search.send_keys(Keys.BACKSPACE * 3)  # typed away, as a person would
    assert search.get_attribute("value") == ""
    assert _shown_ids(browser) == [u["id"] for u in reversed(by_max)]

    target = ids.index("L1 N7")
    browser.find_element(By.LINK_TEXT, "L1 N7").click()
    assert browser.execute_script("return location.hash") == f"#unit/{target}"
    section = browser.find_element(By.ID, f"unit/{target}")
    assert section.is_displayed()
    assert not browser.find_element(By.ID, "index").is_displayed()
    _check_unit(section, units[target])

    order = [u["id"] for u in reversed(by_max)]  # keys follow the index's order
    body = browser.find_element(By.TAG_NAME, "body")
    at = order.index("L1 N7")
    for key, step in (("j", 1), ("k", -1), (Keys.ARROW_RIGHT, 1)):
        body.send_keys(key)
        at = min(len(order) - 1, max(0, at + step))
        shown = [s for s in browser.find_elements(By.CSS_SELECTOR, "section.unit")
                 if s.is_displayed()]
        assert [s.get_attribute("data-title") for s in shown] == [order[at]]
        _check_unit(shown[0], units[ids.index(order[at])])
    body.send_keys(Keys.ESCAPE)
    assert browser.find_element(By.ID, "index").is_displayed()
    assert browser.execute_script("return location.hash") == "#index"
    selected = browser.find_elements(By.CSS_SELECTOR, "#units tr.selected a")
    assert [a.text for a in selected] == [order[at]]  # the index highlights the unit left
    body.send_keys(Keys.ARROW_UP, Keys.ENTER)  # the row above it, opened
    assert browser.execute_script("return location.hash") == f"#unit/{ids.index(order[at - 1])}"
    body.send_keys("i")
    assert browser.find_element(By.ID, "index").is_displayed()

    assert browser.execute_script("return typeof window.__pwned") == "undefined"
    assert browser.find_elements(By.CSS_SELECTOR, "img, iframe, object, embed, link") == []
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 1
    for element in browser.find_elements(By.CSS_SELECTOR, "[src], [href]"):
        for name in ("src", "href"):
            value = element.get_attribute(name)
            assert value is None or value.startswith(page.as_uri() + "#"), value
    assert browser.execute_script(
        "return performance.getEntriesByType('resource').length") == 0  # nothing fetched
    with capsys.disabled():
        print(f"\nbrowser: {browser.capabilities.get('browserName')} "
              f"{browser.capabilities.get('browserVersion')}; {len(units)} units checked")


def _check_unit(section, unit: dict) -> None:
    """What the unit's page shows equals its JSON: the weight view, the corpus statistics,
    every context token's text and value, the histogram, the ablation, the steering."""
    from selenium.webdriver.common.by import By

    def values(css: str) -> list[float]:
        return [float(e.get_attribute("data-value"))
                for e in section.find_elements(By.CSS_SELECTOR, css)]

    assert section.find_element(By.CSS_SELECTOR, "h2.unit-id").text.startswith(unit["id"])
    weights = unit["weights"]
    for kind in ("promoted", "suppressed"):
        assert values(f"table.{kind} td.num") == [t["value"] for t in weights[kind]]
        assert [e.get_attribute("textContent") for e in section.find_elements(
            By.CSS_SELECTOR, f"table.{kind} .t")] == [escape(t["token"]) for t in weights[kind]]
    corpus = unit["corpus"]
    assert values("table.stats td.num") == [corpus[key] for key in (
        "count", "mean", "std", "min", "max", "fraction_active")]
    assert values("table.quantiles td.num") == [q["value"] for q in corpus["quantiles"]]
    assert [int(e.get_attribute("data-count")) for e in section.find_elements(
        By.CSS_SELECTOR, "rect.bar")] == corpus["histogram"]["counts"]
    for kind in ("top", "bottom"):
        rows = section.find_elements(By.CSS_SELECTOR, f"table.{kind} tr")
        assert len(rows) == len(corpus[kind])
        for row, context in zip(rows, corpus[kind], strict=True):
            tokens = row.find_elements(By.CSS_SELECTOR, ".t")
            assert [t.get_attribute("textContent") for t in tokens] == [
                escape(token) for token in context["tokens"]]  # non-printables as escapes
            assert [float(t.get_attribute("data-value")) for t in tokens] == context["values"]
            assert [t.get_attribute("title") for t in tokens] == [
                f"{v:.6g}" for v in context["values"]]  # the value on hover
            assert row.find_element(By.CSS_SELECTOR, "td.ctx").text == "".join(
                escape(token) for token in context["tokens"])
    ablation = unit["causal"]["ablation"]
    assert values("table.ablation td.num")[0] == ablation["effect"]
    assert section.find_element(By.CSS_SELECTOR, ".prompt").text == HOSTILE  # text, whole
    assert values("table.steering td.num") == [r["coefficient"]
                                               for r in unit["causal"]["steering"]]
