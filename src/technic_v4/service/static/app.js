/* technic web page: run a scan, follow its progress (SSE over fetch, polling as fallback),
   sort and filter the results, chart a symbol with its trade plan; run a backtest and show its
   tables and the report's charts. No build step, no CDN. */
"use strict";

const COLUMNS = [
  ["Rank", "num", 0], ["Symbol", "text"], ["Name", "text"], ["Sector", "text"],
  ["Close", "num", 2], ["Return21D", "num", 1], ["RSI14", "num", 1], ["RSRating", "num", 0],
  ["TechRating", "num", 1], ["Signal", "text"], ["Entry", "num", 2], ["Stop", "num", 2],
  ["Target", "num", 2], ["RewardRisk", "num", 2], ["PositionSize", "num", 0],
  ["Matched", "text"],
];
const VALIDATE_DELAY_MS = 300;  // debounce of the as-you-type check
const MAX_ROWS_SHOWN = 1000;
const TERMINAL = new Set(["done", "failed", "cancelled"]);
const COLORS = {
  up: "#16a34a", down: "#dc2626", SMA20: "#f59e0b", SMA50: "#2563eb", SMA200: "#7c3aed",
  BB: "#64748b", Entry: "#0891b2", Stop: "#e11d48", Target: "#059669",
};

const $ = (id) => document.getElementById(id);
const state = {
  key: sessionStorage.getItem("technic-api-key") || "",
  job: null, rows: [], sort: { col: "Rank", dir: 1 }, chart: null, selected: null,
  abort: null,
};

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
  if (state.key) headers["X-API-Key"] = state.key;
  const r = await fetch(path, Object.assign({}, options, { headers }));
  if (r.status === 401) {
    $("key-form").hidden = false;
    $("api-key").focus();
  }
  if (!r.ok) {
    let body = null;
    try { body = await r.json(); } catch (e) { body = { message: r.statusText }; }
    throw new ApiError(r.status, body);
  }
  return r;
}

function showError(err) {
  const el = $("error");
  if (!err) { el.hidden = true; el.textContent = ""; return; }
  el.hidden = false;
  el.textContent = err.message || String(err);
}

function fmt(value, digits) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  return value.toLocaleString("en-US", {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  });
}

/* ---- set-up ---------------------------------------------------------------------------- */
async function loadStore() {
  try {
    const h = await (await fetch("/health")).json();
    const s = h.store || {};
    $("store").textContent = s.state === "updating"
      ? `updating the store (last session ${s.last_session || "none yet"})…`
      : s.state === "ready"
      ? `${s.symbols.toLocaleString()} symbols · last session ${s.last_session}` +
        (h.redis ? ` · Redis ${h.redis.status}` : "")
      : "store empty: the first scan fills it";
  } catch (e) {
    $("store").textContent = "service unreachable";
  }
}

async function loadOptions() {
  const opts = await (await api("/v1/options")).json();
  const sel = $("sectors");
  sel.replaceChildren(...opts.sectors.map((s) => new Option(s, s)));
  sel.dataset.ready = "1";
}

async function loadPresets() {
  const { presets } = await (await api("/v1/screens/presets")).json();
  state.presets = Object.fromEntries(presets.map((p) => [p.id, p]));
  const sel = $("preset");
  sel.replaceChildren(new Option("(none)", ""), ...presets.map((p) => {
    const o = new Option(p.name, p.id);
    o.title = p.description;
    return o;
  }));
  sel.dataset.ready = "1";
  const bt = $("bt-preset");
  bt.replaceChildren(new Option("(none)", ""), ...presets.map((p) => new Option(p.name, p.id)));
  bt.dataset.ready = "1";
}

/* ---- the screen box: validate as you type ---------------------------------------------- */
function screenFields() {
  const out = {};
  const where = $("where").value.trim();
  if (where) out.where = where;
  if ($("preset").value) out.preset = $("preset").value;
  return out;
}

function scheduleCheck() {
  clearTimeout(state.checkTimer);
  state.checkTimer = setTimeout(checkScreen, VALIDATE_DELAY_MS);
}

/* Ask /v1/screens/validate; an error shows its caret block under the box (a later answer
   wins: each check has a sequence number). */
