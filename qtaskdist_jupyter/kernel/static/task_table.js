// qtaskdist live task table (anywidget front end).
//
// The browser talks to the server extension itself: it lists tasks over REST and follows
// GET events (SSE; long poll when SSE fails), with the page's cookies and the _xsrf cookie
// for POSTs. Nothing depends on the kernel, so the table keeps moving while a cell blocks
// and after a kernel restart. Rows live in a Map; only one page is rendered, and DOM
// updates are batched into one requestAnimationFrame, so 10,000 tasks stay smooth.
//
// The kernel sends three files as one ES module (TaskTable._esm), in this order:
// table_rules.js (the merge rules, no DOM; tested under node), table_detail.js (the
// detail panel and the h() element helper) and this one (the table itself).

/* global readFacts, newState, applyRow, applyEvent, visibleRows, tally, cellTexts,
   h, detailBody */

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

class Table {
  constructor(model, el) {
    this.model = model;
    this.el = el;
    // The statuses, the finished set and the task types, from the kernel (core.status).
    this.facts = readFacts(model.get("facts"));
    this.state = newState();
    this.rows = this.state.rows;
    this.trs = new Map(); // task id -> its <tr>, reused across renders
    this.page = 0;
    this.selected = null;
    this.detail = null; // full row of the selected task
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
    if (!r.ok) {
      const err = new Error(body.detail || `${method} ${path}: HTTP ${r.status}`);
      err.status = r.status;
      err.field = body.field;
      throw err;
    }
    return body;
  }

  // ---- data ------------------------------------------------------------------------
  applyRow(t) {
    applyRow(this.state, t);
  }

  applyEvent(ev) {
    // A batch handle's view counts and shows its own batch only.
    if (this.batchOnly && ev.batch_id !== this.batchOnly) return;
    const known = this.rows.has(ev.task_id);
    const row = applyEvent(this.state, ev, this.facts);
    if (row === null) {
      if (this.selected === ev.task_id) { this.selected = null; this.renderDetail(); }
      this.schedule();
      return;
    }
    if (!known) this.needRow(row);
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
    setTimeout(() => {
      if (!this.state.missing.has(row.task_id)) return;
      this.call("GET", "tasks/" + row.task_id).then((t) => { this.applyRow(t); this.schedule(); })
        .catch(() => this.state.missing.delete(row.task_id));
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
      this.state.cursor = first.cursor;
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
      const params = this.state.cursor ? { after: this.state.cursor } : {};
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
        if (this.state.cursor) params.after = this.state.cursor;
        const body = await this.call("GET", "events", params);
        for (const ev of body.events) this.applyEvent(ev);
        this.state.cursor = body.cursor;
        this.setError("");
      } catch (e) {
        if (e.status === 422 && e.field === "after" && (await this.resync())) continue;
        this.setError("lost the qtaskdist API, retrying: " + e.message);
        await new Promise((r) => setTimeout(r, 3000));
      }
    }
  }

  // The server refused the cursor (it restarted without QTASKDIST_EVENTS_CURSOR_SECRET):
  // a new one from now, and the list read again so nothing in between is missed.
  async resync() {
    try {
      const first = await this.call("GET", "events", { timeout_s: "0" });
      this.state.cursor = first.cursor;
      const batch = this.model.get("batch_id");
      await this.loadAll(batch ? { batch_id: batch } : null);
      return true;
    } catch (e) {
      return false;
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
    this.statusSel = sel("status", this.facts.statuses);
    this.typeSel = sel("task_type", this.facts.taskTypes);
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
    return visibleRows(this.state, {
      status: m.get("status"), task_type: m.get("task_type"), batch_id: m.get("batch_id"),
    });
  }

  render() {
    const colors = this.model.get("colors") || {};
    const now = Date.now() / 1000;
    const { counts, batches } = tally(this.state, this.facts);
    this.countsEl.replaceChildren(h("span", {}, `${this.rows.size} tasks`), ...this.facts.statuses.map((s) =>
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
    const texts = cellTexts(r, now, this.facts);
    for (const i of [1, 2, 4, 5, 6, 7]) setText(i, texts[i]);
    const canCancel = !!r.status && !this.facts.finished.has(r.status);
    const canRetry = this.facts.retryable.has(r.status);
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
    const arrayUrl = (name) => this.url(`tasks/${t.task_id}/result/${name}`);
    this.detailEl.replaceChildren(head, detailBody(t, this.facts.status, arrayUrl));
  }

  close() {
    this.closed = true;
    clearInterval(this.timer);
    if (this.source) this.source.close();
  }
}

const ROW_FIELDS = "task_id,name,task_type,status,attempt,batch_id,created_at,started_at,finished_at,updated_at,error";

export default {
  render({ model, el }) {
    const table = new Table(model, el);
    table.start();
    return () => table.close();
  },
};
