// qtaskdist live task table (anywidget front end).
//
// The browser talks to the server extension itself: it lists tasks over REST and follows
// GET events (SSE; long poll when SSE fails), with the page's cookies and the _xsrf cookie
// for POSTs. Nothing depends on the kernel, so the table keeps moving while a cell blocks
// and after a kernel restart. Rows live in a Map; only one page is rendered, and DOM
// updates are batched into one requestAnimationFrame, so 10,000 tasks stay smooth.
// Merge rules match qtaskdist_jupyter.kernel.widget.TaskTableState.

const STATUSES = ["pending", "queued", "running", "completed", "failed", "cancelled"];
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const NATURAL = new Intl.Collator(undefined, { numeric: true });
const HINTS = [
  [/parse|syntax|invalid circuit|line \d+/i, "Check the circuit text at the line and column shown."],
  [/time ?limit|timed out|timeout/i, "Raise time_limit_s or split the work into smaller tasks."],
  [/qubits|instructions|limit/i, "The task is over a configured limit; shrink the circuit."],
  [/parameter/i, "Bind every circuit parameter (--sweep NAME=START:STOP:NUM)."],
  [/cancel/i, "Cancelled: press retry to run it again."],
  [/qbraid|device|api key/i, "Check the backend device id and QBRAID_API_KEY on the workers."],
];

function pageBaseUrl(model) {
  try {
    const el = document.getElementById("jupyter-config-data");
    if (el) {
      const cfg = JSON.parse(el.textContent || "{}");
      if (cfg.baseUrl) return cfg.baseUrl;
    }
  } catch (e) { /* not JupyterLab */ }
  if (document.body && document.body.dataset && document.body.dataset.baseUrl) {
    return document.body.dataset.baseUrl;
  }
  return model.get("base_url") || "/";
}

function cookie(name) {
  // Anchored on ";" rather than \b: a value may end in "=" or "|".
  const m = document.cookie.match("(?:^|;\\s*)" + name + "=([^;]*)");
  return m ? decodeURIComponent(m[1]) : "";
}

// Filters are view state first: after a kernel restart no kernel holds the model, and
// a failing save_changes() must not stop the table from filtering.
function setTrait(model, name, value) {
  model.set(name, value);
  try { model.save_changes(); } catch (e) { /* no kernel behind the model any more */ }
}

function epoch(v) {
  if (v === null || v === undefined || v === "") return null;
  if (typeof v === "number") return v;
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : t / 1000;
}