async function checkScreen() {
  const seq = (state.checkSeq = (state.checkSeq || 0) + 1);
  const el = $("where-check");
  const preset = state.presets && state.presets[$("preset").value];
  $("preset-expr").textContent = preset ? `${preset.description}\n${preset.expression}` : "";
  const body = screenFields();
  if (!body.where) {
    $("where").removeAttribute("aria-invalid");
    el.dataset.state = "empty";
    el.textContent = "";
    if (!body.preset) return;
  }
  let text, st;
  try {
    const r = await api("/v1/screens/validate", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const v = await r.json();
    const n = v.where ? v.where.clauses.length : 0;
    st = "ok";
    text = `✓ ${n} clause${n === 1 ? "" : "s"} · needs ${v.bars} sessions of history`;
  } catch (err) {
    const b = (err && err.body) || {};
    st = "error";
    text = b.caret ? `${b.caret}\n${b.message}` : (b.message || String(err));
  }
  if (seq !== state.checkSeq) return;  // a newer check is on its way
  el.dataset.state = st;
  el.textContent = text;
  if (st === "error") $("where").setAttribute("aria-invalid", "true");
  else $("where").removeAttribute("aria-invalid");
}

/* ---- running a scan -------------------------------------------------------------------- */
function scanBody() {
  const body = {};
  const num = (id) => ($(id).value === "" ? null : Number($(id).value));
  if (num("max-symbols") !== null) body.max_symbols = Math.trunc(num("max-symbols"));
  if (num("top-n") !== null) body.top_n = Math.trunc(num("top-n"));
  if (num("min-rating")) body.min_tech_rating = num("min-rating");
  if ($("as-of").value) body.as_of_date = $("as-of").value;
  const sectors = Array.from($("sectors").selectedOptions, (o) => o.value);
  if (sectors.length) body.sectors = sectors;
  if ($("only-tradeable").checked) body.only_tradeable = true;
  if ($("allow-shorts").checked) body.allow_shorts = true;
  return Object.assign(body, screenFields());
}

async function runScan(ev) {
  ev.preventDefault();
  showError(null);
  $("message").textContent = "";
  if (state.abort) state.abort.abort();
  setProgress({ state: "queued", progress: { percent: 0 } });
  $("run").disabled = true;
  try {
    const r = await api("/v1/scan", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(scanBody()),
    });
    const job = await r.json();
    state.job = job.id;
    $("cancel").disabled = TERMINAL.has(job.state);
    state.abort = new AbortController();
    const final = TERMINAL.has(job.state) ? job
      : await follow(`/v1/scan/${job.id}`, setProgress, state.abort);
    await finished(final);
  } catch (err) {
    setProgress({ state: "failed", progress: { percent: 0 } }, err.message);
    showError(err);
  } finally {
    $("run").disabled = false;
    $("cancel").disabled = true;
  }
}

/* Follow a job (a scan or a backtest at ``base``) to its end: SSE read through fetch (so the
   API key header can be sent), falling back to long polling when streaming is unavailable.
   Calls show(status) on progress; resolves with the final status. */
async function follow(base, show, ctl) {
  try {
    const r = await api(`${base}/events`, {
      headers: { Accept: "text/event-stream" }, signal: ctl.signal,
    });
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const chunk = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const data = chunk.split("\n").filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).trim()).join("\n");
        if (!data) continue;
        const status = JSON.parse(data);
        if (TERMINAL.has(status.state)) { reader.cancel(); return status; }
        show(status);
      }
    }
  } catch (err) {
    if (err.name === "AbortError") throw err;
    if (err instanceof ApiError && err.status !== 404) throw err;
  }
  for (;;) {  // fallback: long polling
    const status = await (await api(`${base}?wait=10`, { signal: ctl.signal })).json();
    if (TERMINAL.has(status.state)) return status;
    show(status);
  }
}

