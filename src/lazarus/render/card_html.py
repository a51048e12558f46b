"""The unit cards as one self-contained HTML dashboard (`lazarus introspect card -o FILE.html`):
an index of the units (a table sortable by each statistic, a search box) and a page per unit
(weight view, corpus view with every context token shaded by the unit's value, histogram and
quantiles, causal view), keyboard navigation and hash routing (`#unit/3`, `#index`), so that it
works from a file, offline: inline style and script, nothing fetched.

Drawn from `CardResult.to_json()`, so every number shown is the JSON's (exact in each number's
`data-value`). The pages are rendered here, every model and corpus text escaped; the script
holds no data, it only shows, hides, sorts and filters what the page already has."""

from __future__ import annotations

import html
from typing import Any

from lazarus.render import html_parts as h
from lazarus.render.card import p_note
from lazarus.render.card_assets import DASHBOARD_STYLE, SCRIPT
from lazarus.render.examples import beyond_html
from lazarus.results.card import CardResult
from lazarus.text import routed_share

# The index's columns: (title, how a unit's JSON gives the value, numeric?)
COLUMNS: tuple[tuple[str, Any, bool], ...] = (
    ("unit", lambda u: u["id"], False),
    ("kind", lambda u: u["kind"], False),
    ("top promoted", lambda u: _first(u, "promoted", "token"), False),
    ("its value", lambda u: _first(u, "promoted", "value"), True),
    ("mean", lambda u: _stat(u, "mean"), True),
    ("std", lambda u: _stat(u, "std"), True),
    ("min", lambda u: _stat(u, "min"), True),
    ("max", lambda u: _stat(u, "max"), True),
    ("active", lambda u: _stat(u, "fraction_active"), True),
    ("ablation effect", lambda u: _ablation(u, "effect"), True),
    ("percentile vs random", lambda u: _controls(u, "percentile"), True),
)


def _first(unit: dict, side: str, key: str) -> Any:
    w = unit["weights"]
    return w[side][0][key] if w is not None and w[side] else None


def _stat(unit: dict, key: str) -> Any:
    return None if unit["corpus"] is None else unit["corpus"][key]


def _ablation(unit: dict, key: str) -> Any:
    causal = unit["causal"]
    return None if causal is None or causal["ablation"] is None else causal["ablation"][key]


def _controls(unit: dict, key: str) -> Any:
    controls = _ablation(unit, "controls")
    return None if controls is None else controls[key]


def render_card_html(result: CardResult) -> str:
    """The dashboard's page (see the module's notes)."""
    document = result.to_json()
    units = document["units"]
    note = p_note(sum(1 for unit in units if _controls(unit, "p") is not None), sortable=True)
    title = f"lazarus card: {document['model']}, layer {document['layer']}, {document['site']}"
    where = f"model {document['model']}"
    corpus = document["corpus"]
    if corpus is not None:
        where += (f"; corpus {corpus['path']}: {corpus['windows']} windows, "
                  f"{corpus['tokens']} tokens")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{h.text(title)}</title>",
             f"<style>{h.STYLE}{DASHBOARD_STYLE}</style></head><body>",
             f'<header><h1 id="title">{h.text(title)}</h1><p>{h.text(where)}</p>'
             '<p class="keys">keys: j / k or → / ← next and previous unit (in the index\'s '
             "order), Enter opens the highlighted unit, Esc or i back to the index, / search"
             "</p></header>",
             _index(units, note)]
    parts += [_unit_page(i, unit, note) for i, unit in enumerate(units)]
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"


def _p_note(note: str | None) -> str:
    return "" if note is None else f'<p class="note p-note">{h.text(note)}</p>'