function dur(s) {
  if (s === null || s === undefined) return "";
  s = Math.max(0, s);
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

class Table {
  constructor(model, el) {
    this.model = model;
    this.el = el;
    this.rows = new Map();
    this.trs = new Map(); // task id -> its <tr>, reused across renders
    this.page = 0;
    this.selected = null;
    this.detail = null; // full row of the selected task
    this.cursor = null;
    this.pendingFetch = new Set();
    this.fetchingBatches = new Set();
    this.frame = 0;
    this.closed = false;
    this.source = null;
    this.api = pageBaseUrl(model).replace(/\/?$/, "/") + "qtaskdist/api/";
    this.build();
  }

  // ---- HTTP ------------------------------------------------------------------------
  url(path, params) {
    const q = new URLSearchParams(params || {});
    const token = this.model.get("token");
    if (token) q.set("token", token);
    const qs = q.toString();
    return this.api + path + (qs ? "?" + qs : "");
  }

  async call(method, path, params) {
    const headers = { Accept: "application/json" };
    const xsrf = cookie("_xsrf");
    if (xsrf) headers["X-XSRFToken"] = xsrf;
    const r = await fetch(this.url(path, params), { method, headers, credentials: "same-origin" });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.detail || `${method} ${path}: HTTP ${r.status}`);
    return body;
  }

  // ---- data ------------------------------------------------------------------------
  applyRow(t) {
    const updated = epoch(t.updated_at) || 0;
    const cur = this.rows.get(t.task_id);
    this.pendingFetch.delete(t.task_id);
    if (cur && cur.updated > updated) {
      // Newer events own status and times; the row fills what events never carry.
      cur.name = t.name;
      cur.created = epoch(t.created_at) || cur.created;
      cur.error = t.error;
      return;
    }
    this.rows.set(t.task_id, {
      task_id: t.task_id, name: t.name, task_type: t.task_type, status: t.status,
      attempt: t.attempt || 0, batch_id: t.batch_id, created: epoch(t.created_at),
      started: epoch(t.started_at), finished: epoch(t.finished_at), updated, error: t.error,
    });
  }

  applyEvent(ev) {
    // A batch handle's view counts and shows its own batch only.
    if (this.batchOnly && ev.batch_id !== this.batchOnly) return;
    if (ev.status === "deleted") {
      this.rows.delete(ev.task_id);
      if (this.selected === ev.task_id) { this.selected = null; this.renderDetail(); }
      this.schedule();
      return;
    }
    const ts = ev.ts || Date.now() / 1000;
    let row = this.rows.get(ev.task_id);
    if (!row) {
      row = { task_id: ev.task_id, name: null, task_type: ev.task_type, status: null, attempt: 0,
        batch_id: ev.batch_id, created: ts, started: null, finished: null, updated: 0, error: null };
      this.rows.set(ev.task_id, row);
      this.needRow(row);
    }
    row.status = ev.status;
    row.attempt = ev.attempt ?? row.attempt;
    if (ev.status === "running") { row.started = ts; row.finished = null; }
    else if (TERMINAL.has(ev.status)) row.finished = ts;
    else { row.started = null; row.finished = null; }
    row.updated = Math.max(row.updated, ts);
    if (ev.id) this.cursor = ev.id;
    if (this.selected === ev.task_id) this.loadDetail(ev.task_id);
    this.schedule();
  }

  // A new task seen only through an event: fetch its batch once (one request for a whole
  // sweep), or the single row, instead of one GET per event.
  needRow(row) {
    if (row.batch_id) {
      if (this.fetchingBatches.has(row.batch_id)) return;
      this.fetchingBatches.add(row.batch_id);
      setTimeout(() => this.loadAll({ batch_id: row.batch_id })
        .finally(() => this.fetchingBatches.delete(row.batch_id)), 300);
      return;
    }
    this.pendingFetch.add(row.task_id);
    setTimeout(() => {
      if (!this.pendingFetch.has(row.task_id)) return;
      this.call("GET", "tasks/" + row.task_id).then((t) => { this.applyRow(t); this.schedule(); })
        .catch(() => this.pendingFetch.delete(row.task_id));
    }, 300);
  }

  async loadAll(filter) {
    let cursor = null;
    let n = 0;
    do {
      // Only what a row shows: never payloads or results (a statevector is megabytes).
      const params = { limit: "1000", fields: ROW_FIELDS, ...(filter || {}) };
      if (cursor) params.cursor = cursor;
      const page = await this.call("GET", "tasks", params);
      for (const t of page.tasks) this.applyRow(t);
      n += page.tasks.length;
      cursor = page.next_cursor;
      this.schedule();
    } while (cursor && n < 50000 && !this.closed);
  }

  async start() {
    try {
      // The cursor first: events after it are not lost while the list loads.
      const first = await this.call("GET", "events", { timeout_s: "0" });
      this.cursor = first.cursor;
      const batch = this.model.get("batch_id");
      await this.loadAll(batch ? { batch_id: batch } : null);
      this.setError("");
    } catch (e) {
      this.setError("cannot reach the qtaskdist API: " + e.message);
    }
    this.follow();
  }

  follow() {
    if (this.closed) return;
    if (typeof EventSource !== "undefined" && !this.sseFailed) {
      const params = this.cursor ? { after: this.cursor } : {};
      const src = new EventSource(this.url("events", params), { withCredentials: true });
      this.source = src;
      let opened = false;
      src.addEventListener("task", (m) => {
        try { this.applyEvent(JSON.parse(m.data)); } catch (e) { /* skip a bad frame */ }
      });
      src.onopen = () => { opened = true; this.setError(""); };
      src.onerror = () => {
        if (!opened) { src.close(); this.sseFailed = true; this.follow(); }
        // else: EventSource reconnects by itself with Last-Event-ID
      };
      return;
    }
    this.longPoll();
  }

  async longPoll() {
    while (!this.closed) {
      try {
        const params = { timeout_s: String(this.model.get("poll_timeout_s") || 25) };
        if (this.cursor) params.after = this.cursor;
        const body = await this.call("GET", "events", params);
        for (const ev of body.events) this.applyEvent(ev);
        this.cursor = body.cursor;
        this.setError("");
      } catch (e) {
        this.setError("lost the qtaskdist API, retrying: " + e.message);
        await new Promise((r) => setTimeout(r, 3000));
      }
    }
  }

  async loadDetail(id) {
    try {
      const t = await this.call("GET", "tasks/" + id);
      this.applyRow(t);
      if (this.selected === id) { this.detail = t; this.renderDetail(); }
      this.schedule();
    } catch (e) { this.setError(e.message); }
  }

  async act(id, action) {
    try {
      const t = await this.call("POST", `tasks/${id}/${action}`);
      this.applyRow(t);
      this.schedule();
    } catch (e) { this.setError(`${action} ${id.slice(0, 8)}: ${e.message}`); }
  }

  // ---- view ------------------------------------------------------------------------
  build() {
    const m = this.model;
    this.err = h("div", { class: "qtd-err" });
    this.countsEl = h("div", { class: "qtd-counts" });
    this.batchesEl = h("div", { class: "qtd-batches" });
    const sel = (name, values) => {
      const s = h("select", { class: "qtd-filter-" + name, onchange: () => {
        setTrait(m, name, s.value); this.page = 0; this.schedule(); } },
      h("option", { value: "" }, "all " + (name === "task_type" ? "types" : name)),
      ...values.map((v) => h("option", { value: v }, v)));
      s.value = m.get(name) || "";
      return s;
    };
    this.statusSel = sel("status", STATUSES);
    this.typeSel = sel("task_type", ["simulate", "c_qir_convert", "backend_run"]);
    this.batchInput = h("input", { class: "qtd-filter-batch", placeholder: "batch id",
      onchange: () => { setTrait(m, "batch_id", this.batchInput.value.trim());
        this.page = 0; this.schedule(); } });
    this.batchInput.value = m.get("batch_id") || "";
    this.pager = h("span", { class: "qtd-pager" });
    const prev = h("button", { class: "qtd-prev", onclick: () => { this.page = Math.max(0, this.page - 1); this.schedule(); } }, "‹");
    const next = h("button", { class: "qtd-next", onclick: () => { this.page += 1; this.schedule(); } }, "›");
    this.tbody = h("tbody");
    const cols = ["id", "name", "type", "status", "attempt", "queue wait", "run time", "age", ""];
    this.detailEl = h("div", { class: "qtd-detail" });
    // A batch handle's view (opened on one batch) is marked, so pages and tests can tell
    // it from the full table.
    this.batchOnly = m.get("batch_id") || "";
    const rootClass = "qtd-root" + (this.batchOnly ? " qtd-batch-view" : "");
    this.el.append(h("div", { class: rootClass }, this.err, this.countsEl, this.batchesEl,
      h("div", { class: "qtd-controls" }, this.statusSel, this.typeSel, this.batchInput, prev, this.pager, next),
      h("table", { class: "qtd-table" }, h("thead", {}, h("tr", {}, ...cols.map((c) => h("th", {}, c)))), this.tbody),
      this.detailEl));
    this.tbody.addEventListener("click", (e) => {
      const btn = e.target.closest("button");
      const tr = e.target.closest("tr[data-task-id]");
      if (!tr) return;
      const id = tr.dataset.taskId;
      if (btn) { e.stopPropagation(); this.act(id, btn.dataset.action); return; }
      this.selected = id;
      this.detail = null;
      this.renderDetail();
      this.loadDetail(id);
      this.schedule();
    });
    for (const name of ["status", "task_type", "batch_id"]) {
      m.on("change:" + name, () => { this.page = 0; this.schedule(); });
    }
    // Ages and run times tick even with no event.
    this.timer = setInterval(() => this.schedule(), 1000);
  }

  setError(text) { this.err.textContent = text; this.err.style.display = text ? "" : "none"; }

  schedule() {
    if (this.frame || this.closed) return;
    const run = () => { this.frame = 0; this.render(); };
    this.frame = typeof requestAnimationFrame === "function" ? requestAnimationFrame(run) : setTimeout(run, 16);
  }

  filtered() {
    const m = this.model;
    const statuses = new Set((m.get("status") || "").split(",").filter(Boolean));
    const type = m.get("task_type") || "";
    const batch = m.get("batch_id") || "";
    const out = [];
    for (const r of this.rows.values()) {
      if (statuses.size && !statuses.has(r.status)) continue;
      if (type && r.task_type !== type) continue;
      if (batch && r.batch_id !== batch) continue;
      out.push(r);
    }
    // Newest first; a batch's rows share one creation time, so they follow their names
    // in natural order (sweep[2] before sweep[10]).
    out.sort((a, b) => (b.created || 0) - (a.created || 0)
      || NATURAL.compare(a.name || "", b.name || "") || (a.task_id < b.task_id ? -1 : 1));
    return out;
  }

  render() {
    const colors = this.model.get("colors") || {};
    const now = Date.now() / 1000;
    const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
    const batches = new Map();
    for (const r of this.rows.values()) {
      counts[r.status] = (counts[r.status] || 0) + 1;
      if (r.batch_id) {
        const b = batches.get(r.batch_id) || { done: 0, total: 0, created: 0 };
        b.total += 1; b.done += TERMINAL.has(r.status) ? 1 : 0; b.created = Math.max(b.created, r.created || 0);
        batches.set(r.batch_id, b);
      }
    }
    this.countsEl.replaceChildren(h("span", {}, `${this.rows.size} tasks`), ...STATUSES.map((s) =>
      h("span", { class: `qtd-count qtd-status-${s}`, style: `background:${colors[s] || "#999"}` }, `${s} ${counts[s]}`)));
    const recent = [...batches.entries()].sort((a, b) => b[1].created - a[1].created).slice(0, 5);
    this.batchesEl.replaceChildren(...recent.map(([id, b]) => h("div", { class: "qtd-batch", "data-batch-id": id },
      h("span", { class: "qtd-batch-id" }, id.slice(0, 8)),
      h("span", { class: "qtd-bar" }, h("span", { class: "qtd-bar-fill", style: `width:${(100 * b.done / b.total).toFixed(1)}%` })),
      h("span", { class: "qtd-batch-n" }, `${b.done}/${b.total}`))));
    const rows = this.filtered();
    const size = this.model.get("page_size") || 50;
    const pages = Math.max(1, Math.ceil(rows.length / size));
    this.page = Math.min(this.page, pages - 1);
    this.pager.textContent = ` ${this.page + 1} / ${pages} (${rows.length}) `;
    // Rows are reused (keyed by task id) and only their cells change: rebuilding them
    // every tick would swap a button out from under a click between mousedown and mouseup.
    const want = [];
    for (const r of rows.slice(this.page * size, (this.page + 1) * size)) {
      want.push(this.updateRow(r, colors, now));
    }
    const keep = new Set(want);
    for (const [id, tr] of this.trs) if (!keep.has(tr)) this.trs.delete(id);
    const current = this.tbody.children;
    if (current.length !== want.length || want.some((tr, i) => current[i] !== tr)) {
      this.tbody.replaceChildren(...want);
    }
  }

  updateRow(r, colors, now) {
    let tr = this.trs.get(r.task_id);
    if (!tr) {
      tr = h("tr", { "data-task-id": r.task_id, class: "qtd-row" },
        h("td", { class: "qtd-id", title: r.task_id }, r.task_id.slice(0, 8)),
        ...Array.from({ length: 8 }, () => h("td", {})));
      this.trs.set(r.task_id, tr);
    }
    const c = tr.cells;
    const setText = (i, text) => { if (c[i].textContent !== text) c[i].textContent = text; };
    tr.className = "qtd-row" + (this.selected === r.task_id ? " qtd-selected" : "");
    if (tr.dataset.status !== (r.status || "")) {
      tr.dataset.status = r.status || "";
      c[3].replaceChildren(h("span", { class: `qtd-status qtd-status-${r.status}`,
        style: `background:${colors[r.status] || "#999"}` }, r.status || "?"));
    }
    const wait = r.created ? ((r.started || (TERMINAL.has(r.status) ? null : now)) ?? null) : null;
    const run = r.started ? (r.finished || now) : null;
    setText(1, r.name || "");
    setText(2, r.task_type || "");
    setText(4, String(r.attempt));
    setText(5, wait !== null && r.created ? dur(wait - r.created) : "");
    setText(6, run !== null ? dur(run - r.started) : "");
    setText(7, r.created ? dur(now - r.created) : "");
    const canCancel = ["pending", "queued", "running"].includes(r.status);
    const canRetry = ["failed", "cancelled"].includes(r.status);
    const actions = `${canCancel}/${canRetry}`;
    if (tr.dataset.actions !== actions) {
      tr.dataset.actions = actions;
      c[8].replaceChildren(...[
        canCancel ? h("button", { class: "qtd-cancel", "data-action": "cancel" }, "cancel") : null,
        canRetry ? h("button", { class: "qtd-retry", "data-action": "retry" }, "retry") : null,
      ].filter(Boolean));
    }
    return tr;
  }

  renderDetail() {
    const t = this.detail;
    if (!this.selected) { this.detailEl.replaceChildren(); return; }
    if (!t) { this.detailEl.replaceChildren(h("div", {}, "loading " + this.selected.slice(0, 8) + "…")); return; }
    const head = h("div", { class: "qtd-detail-head" }, `${t.task_id} · ${t.task_type} · ${t.status} · attempt ${t.attempt}`);
    const res = t.result || {};
    let body;
    if (t.status === "failed" || t.status === "cancelled") {
      const msg = (t.error || (t.status === "cancelled" ? "cancelled" : "failed")).split("\n")[0];
      const hint = (HINTS.find(([re]) => re.test(msg)) || [null, "See the worker log for details."])[1];
      body = h("div", { class: "qtd-error" }, h("div", {}, msg), h("div", { class: "qtd-hint" }, "hint: " + hint));
    } else if (t.status !== "completed") {
      body = h("div", {}, `not finished yet (${t.status})`);
    } else if (res.llvm_ir) {
      body = h("pre", { class: "qtd-qir" }, res.llvm_ir);
    } else if (ARRAY_KEYS.some((k) => res[k] && res[k]["$array"])) {
      // Stored arrays: their summary only; the array itself is a link, never drawn here.
      body = h("div", {},
        res.counts && Object.keys(res.counts).length ? histogram(res.counts) : null,
        ...ARRAY_KEYS.filter((k) => res[k] && res[k]["$array"]).map((k) => this.arraySummary(t.task_id, res[k])));
    } else if (res.counts) {
      body = histogram(res.counts);
    } else if (res.results) {
      body = h("div", {}, ...res.results.slice(0, 4).map((p) => h("div", {},
        h("div", { class: "qtd-params" }, params(p.parameters) + (p.expectation_values ? " · ⟨O⟩ = " + p.expectation_values.map((v) => v.toFixed(3)).join(", ") : "")),
        p.counts ? histogram(p.counts) : null)));
    } else {
      body = h("pre", {}, JSON.stringify(res, null, 1).slice(0, 4000));
    }
    this.detailEl.replaceChildren(head, body);
  }

  arraySummary(taskId, ref) {
    const top = (ref.top || []).slice(0, 4).map((e) => `|${e.bitstring}⟩ ${e.probability.toPrecision(3)}`);
    const first = (ref.first || []).slice(0, 4).join(" ");
    return h("div", { class: "qtd-array-summary", "data-array": ref["$array"] },
      h("b", {}, ref["$array"]),
      ` ${ref.dtype} [${(ref.shape || []).join("×")}] · ${bytes(ref.nbytes)} (stored ${bytes(ref.stored_bytes)}) · `,
      top.length ? "top: " + top.join(", ") + " · " : (first ? "first shots: " + first + " · " : ""),
      h("a", { href: this.url(`tasks/${taskId}/result/${ref["$array"]}`), download: "" }, ".npy"));
  }

  close() {
    this.closed = true;
    clearInterval(this.timer);
    if (this.source) this.source.close();
  }
}