function setProgress(status, note) {
  const p = status.progress || {};
  const pct = status.state === "done" ? 100 : Math.max(0, Math.min(100, p.percent || 0));
  $("progress-fill").style.width = `${pct}%`;
  $("progress").setAttribute("aria-valuenow", String(Math.round(pct)));
  const st = $("status");
  st.dataset.state = status.state;
  let text;
  if (note) text = note;
  else if (status.state === "running" || status.state === "queued") {
    text = status.state === "queued" ? "Queued…" : `Stage ${p.stage_index}/${p.stages} ` +
      `${p.stage}` + (p.total ? ` · ${p.done}/${p.total}` : "") + ` · ${pct.toFixed(0)}%` +
      (p.eta_seconds !== null && p.eta_seconds !== undefined
        ? ` · ETA ${p.eta_seconds.toFixed(1)} s` : "");
  } else if (status.state === "done") {
    text = `Done in ${(p.elapsed_seconds || 0).toFixed(2)} s` +
      (status.source && status.source !== "computed" ? ` (from ${status.source} cache)` : "");
  } else if (status.state === "failed") {
    text = `Failed: ${(status.error && status.error.message) || "unknown error"}`;
  } else text = status.state;
  st.textContent = text;
}

async function finished(status) {
  if (status.state !== "done") {
    setProgress(status);
    if (status.state === "failed") showError(new Error(status.error.message));
    return;
  }
  const res = await (await api(`/v1/scan/${status.id}/results`)).json();
  state.rows = res.rows;
  $("message").textContent = res.message;
  $("results").hidden = false;
  renderTable();
  setProgress(status);  // "done" only once the table shows the results
}

async function cancelScan() {
  if (!state.job) return;
  try {
    await api(`/v1/scan/${state.job}`, { method: "DELETE" });
  } catch (err) {
    showError(err);
  }
}

/* ---- the table ------------------------------------------------------------------------- */
function renderHead() {
  const tr = document.createElement("tr");
  for (const [col, kind] of COLUMNS) {
    const th = document.createElement("th");
    th.textContent = col;
    th.dataset.col = col;
    if (kind === "text") th.className = "text";
    if (state.sort.col === col) {
      th.setAttribute("aria-sort", state.sort.dir > 0 ? "ascending" : "descending");
    }
    th.addEventListener("click", () => {
      state.sort = { col, dir: state.sort.col === col ? -state.sort.dir : 1 };
      renderTable();
    });
    tr.append(th);
  }
  $("table").tHead.replaceChildren(tr);
}

function visibleRows() {
  const q = $("filter").value.trim().toLowerCase();
  const sig = $("signal-filter").value;
  let rows = state.rows.filter((r) => (!sig || r.Signal === sig) && (!q ||
    ["Symbol", "Name", "Sector", "Industry", "Signal"].some(
      (c) => r[c] && String(r[c]).toLowerCase().includes(q))));
  const { col, dir } = state.sort;
  rows = rows.slice().sort((a, b) => {
    const x = a[col], y = b[col];
    if (x === null || x === undefined) return (y === null || y === undefined) ? 0 : 1;
    if (y === null || y === undefined) return -1;
    return (typeof x === "number" ? x - y : String(x).localeCompare(String(y))) * dir;
  });
  return rows;
}

function renderTable() {
  renderHead();
  const rows = visibleRows();
  const body = document.createDocumentFragment();
  for (const r of rows.slice(0, MAX_ROWS_SHOWN)) {
    const tr = document.createElement("tr");
    tr.dataset.symbol = r.Symbol;
    if (r.Symbol === state.selected) tr.className = "selected";
    for (const [col, kind, digits] of COLUMNS) {
      const td = document.createElement("td");
      td.dataset.col = col;
      if (kind === "text") {
        td.className = col === "Name" ? "text name" : col === "Matched" ? "text matched" : "text";
      }
      if (col === "Symbol") {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "sym";
        b.textContent = r.Symbol;
        b.addEventListener("click", () => showSymbol(r.Symbol));
        td.append(b);
      } else {
        td.textContent = fmt(r[col], digits);
        if (col === "Signal" && r.Signal) td.classList.add(`sig-${r.Signal.replace(/\s+/g, "-")}`);
        if (col === "Name" || col === "Matched") td.title = r[col] || "";
      }
      td.dataset.value = r[col] === null || r[col] === undefined ? "" : String(r[col]);
      tr.append(td);
    }
    body.append(tr);
  }
  $("table").tBodies[0].replaceChildren(body);
  $("count").textContent = `${rows.length} of ${state.rows.length} rows` +
    (rows.length > MAX_ROWS_SHOWN ? ` (first ${MAX_ROWS_SHOWN} shown)` : "");
}