def _index(units: list[dict], note: str | None = None) -> str:
    """The sortable table of the units, with `note` (`render.card.p_note`) under it."""
    head = "".join(
        f'<th scope="col" data-type="{"num" if numeric else "text"}" aria-sort="none" '
        f'tabindex="0"{" class=num" if numeric else ""}>{html.escape(name)}</th>'
        for name, _, numeric in COLUMNS)
    rows = []
    for i, unit in enumerate(units):
        cells = []
        for name, value_of, numeric in COLUMNS:
            value = value_of(unit)
            if numeric:
                cells.append(h.number(value).replace(
                    "<td ", f'<td data-sort="{"" if value is None else h.exact(value)}" ', 1))
            elif name == "unit":
                cells.append(f'<td data-sort="{h.text(value)}"><a href="#unit/{i}">'
                             f"{h.text(value)}</a></td>")
            else:
                cells.append(f'<td data-sort="{h.text(value or "")}">'
                             f"{h.text(value) if value is not None else h.MISSING}</td>")
        search = " ".join(str(value_of(unit) or "") for name, value_of, numeric in COLUMNS
                          if not numeric).lower()
        rows.append(f'<tr data-unit="{i}" data-search="{h.text(search)}">{"".join(cells)}</tr>')
    return ('<section id="index"><h2>units</h2>'
            '<p><label>search <input id="search" type="search" autocomplete="off" '
            'placeholder="unit, kind or token"></label> <span id="shown">'
            f"{len(units)} of {len(units)} units</span></p>"
            f'<table id="units"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
            f"</table>{_p_note(note)}</section>")


def _unit_page(i: int, unit: dict, note: str | None = None) -> str:
    titles = {"neuron": f"neuron {unit['neuron']}", "head": f"head {unit['neuron']}",
              "expert_unit": f"column {unit['neuron']}: expert {unit['expert']}, unit "
                             f"{unit['expert_unit']}", "direction": "a saved direction"}
    parts = [f'<section class="unit" id="unit/{i}" data-title="{h.text(unit["id"])}">',
             '<nav><a href="#index">index</a> · <a class="prev" href="#">previous</a> · '
             '<a class="next" href="#">next</a></nav>',
             f'<h2 class="unit-id">{h.text(unit["id"])} <small>'
             f"({h.text(titles[unit['kind']])})</small></h2>"]
    parts += [f'<p class="note">{h.text(note)}</p>' for note in unit["notes"]]
    if unit["weights"] is not None:
        parts.append(_weights(unit["weights"]))
    if unit["corpus"] is not None:
        parts.append(_corpus(unit["corpus"]))
    if unit["causal"] is not None:
        parts.append(_causal(unit["causal"], note))
    parts.append("</section>")
    return "".join(parts)


def _weights(w: dict) -> str:
    limit = h.limit_of([t["value"] for t in (*w["promoted"], *w["suppressed"])])

    def listed(kind: str) -> str:
        rows = "".join(f"<tr><td>{h.token(t['token'], t['value'], limit)}</td>"
                       f"{h.number(t['value'])}</tr>" for t in w[kind])
        return (f'<div><h4>{kind}</h4><table class="{kind}"><tr><th>token</th>'
                f'<th class="num">value</th></tr>{rows}</table></div>')

    note = f'<p class="note">{h.text(w["note"])}</p>' if w["note"] else ""
    return (f'<div class="view weights"><h3>weights</h3><p>{h.text(w["method"])}</p>{note}'
            f'<div class="pair">{listed("promoted")}{listed("suppressed")}</div></div>')


def _corpus(c: dict) -> str:
    limit = h.limit_of([c["min"], c["max"]])
    stats = "".join(f'<th class="num">{name}</th>' for name in
                    ("count", "mean", "std", "min", "max", "active"))
    values = "".join(h.number(c[key]) for key in
                     ("count", "mean", "std", "min", "max", "fraction_active"))
    parts = ['<div class="view corpus"><h3>corpus</h3>',
             f'<table class="stats"><tr>{stats}</tr><tr>{values}</tr></table>',
             f'<p class="note">active: {html.escape(c["active_rule"])}; the histogram counts '
             "each value at its sketch bucket's value</p>",
             "" if c.get("expert") is None else f'<p class="note routed">'
             f'{h.text(routed_share(c["routed_tokens"], c["scored_tokens"], c["expert"]))}</p>',
             h.quantiles_table([(f"p{round(100 * q['q'])}", q["value"])
                                for q in c["quantiles"]]),
             beyond_html(c["min"], c["max"]),
             h.histogram_svg(c["histogram"]["edges"], c["histogram"]["counts"], limit)]
    missing = "no value" if c.get("expert") is None else "not routed"
    for kind in ("top", "bottom"):
        rows = "".join(
            f"<tr>{h.number(x['value'])}<td class=\"ctx\">"
            f"{h.tokens(x['tokens'], x['values'], x['focus'], limit, missing)}</td>"
            f"<td>doc {x['document']}, token {x['position']}</td></tr>" for x in c[kind])
        parts.append(f'<h4>{kind} {len(c[kind])}</h4><table class="{kind}">{rows}</table>')
    parts.append("</div>")
    return "".join(parts)