const ARRAY_KEYS = ["statevector", "probabilities", "memory"];
const ROW_FIELDS = "task_id,name,task_type,status,attempt,batch_id,created_at,started_at,finished_at,updated_at,error";

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  for (n = +n || 0; n >= 1024 && i < units.length - 1; i++) n /= 1024;
  return i ? `${n.toFixed(1)} ${units[i]}` : `${n} B`;
}

// Sweep bindings as "theta = 1.6526", not a 17-digit JSON float.
function params(p) {
  return Object.entries(p || {}).map(([k, v]) => `${k} = ${typeof v === "number" ? +v.toFixed(4) : v}`).join(", ");
}

// Counts as SVG bars: no plotting library in the browser, and it renders offline.
function histogram(counts) {
  const items = Object.entries(counts).sort((a, b) => b[1] - a[1]).slice(0, 32).sort((a, b) => (a[0] < b[0] ? -1 : 1));
  const max = Math.max(1, ...items.map(([, v]) => v));
  const W = 28, H = 120, ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "qtd-hist");
  svg.setAttribute("width", String(items.length * W + 10));
  svg.setAttribute("height", String(H + 40));
  items.forEach(([k, v], i) => {
    const bh = Math.round((H * v) / max);
    const rect = document.createElementNS(ns, "rect");
    for (const [a, val] of Object.entries({ x: i * W + 5, y: H - bh + 14, width: W - 6, height: bh, class: "qtd-hist-bar", fill: "#1e88e5" })) rect.setAttribute(a, String(val));
    const label = document.createElementNS(ns, "text");
    for (const [a, val] of Object.entries({ x: i * W + 5, y: H + 28, "font-size": "9" })) label.setAttribute(a, String(val));
    label.textContent = k;
    const num = document.createElementNS(ns, "text");
    for (const [a, val] of Object.entries({ x: i * W + 5, y: H - bh + 11, "font-size": "9" })) num.setAttribute(a, String(val));
    num.textContent = String(v);
    const title = document.createElementNS(ns, "title");
    title.textContent = `${k}: ${v}`;
    rect.append(title);
    svg.append(rect, label, num);
  });
  return svg;
}

export default {
  render({ model, el }) {
    const table = new Table(model, el);
    table.start();
    return () => table.close();
  },
};