async function downloadCsv() {
  if (!state.job) return;
  try {
    const r = await api(`/v1/scan/${state.job}/results?format=csv`, {
      headers: { Accept: "text/csv" },
    });
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = `technic-scan-${state.job.slice(0, 8)}.csv`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  } catch (err) {
    showError(err);
  }
}

/* ---- the chart ------------------------------------------------------------------------- */
function series(dates, values) {
  const out = [];
  for (let i = 0; i < dates.length; i++) {
    if (values[i] !== null) out.push({ time: dates[i], value: values[i] });
  }
  return out;
}

async function showSymbol(sym) {
  showError(null);
  state.selected = sym;
  for (const tr of $("table").tBodies[0].rows) {
    tr.classList.toggle("selected", tr.dataset.symbol === sym);
  }
  const chartEl = $("chart");
  chartEl.dataset.ready = "";
  let d;
  try {
    const q = state.job ? `?job=${encodeURIComponent(state.job)}` : "";
    d = await (await api(`/v1/symbol/${encodeURIComponent(sym)}${q}`)).json();
  } catch (err) {
    showError(err);
    return;
  }
  $("detail").hidden = false;
  document.querySelector(".layout").classList.add("with-detail");
  $("detail-title").textContent = `${d.symbol} · ${d.name || ""}`;
  if (state.chart) state.chart.remove();
  const LC = window.LightweightCharts;
  const chart = LC.createChart(chartEl, {
    autoSize: true,
    layout: { background: { color: "#ffffff" }, textColor: "#374151", attributionLogo: true },
    grid: { vertLines: { color: "#f3f4f6" }, horzLines: { color: "#f3f4f6" } },
    rightPriceScale: { borderColor: "#e5e7eb" },
    timeScale: { borderColor: "#e5e7eb" },
  });
  state.chart = chart;
  const h = d.history;
  const row = d.scan && d.scan.row;
  const levels = row ? ["Entry", "Stop", "Target"].map((k) => row[k]).filter((v) => v !== null)
    : [];
  const candles = chart.addSeries(LC.CandlestickSeries, {
    upColor: COLORS.up, downColor: COLORS.down, borderVisible: false,
    wickUpColor: COLORS.up, wickDownColor: COLORS.down,
    // Keep the plan's entry, stop and target in view.
    autoscaleInfoProvider: (original) => {
      const r = original();
      if (r && r.priceRange && levels.length) {
        r.priceRange.minValue = Math.min(r.priceRange.minValue, ...levels);
        r.priceRange.maxValue = Math.max(r.priceRange.maxValue, ...levels);
      }
      return r;
    },
  });
  candles.setData(h.date.map((t, i) => ({
    time: t, open: h.open[i], high: h.high[i], low: h.low[i], close: h.close[i],
  })));
  const legend = [];
  const line = (name, values, color, style) => {
    const s = chart.addSeries(LC.LineSeries, {
      color, lineWidth: name.startsWith("BB") ? 1 : 2, lineStyle: style || 0,
      priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: false,
    });
    s.setData(series(h.date, values));
  };
  for (const p of ["SMA20", "SMA50", "SMA200"]) {
    line(p, d.indicators[p], COLORS[p]);
    legend.push([p, COLORS[p]]);
  }
  line("BBUpper", d.indicators.BBUpper, COLORS.BB, 2);
  line("BBLower", d.indicators.BBLower, COLORS.BB, 2);
  legend.push(["Bollinger 20,2", COLORS.BB]);
  const plan = $("plan");
  plan.replaceChildren();
  if (row) {
    for (const k of ["Entry", "Stop", "Target"]) {
      if (row[k] === null) continue;
      candles.createPriceLine({
        price: row[k], color: COLORS[k], lineWidth: 2, lineStyle: 0,
        axisLabelVisible: true, title: k,
      });
      legend.push([`${k} ${fmt(row[k], 2)}`, COLORS[k]]);
    }
    for (const [k, digits] of [["Signal"], ["TechRating", 1], ["RewardRisk", 2],
      ["PositionSize", 0], ["Entry", 2], ["Stop", 2], ["Target", 2], ["ATR14", 2]]) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = fmt(row[k], digits);
      dd.dataset.key = k;
      plan.append(dt, dd);
    }
    $("rationale").textContent = row.Rationale || "";
  } else {
    $("rationale").textContent = "Not in the latest scan's results.";
  }
  $("legend").replaceChildren(...legend.map(([label, color]) => {
    const s = document.createElement("span");
    s.textContent = label;
    s.style.setProperty("--c", color);
    return s;
  }));
  chart.timeScale().fitContent();
  chartEl.dataset.symbol = d.symbol;
  chartEl.dataset.bars = String(d.bars);
  requestAnimationFrame(() => requestAnimationFrame(() => { chartEl.dataset.ready = "1"; }));
}

