"""The card dashboard's own style and script (`render.card_html`), inline in the page.

The script holds no data and never parses any into markup (no innerHTML): it shows one section
at a time from the URL's hash (`#index`, `#unit/N`: works from file://), sorts the index's rows
by a header's column (numbers by their exact `data-sort`, missing values last), filters them by
the search box, and moves between units with the keyboard in the index's shown order."""

DASHBOARD_STYLE = """
header p{margin:.2em 0}.keys{color:#555;font-size:.9em}
#units th{cursor:pointer;user-select:none;border-bottom:2px solid #444}
#units th[aria-sort=ascending]::after{content:" ▲"}
#units th[aria-sort=descending]::after{content:" ▼"}
#units tr.selected{outline:2px solid #2166ac}#units td{border-bottom:1px solid #eee}
#units td a{white-space:nowrap}
.view{margin:1em 0;padding:.4em 1em;border-left:4px solid #ddd}
.pair{display:flex;gap:3em;flex-wrap:wrap}.text{font-family:monospace,monospace;white-space:pre-wrap}
nav{margin:.5em 0}
"""

SCRIPT = r"""
(function () {
  "use strict";
  var index = document.getElementById("index");
  var units = Array.prototype.slice.call(document.querySelectorAll("section.unit"));
  var body = document.getElementById("units").tBodies[0];
  var search = document.getElementById("search");
  var count = document.getElementById("shown");
  var base = document.title;
  var current = -1;  // the unit shown; -1: the index
  var selected = 0;  // the highlighted row among the shown ones

  function shownRows() {
    return Array.prototype.filter.call(body.rows, function (r) { return !r.hidden; });
  }
  function order() {
    return shownRows().map(function (r) { return Number(r.getAttribute("data-unit")); });
  }
  function go(i) { location.hash = i >= 0 ? "#unit/" + i : "#index"; }
  function step(delta) {
    var seq = order();
    if (!seq.length) { return; }
    var at = seq.indexOf(current);
    var next = at < 0 ? (delta > 0 ? 0 : seq.length - 1)
                      : Math.min(seq.length - 1, Math.max(0, at + delta));
    go(seq[next]);
  }
  function highlight(k) {
    var rows = shownRows();
    Array.prototype.forEach.call(body.rows, function (r) { r.classList.remove("selected"); });
    if (!rows.length) { return; }
    selected = Math.min(rows.length - 1, Math.max(0, k));
    rows[selected].classList.add("selected");
    rows[selected].scrollIntoView({block: "nearest"});
  }
  function show() {
    var m = /^#unit\/(\d+)$/.exec(location.hash);
    current = m && Number(m[1]) < units.length ? Number(m[1]) : -1;
    index.hidden = current >= 0;
    units.forEach(function (s, i) { s.hidden = i !== current; });
    document.title = current >= 0 ? units[current].getAttribute("data-title") + " - " + base
                                  : base;
    if (current >= 0) {
      window.scrollTo(0, 0);
      var at = order().indexOf(current);
      if (at >= 0) { selected = at; }
    }
    highlight(selected);
  }
  function sortBy(th) {
    var column = th.cellIndex;
    var numeric = th.getAttribute("data-type") === "num";
    var up = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(th.parentNode.cells, function (c) {
      c.setAttribute("aria-sort", "none");
    });
    th.setAttribute("aria-sort", up ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[column].getAttribute("data-sort");
      var y = b.cells[column].getAttribute("data-sort");
      if (x === "" || y === "") { return (x === "") - (y === ""); }  // missing last
      var d = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return up ? d : -d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    highlight(0);
  }
  function filter() {
    var q = search.value.toLowerCase();
    var shown = 0;
    Array.prototype.forEach.call(body.rows, function (r) {
      r.hidden = q !== "" && r.getAttribute("data-search").indexOf(q) < 0;
      shown += r.hidden ? 0 : 1;
    });
    count.textContent = shown + " of " + body.rows.length + " units";
    highlight(0);
  }

  Array.prototype.forEach.call(document.querySelectorAll("#units th"), function (th) {
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(th); }
    });
  });
  units.forEach(function (s) {
    s.querySelector("a.prev").addEventListener("click", function (e) {
      e.preventDefault(); step(-1);
    });
    s.querySelector("a.next").addEventListener("click", function (e) {
      e.preventDefault(); step(1);
    });
  });
  search.addEventListener("input", filter);
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (e.target === search) {
      if (e.key === "Escape") { search.blur(); }
      if (e.key === "Enter") { step(1); }
      return;
    }
    if (e.target.tagName === "TH" && (e.key === "Enter" || e.key === " ")) { return; }
    var onIndex = current < 0;
    if (e.key === "j" || e.key === "ArrowRight" || (onIndex && e.key === "ArrowDown")) {
      if (onIndex && e.key !== "ArrowRight") { highlight(selected + 1); } else { step(1); }
    } else if (e.key === "k" || e.key === "ArrowLeft" || (onIndex && e.key === "ArrowUp")) {
      if (onIndex && e.key !== "ArrowLeft") { highlight(selected - 1); } else { step(-1); }
    } else if (e.key === "Enter" && onIndex) {
      var seq = order();
      if (seq.length) { go(seq[selected]); }
    } else if (e.key === "Escape" || e.key === "i") {
      go(-1);
    } else if (e.key === "/") {
      go(-1); search.focus();
    } else {
      return;
    }
    e.preventDefault();
  });
  window.addEventListener("hashchange", show);
  show();
})();
"""
