"""``/caikit-dask`` on the scheduler's HTTP server (the Dask dashboard's port).

The page is one self-contained HTML document (no assets to fetch) that reads the JSON
endpoint ``/caikit-dask/status.json`` every ``REFRESH`` seconds and redraws: models and
their replicas, workers with the model memory booked against what models may take,
trainings by status, recent evictions and moves. The JSON is ``caikit-dask status
--json``'s. Sent by value (see the package); tornado comes with distributed.
"""

from __future__ import annotations

import json
from typing import Any

from tornado import web

PREFIX = "/caikit-dask"
REFRESH = 2.0  # seconds between the page's reads


class _ViewHandler(web.RequestHandler):
    """A handler of the view's, answering fresh every time (never cached)."""

    def initialize(self, view: Any) -> None:
        self.view = view

    def answer(self, content_type: str, body: str) -> None:
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.write(body)


class StatusJson(_ViewHandler):
    def get(self) -> None:
        self.answer("application/json", json.dumps(self.view.status(), default=str))


class StatusPage(_ViewHandler):
    def get(self) -> None:
        source = json.dumps(PREFIX + "/status.json")
        page = PAGE.replace("__STATUS_URL__", source).replace("__REFRESH__", str(REFRESH))
        self.answer("text/html; charset=utf-8", page)


def routes(view: Any) -> list[tuple]:
    return [
        (PREFIX + r"/?", StatusPage, {"view": view}),
        (PREFIX + r"/status\.json", StatusJson, {"view": view}),
    ]


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>caikit-dask</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#1d232a;
 background:#f7f8fa}
h1{font-size:1.4em;margin:0 0 .2em} h2{font-size:1.1em;margin:1.4em 0 .5em}
.sub{color:#5b6672;font-size:.9em}
.cards{display:flex;gap:.8em;margin:1em 0;flex-wrap:wrap}
.card{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:.6em 1em;min-width:8em}
.card b{display:block;font-size:1.5em}
table{border-collapse:collapse;background:#fff;border:1px solid #dde2e8;min-width:40em}
th,td{padding:.35em .8em;border-bottom:1px solid #eceff3;text-align:left;font-size:.9em;
 vertical-align:top}
th{background:#eef1f5;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{width:12em;height:.8em;background:#e7ebf0;border-radius:3px;display:inline-block;
 vertical-align:middle;margin-right:.5em;overflow:hidden}
.bar i{display:block;height:100%;background:#3b82c4} .bar i.full{background:#d9534f}
.state{padding:0 .4em;border-radius:3px;font-size:.85em}
.loaded,.COMPLETED,.running{background:#dff3e4} .loading,.QUEUED,.RUNNING{background:#fff3cd}
.ERRORED,.CANCELED,.closing_gracefully,.paused{background:#f8d7da}
.empty{color:#8a96a3;font-style:italic} code{font-size:.85em}
</style></head><body>
<h1>caikit-dask</h1>
<div class="sub">scheduler <code id="scheduler">&hellip;</code> &middot; updated
 <span id="updated">never</span> &middot; every __REFRESH__ s</div>
<div class="cards" id="cards"></div>
<h2>Models</h2><div id="models"></div>
<h2>Workers</h2><div id="workers"></div>
<h2>Trainings</h2><div id="trainings"></div>
<h2>Recent evictions</h2><div id="evictions"></div>
<h2>Recent moves off retiring workers</h2><div id="moves"></div>
<script>
const STATUS_URL = __STATUS_URL__;
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function bytes(n) {
  if (n === null || n === undefined) return "-";
  // As dask.utils.format_bytes (what the command line prints): binary units.
  for (const [prefix, k] of [["Ti", 2 ** 40], ["Gi", 2 ** 30], ["Mi", 2 ** 20], ["ki", 2 ** 10]]) {
    if (Math.abs(n) >= 0.9 * k) return (n / k).toFixed(2) + " " + prefix + "B";
  }
  return n + " B";
}
function when(t) { return t ? new Date(t * 1000).toLocaleTimeString() : "-"; }
function table(id, head, rows, empty) {
  const box = document.getElementById(id); box.replaceChildren();
  if (!rows.length) { box.appendChild(el("div", empty, "empty")); return; }
  const t = el("table"); const tr = el("tr");
  head.forEach(h => tr.appendChild(el("th", h))); t.appendChild(tr);
  rows.forEach(cells => {
    const row = el("tr");
    cells.forEach(c => { const td = el("td");
      if (c instanceof Node) td.appendChild(c); else td.textContent = c; row.appendChild(td); });
    t.appendChild(row);
  });
  box.appendChild(t);
}
function badge(text) { return el("span", text, "state " + text); }
function bar(used, total) {
  const wrap = el("span"); const b = el("span", null, "bar"); const fill = el("i");
  const share = total ? Math.min(1, used / total) : 0;
  fill.style.width = (share * 100).toFixed(1) + "%"; if (share >= 0.95) fill.className = "full";
  b.appendChild(fill); wrap.appendChild(b);
  const of = total ? bytes(total) : "no limit";
  wrap.appendChild(document.createTextNode(bytes(used) + " of " + of));
  return wrap;
}
function render(s) {
  document.getElementById("scheduler").textContent = s.scheduler;
  document.getElementById("updated").textContent = new Date().toLocaleTimeString();
  const replicas = s.models.reduce((n, m) => n + m.replicas.length, 0);
  const counts = s.trainings.counts;
  const cards = document.getElementById("cards"); cards.replaceChildren();
  [["models", s.models.length], ["replicas", replicas], ["workers", s.workers.length],
   ["trainings running", counts.RUNNING], ["trainings queued", counts.QUEUED],
   ["evictions (recent)", s.recent.evictions.length]].forEach(([label, value]) => {
    const c = el("div", null, "card"); c.appendChild(el("b", value));
    c.appendChild(document.createTextNode(label)); cards.appendChild(c); });
  const modelRows = [];
  s.models.forEach(m => m.replicas.forEach((r, i) => modelRows.push([
    i ? "" : m.model, i ? "" : m.module_id, r.worker, badge(r.state), bytes(r.bytes),
    when(r.last_used)])));
  table("models", ["model", "module id", "worker", "state", "memory", "last used"], modelRows,
        "no models placed");
  table("workers", ["worker", "name", "status", "models", "model memory booked", "free"],
        s.workers.map(w => [w.worker, w.name, badge(w.status), w.models,
                            bar(w.booked, w.model_memory), bytes(w.free)]), "no workers");
  const trainingRows = Object.entries(counts).map(([k, v]) => [badge(k), v]);
  table("trainings", ["status", "trainings"], trainingRows, "no trainings");
  table("evictions", ["time", "model", "worker", "to make room for"],
        s.recent.evictions.map(e => [when(e.time), e.model, e.worker, e.for]), "none");
  table("moves", ["time", "model", "from", "to"],
        s.recent.moves.map(e => [when(e.time), e.model, e.from, e.to]), "none");
}
async function refresh() {
  try {
    const answer = await fetch(STATUS_URL, {cache: "no-store"});
    if (answer.ok) render(await answer.json());
  } catch (err) {
    document.getElementById("updated").textContent = "unreachable (" + err + ")";
  }
}
refresh(); setInterval(refresh, __REFRESH__ * 1000);
</script></body></html>
"""