/* ---- saved screens and watchlists ------------------------------------------------------ */
function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function pct(value) {
  return value === null || value === undefined ? "–" : `${value > 0 ? "+" : ""}${fmt(value, 1)}%`;
}

async function loadSaved() {
  const data = await (await api("/v1/screens")).json();
  const body = $("saved-table").querySelector("tbody");
  body.replaceChildren();
  $("saved-empty").hidden = data.screens.length > 0;
  $("saved-table").hidden = data.screens.length === 0;
  for (const s of data.screens) {
    const tr = document.createElement("tr");
    tr.dataset.screen = s.name;
    const name = document.createElement("button");
    name.type = "button";
    name.className = "sym";
    name.textContent = s.name;
    name.addEventListener("click", () => showChanges(s.name).catch(showError));
    const td = document.createElement("td");
    td.className = "text";
    td.appendChild(name);
    tr.appendChild(td);
    const r = s.last_run;
    cell(tr, s.enabled ? "yes" : "no", "text");
    cell(tr, r ? r.session + (r.catch_up ? " (caught up)" : "") : "never", "text");
    for (const k of ["rows", "entered", "left", "changed"]) {
      cell(tr, r ? String(r[k]) : "–").dataset.col = k;
    }
    body.appendChild(tr);
  }
  const pick = $("bt-screen");
  const kept = pick.value;
  pick.replaceChildren(new Option("(none)", ""),
    ...data.screens.map((s) => new Option(s.name, s.name)));
  if (data.screens.some((s) => s.name === kept)) pick.value = kept;
  $("saved").dataset.ready = "1";
}

async function showChanges(name) {
  const s = await (await api(`/v1/screens/${encodeURIComponent(name)}`)).json();
  const run = s.last_run;
  $("changes").hidden = false;
  $("changes-title").textContent = run ? `${name}: ${run.session}` : `${name}: never run`;
  const ch = (run && run.changes) || {};
  const fill = (id, items, text) => {
    const ul = $(id);
    ul.replaceChildren();
    for (const it of items || []) {
      const li = document.createElement("li");
      li.textContent = text(it);
      li.dataset.symbol = it.Symbol;
      ul.appendChild(li);
    }
  };
  const row = (r) => `${r.Symbol} ${r.Signal || ""} ${fmt(r.TechRating, 1)}`;
  fill("entered", ch.entered, row);
  fill("left", ch.left, row);
  fill("changed", ch.changed, (c) => `${c.Symbol}: ${c.From} → ${c.To}`);
  $("changes").dataset.screen = name;
}

async function loadWatchlists() {
  const data = await (await api("/v1/watchlists")).json();
  const pick = $("watchlist");
  pick.replaceChildren();
  for (const w of data.watchlists) {
    const o = document.createElement("option");
    o.value = o.textContent = w.name;
    pick.appendChild(o);
  }
  const any = data.watchlists.length > 0;
  $("watch-empty").hidden = any;
  $("watch-pick").hidden = !any;
  $("watch-table").hidden = !any;
  if (any) await showWatchlist(pick.value);
}

async function showWatchlist(name) {
  const w = await (await api(`/v1/watchlists/${encodeURIComponent(name)}`)).json();
  const body = $("watch-table").querySelector("tbody");
  body.replaceChildren();
  for (const it of w.items) {
    const tr = document.createElement("tr");
    tr.dataset.symbol = it.symbol;
    cell(tr, it.symbol, "text");
    cell(tr, it.Signal || "–", `text sig-${(it.Signal || "").replace(" ", "-")}`);
    cell(tr, fmt(it.Close, 2));
    cell(tr, fmt(it.Stop, 2));
    cell(tr, pct(it.ToStopPct)).dataset.col = "ToStopPct";
    cell(tr, fmt(it.Target, 2));
    cell(tr, pct(it.ToTargetPct)).dataset.col = "ToTargetPct";
    body.appendChild(tr);
  }
  $("watch-table").dataset.watchlist = name;
}