def _causal(causal: dict, note: str | None = None) -> str:
    parts = ['<div class="view causal"><h3>causal</h3>']
    a = causal["ablation"]
    if a is not None:
        k = a["controls"]
        parts += [f"<h4>ablation ({h.text(a['metric'])}, {a['windows']} windows, {a['tokens']} "
                  "tokens)</h4>",
                  '<table class="ablation"><tr><th class="num">loss change (nats)</th>'
                  '<th class="num">random units</th><th class="num">their mean</th>'
                  '<th class="num">their std</th><th class="num">percentile</th>'
                  '<th class="num" title="(1 + random units whose loss change is at least '
                  "the unit's) / (1 + random units)\">p (one-sided: loss rising)</th></tr>"
                  f'<tr>{h.number(a["effect"])}'
                  f"{h.number(k['count'])}{h.number(k['mean'])}{h.number(k['std'])}"
                  f"{h.number(k['percentile'])}{h.number(k['p'])}</tr></table>",
                  _p_note(note if k["p"] is not None else None),
                  _against_controls(a["effect"], k["mean"], k["std"])]
        if a["note"]:
            parts.append(f'<p class="note">{h.text(a["note"])}</p>')
    if causal["steering"] is not None:
        rows = "".join(f"{'<tr>'}{h.number(run['coefficient'])}<td class=\"text\">"
                       f"{h.text(run['continuation']) or '<i>(empty)</i>'}</td></tr>"
                       for run in causal["steering"])
        parts += [f"<h4>steering: {h.text(causal['steering_scale'])}</h4>",
                  f'<p>prompt <span class="text prompt">{h.text(causal["steering_prompt"])}'
                  "</span></p>",
                  f'<table class="steering"><tr><th class="num">coefficient</th>'
                  f"<th>continuation</th></tr>{rows}</table>"]
    parts.append("</div>")
    return "".join(parts)


def _against_controls(effect: float | None, mean: float | None, std: float | None) -> str:
    """A number line: the random units' mean ± std as a band, the unit's effect as a mark."""
    if effect is None or mean is None:
        return ""
    spread = std or 0.0
    lo, hi = min(effect, mean - spread, 0.0), max(effect, mean + spread, 0.0)
    span = (hi - lo) or 1.0

    def x(v: float) -> float:
        return 10 + 340 * (v - lo) / span

    # 0 named under its line, unless an end's label is there already
    zero = (f'<text x="{x(0):.1f}" y="42" font-size="11" text-anchor="middle">0</text>'
            if 60 < x(0) < 300 else "")

    return (f'<svg class="controls" width="360" height="44" role="img" aria-label="the unit\'s '
            f'effect against the random units">'
            f'<line x1="10" x2="350" y1="20" y2="20" stroke="#999"/>'
            f'<rect x="{x(mean - spread):.1f}" y="12" '
            f'width="{x(mean + spread) - x(mean - spread):.1f}" '
            f'height="16" fill="#ccc"><title>random units: mean ± std</title></rect>'
            f'<line class="mean" x1="{x(mean):.1f}" x2="{x(mean):.1f}" y1="12" y2="28" '
            f'stroke="#555" stroke-width="2"/>'
            f'<line class="zero" x1="{x(0):.1f}" x2="{x(0):.1f}" y1="8" y2="32" stroke="#000" '
            f'stroke-dasharray="2"/>{zero}'
            f'<circle cx="{x(effect):.1f}" cy="20" r="6" fill="#222">'
            f"<title>this unit: {h.shown(effect)}</title></circle>"
            f'<text x="10" y="42" font-size="11">{h.shown(lo)}</text>'
            f'<text x="350" y="42" font-size="11" text-anchor="end">{h.shown(hi)}</text></svg>'
            '<p class="note">dot: the unit\'s loss change; grey band: the random units\' mean '
            "± std (their mean: the solid tick); dashed: 0</p>")