/* ---- backtests ------------------------------------------------------------------------- */
async function loadBacktestOptions() {
  const o = await (await api("/v1/backtest/options")).json();
  for (const id of ["bt-from", "bt-to"]) {
    $(id).min = o.first_session;
    $(id).max = o.last_session;
  }
  if (!$("bt-from").value) $("bt-from").value = o.defaults.from;  // the last stored year
  if (!$("bt-to").value) $("bt-to").value = o.defaults.to;
  const rank = $("bt-rank-by");
  rank.replaceChildren(new Option("(none)", ""), ...o.rank_columns.map((c) => new Option(c, c)));
  $("backtest").dataset.ready = "1";
}

function backtestBody() {
  const body = { from: $("bt-from").value, to: $("bt-to").value };
  const int = (id) => ($(id).value === "" ? null : Math.trunc(Number($(id).value)));
  if ($("bt-screen").value) body.screen = $("bt-screen").value;
  if ($("bt-preset").value) body.preset = $("bt-preset").value;
  const where = $("bt-where").value.trim();
  if (where) body.where = where;
  const hs = $("bt-horizons").value.trim();
  if (hs) body.horizons = hs;
  if ($("bt-rank-by").value) body.rank_by = $("bt-rank-by").value;
  for (const [id, key] of [["bt-every", "every"], ["bt-max-hold", "max_hold"],
    ["bt-max-positions", "max_positions"], ["bt-top-n", "top_n"]]) {
    if (int(id) !== null) body[key] = int(id);
  }
  return body;
}

function btShowError(err) {
  const el = $("bt-error");
  el.hidden = !err;
  el.textContent = err ? err.message || String(err) : "";
}

function btProgress(status) {
  const p = status.progress || {};
  const done = status.state === "done";
  const pct = done ? 100 : Math.max(0, Math.min(100, p.percent || 0));
  $("bt-progress").querySelector(".fill").style.width = `${pct}%`;
  $("bt-progress").setAttribute("aria-valuenow", String(Math.round(pct)));
  const st = $("bt-status");
  st.dataset.state = status.state;
  const eta = p.eta_seconds !== null && p.eta_seconds !== undefined
    ? ` · ETA ${p.eta_seconds.toFixed(1)} s` : "";
  st.textContent = status.state === "queued" ? "Queued (one backtest runs at a time)…"
    : status.state === "running" ? `${p.step || "starting"}` +
      (p.total ? ` · ${p.done}/${p.total}` : "") + ` · ${pct.toFixed(0)}%${eta}`
    : done ? `Done in ${(p.elapsed_seconds || 0).toFixed(2)} s`
    : status.state === "failed" ? `Failed: ${(status.error && status.error.message) || "?"}`
    : status.state === "cancelled" ? "Cancelled." : status.state;
}

function cellText(v) {
  if (v === null || v === undefined) return "";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  return Math.abs(v) >= 1e4 ? fmt(v, 2) : String(Number(v.toPrecision(4)));
}

function renderBacktest(res) {
  $("bt-message").textContent = res.message;
  const charts = $("bt-charts");
  charts.replaceChildren(...res.charts.map((c) => {
    if (c.svg === null) {
      const p = document.createElement("p");
      p.className = "note";
      p.dataset.chart = c.name;
      p.textContent = `${c.title}: ${c.note}.`;
      return p;
    }
    const fig = document.createElement("figure");
    fig.dataset.chart = c.name;
    const img = document.createElement("img");  // an <img>: the SVG runs no script
    img.alt = c.title;
    img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(c.svg)}`;
    const cap = document.createElement("figcaption");
    cap.textContent = c.title;
    fig.append(img, cap);
    return fig;
  }));
  const tables = $("bt-tables");
  tables.replaceChildren(...res.tables.map((t) => {
    const div = document.createElement("div");
    const h = document.createElement("h3");
    h.textContent = t.title;
    const table = document.createElement("table");
    table.dataset.title = t.title;
    const head = document.createElement("tr");
    for (const c of t.columns) {
      const th = document.createElement("th");
      th.textContent = c;
      th.className = "text";
      head.append(th);
    }
    table.createTHead().append(head);
    const body = table.createTBody();
    for (const r of t.rows) {
      const tr = document.createElement("tr");
      r.forEach((v, i) => {
        const td = cell(tr, cellText(v), typeof v === "number" ? "" : "text");
        td.dataset.col = t.columns[i];
        td.dataset.value = v === null ? "" : String(v);
      });
      body.append(tr);
    }
    div.append(h, table);
    return div;
  }));
  const frames = $("bt-frames");
  frames.replaceChildren(...Object.entries(res.frames).map(([name, f]) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = `${name}.parquet (${f.rows.toLocaleString("en-US")} rows)`;
    b.addEventListener("click", () => download(f.parquet,
      `technic-backtest-${state.btJob.slice(0, 8)}-${name}.parquet`).catch(btShowError));
    return b;
  }));
  $("bt-results").hidden = false;
}

async function download(path, filename) {
  const r = await api(path, { headers: { Accept: "*/*" } });
  const url = URL.createObjectURL(await r.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function runBacktest(ev) {
  ev.preventDefault();
  btShowError(null);
  $("bt-results").hidden = true;
  if (state.btAbort) state.btAbort.abort();
  btProgress({ state: "queued", progress: { percent: 0 } });
  $("bt-run").disabled = true;
  try {
    const r = await api("/v1/backtest", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(backtestBody()),
    });
    const job = await r.json();
    state.btJob = job.id;
    $("bt-cancel").disabled = false;
    state.btAbort = new AbortController();
    const final = TERMINAL.has(job.state) ? job
      : await follow(`/v1/backtest/${job.id}`, btProgress, state.btAbort);
    $("bt-cancel").disabled = true;
    if (final.state === "done") {
      const full = await (await api(`/v1/backtest/${job.id}`)).json();
      renderBacktest(full.results);
    } else if (final.state === "failed") btShowError(new Error(final.error.message));
    btProgress(final);  // "done" only once the results show
  } catch (err) {
    btProgress({ state: "failed", error: { message: err.message }, progress: {} });
    btShowError(err);
  } finally {
    $("bt-run").disabled = false;
    $("bt-cancel").disabled = true;
  }
}

async function cancelBacktest() {
  if (!state.btJob) return;
  try {
    await api(`/v1/backtest/${state.btJob}`, { method: "DELETE" });
  } catch (err) {
    btShowError(err);
  }
}

/* ---- wiring ---------------------------------------------------------------------------- */
function init() {
  $("scan-form").addEventListener("submit", runScan);
  $("cancel").addEventListener("click", cancelScan);
  $("filter").addEventListener("input", renderTable);
  $("signal-filter").addEventListener("change", renderTable);
  $("csv").addEventListener("click", downloadCsv);
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.key = $("api-key").value;
    sessionStorage.setItem("technic-api-key", state.key);
    $("key-form").hidden = true;
    loadOptions().catch(showError);
    loadPresets().catch(showError);
    loadSaved().catch(showError);
    loadWatchlists().catch(showError);
    loadBacktestOptions().catch(btShowError);
  });
  $("where").addEventListener("input", scheduleCheck);
  $("preset").addEventListener("change", checkScreen);
  $("bt-form").addEventListener("submit", runBacktest);
  $("bt-cancel").addEventListener("click", cancelBacktest);
  $("watchlist").addEventListener("change", () => showWatchlist($("watchlist").value)
    .catch(showError));
  loadStore();
  loadOptions().catch(showError);
  loadPresets().catch(showError);
  loadBacktestOptions().catch(btShowError);
  const linked = new URLSearchParams(location.hash.slice(1));  // a daily-run message's link
  loadSaved().then(() => linked.get("screen") && showChanges(linked.get("screen")))
    .catch(showError);
  loadWatchlists().then(() => {
    const w = linked.get("watchlist");
    if (w) { $("watchlist").value = w; return showWatchlist(w); }
    return null;
  }).catch(showError);
}

document.addEventListener("DOMContentLoaded", init);
