// qtaskdist live task table: the view, for every host (the anywidget, the JupyterLab
// output renderer and side panel).
//
// Rows live in a Map (table_rules.js); the table scrolls on its own and only the rows in
// view are in the DOM (a spacer row above and below stands for the rest), and a burst of
// events is rendered once per animation frame, so 20,000 tasks stay smooth. A row's
// detail opens right under it. The kernel sends the files as one ES module
// (TaskTable._esm): table_rules.js, table_detail.js, table_client.js and this one.

import { readFacts, newState, applyRow, applyEvent, visibleRows, tally, cellTexts, shownStatus, groupRows } from "./table_rules.js";
import { h, detailBody } from "./table_detail.js";
import { ApiClient } from "./table_client.js";

const ROW_H = 23; // px: every row is this tall (small buttons, one line; see the CSS)
const OVERSCAN = 10; // rows drawn beyond the view, above and below
const COLS = ["id", "name", "type", "status", "attempt", "queue wait", "run time", "age", ""];

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
    // The statuses, the finished set and the task types (core.status, via the kernel or
    // the labextension's build): the JS holds no copy.
    this.facts = readFacts(model.get("facts"));
    this.state = newState();
    this.rows = this.state.rows;
    this.trs = new Map(); // task id -> its <tr>, reused across renders
    this.selected = null;
    this.detail = null; // full row of the selected task
    this.fetchingBatches = new Set();
    this.frame = 0;
    this.closed = false;
    this.client = new ApiClient(model);
    // A batch handle's view follows its batch; a task handle's, that one task.
    this.batchOnly = model.get("batch_id") || "";
    this.taskOnly = model.get("task_id") || "";
    // The panel's way: a batch is one row (progress, cancel) that expands to its tasks.
    this.grouped = !!model.get("group_batches") && !this.batchOnly && !this.taskOnly;
    this.expanded = new Set();
    // Columns a full-width row spans: the panel's CSS shows 3 (name, status, actions), and
    // a wider span would add empty columns to its fixed layout.
    this.span = this.grouped ? 3 : COLS.length;
    this.build();
  }

  call(method, path, params) { return this.client.call(method, path, params); }

  // ---- data ------------------------------------------------------------------------
  applyEvent(ev) {
    if (this.batchOnly && ev.batch_id !== this.batchOnly) return;
    if (this.taskOnly && ev.task_id !== this.taskOnly) return;
    const known = this.rows.has(ev.task_id);
    const row = applyEvent(this.state, ev, this.facts);
    if (row === null) {
      if (this.selected === ev.task_id) this.selected = null;
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
      this.call("GET", "tasks/" + row.task_id).then((t) => { applyRow(this.state, t); this.schedule(); })
        .catch(() => this.state.missing.delete(row.task_id));
    }, 300);
  }

  loadAll(filter) {
    return this.client.loadAll(filter, (tasks) => {
      for (const t of tasks) applyRow(this.state, t);
      this.schedule();
    });
  }

  async start() {
    try {
      // The cursor first: events after it are not lost while the list loads.
      const first = await this.call("GET", "events", { timeout_s: "0" });
      this.state.cursor = first.cursor;
      if (this.taskOnly) applyRow(this.state, await this.call("GET", "tasks/" + this.taskOnly));
      else await this.loadAll(this.batchOnly ? { batch_id: this.batchOnly } : null);
      this.setError("");
    } catch (e) {
      this.setError("cannot reach the qtaskdist API: " + e.message);
    }
    this.schedule();
    this.client.follow(() => this.state.cursor, (ev) => this.applyEvent(ev), (err, cursor) => {
      if (cursor) this.state.cursor = cursor;
      this.setError(err);
    }, () => this.resync());
  }

  // The server refused the cursor (it restarted without QTASKDIST_EVENTS_CURSOR_SECRET):
  // a new one from now, and the list read again so nothing in between is missed.
  async resync() {
    try {
      const first = await this.call("GET", "events", { timeout_s: "0" });
      this.state.cursor = first.cursor;
      if (this.taskOnly) applyRow(this.state, await this.call("GET", "tasks/" + this.taskOnly));
      else await this.loadAll(this.batchOnly ? { batch_id: this.batchOnly } : null);
      this.schedule();
      return true;
    } catch (e) {
      return false;
    }
  }

  async loadDetail(id) {
    try {
      const t = await this.call("GET", "tasks/" + id);
      applyRow(this.state, t);
      if (this.selected === id) { this.detail = t; this.detailKey = ""; }
      this.schedule();
    } catch (e) { this.setError(e.message); }
  }

  async act(id, action) {
    try {
      if (action === "cancel-batch") {
        await Promise.all([...this.rows.values()].filter((r) => r.batch_id === id && !this.facts.finished.has(r.status))
          .map((r) => this.call("POST", `tasks/${r.task_id}/cancel`).catch(() => null)));
      } else applyRow(this.state, await this.call("POST", `tasks/${id}/${action}`));
      this.schedule();
    } catch (e) { this.setError(`${action} ${id}: ${e.message}`); }
  }

  // ---- view ------------------------------------------------------------------------
  build() {
    const m = this.model;
    this.err = h("div", { class: "qtd-err", role: "alert" });
    this.countsEl = h("div", { class: "qtd-counts" });
    this.batchesEl = h("div", { class: "qtd-batches" });
    const sel = (name, values, all) => {
      const s = h("select", { class: "qtd-filter-" + name, "aria-label": name, onchange: () => {
        setTrait(m, name, s.value); this.schedule(); } },
      h("option", { value: "" }, all), ...values.map((v) => h("option", { value: v }, v)));
      s.value = m.get(name) || "";
      return s;
    };
    this.batchInput = h("input", { class: "qtd-filter-batch", placeholder: "batch id", "aria-label": "batch id",
      onchange: () => { setTrait(m, "batch_id", this.batchInput.value.trim()); this.schedule(); } });
    this.batchInput.value = m.get("batch_id") || "";
    // The name filter is the view's own (no trait): a part of the name, in any case.
    this.nameInput = h("input", { class: "qtd-filter-name", placeholder: "name", "aria-label": "name",
      oninput: () => this.schedule() });
    this.tbody = h("tbody");
    this.scroller = h("div", { class: "qtd-scroll", onscroll: () => this.schedule() },
      h("table", { class: "qtd-table" }, h("thead", {}, h("tr", {}, ...COLS.map((c) => h("th", {}, c)))), this.tbody));
    const rootClass = "qtd-root" + (this.batchOnly ? " qtd-batch-view" : "") + (this.taskOnly ? " qtd-task-view" : "");
    const controls = this.taskOnly ? null : h("div", { class: "qtd-controls" },
      sel("status", this.facts.statuses, "all statuses"), sel("task_type", this.facts.taskTypes, "all types"), this.batchInput, this.nameInput);
    this.el.append(h("div", { class: rootClass }, this.err, this.countsEl, this.batchesEl, controls, this.scroller));
    this.el.addEventListener("click", (e) => this.onClick(e));
    for (const name of ["status", "task_type", "batch_id"]) m.on("change:" + name, () => this.schedule());
    // Ages and run times tick even with no event.
    this.timer = setInterval(() => this.schedule(), 1000);
  }

  onClick(e) {
    const btn = e.target.closest("button[data-action]");
    if (btn) { e.stopPropagation(); this.act(btn.dataset.id, btn.dataset.action); return; }
    const group = e.target.closest("tr.qtd-batch-row");
    if (group) {
      const b = group.dataset.batchId;
      if (!this.expanded.delete(b)) this.expanded.add(b);
      this.schedule();
      return;
    }
    const tr = e.target.closest("tr.qtd-row");
    if (!tr) return;
    const id = tr.dataset.taskId;
    this.selected = this.selected === id ? null : id;
    this.detail = null;
    this.detailKey = "";
    if (this.selected) this.loadDetail(id);
    this.schedule();
  }

  setError(text) { this.err.textContent = text; this.err.style.display = text ? "" : "none"; }

  schedule() {
    if (this.frame || this.closed) return;
    const run = () => { this.frame = 0; this.render(); };
    this.frame = typeof requestAnimationFrame === "function" ? requestAnimationFrame(run) : setTimeout(run, 16);
  }

  filtered() {
    const m = this.model;
    if (this.taskOnly) return [this.rows.get(this.taskOnly)].filter(Boolean);
    return visibleRows(this.state, {
      status: m.get("status"), task_type: m.get("task_type"), batch_id: m.get("batch_id"),
      name: this.nameInput ? this.nameInput.value.trim() : "",
    });
  }

  render() {
    const colors = this.model.get("colors") || {};
    const now = Date.now() / 1000;
    const rows = this.filtered();
    // The header counts what the filters keep, as the rows below do.
    const { counts, batches } = tally(this.state, this.facts, rows);
    this.countsEl.replaceChildren(h("span", {}, `${rows.length} tasks`), ...[...this.facts.statuses, this.facts.waiting]
      .map((s) => h("span", { class: `qtd-count qtd-status-${s}`, style: `background:${colors[s] || "#616161"}` }, `${s} ${counts[s]}`)));
    this.renderBatches(batches);
    this.renderRows(rows, colors, now);
    const hook = this.model.get("on_tally");
    if (hook) hook(tally(this.state, this.facts).counts, this.err.textContent);
  }

  renderBatches(batches) {
    if (this.taskOnly || this.grouped) return; // grouped: each batch is a row of the table
    const recent = [...batches.entries()].sort((a, b) => b[1].created - a[1].created).slice(0, 5);
    this.batchesEl.replaceChildren(...recent.map(([id, b]) => h("div", { class: "qtd-batch", "data-batch-id": id },
      h("span", { class: "qtd-batch-id", title: id }, id),
      h("span", { class: "qtd-bar" }, h("span", { class: "qtd-bar-fill", style: `width:${(100 * b.done / b.total).toFixed(1)}%` })),
      h("span", { class: "qtd-batch-n" }, `${b.done}/${b.total}`),
      b.done < b.total ? h("button", { class: "qtd-cancel-batch", "data-action": "cancel-batch", "data-id": id }, "cancel batch") : null)));
  }

  // Only the rows in view (and OVERSCAN around them) are in the DOM.
  renderRows(rows, colors, now) {
    // The scroller's height, never more than the window's: where no style caps it (a host
    // without the CSS) it would be as tall as every row, and every row would be drawn.
    const view = Math.min(this.scroller.clientHeight || 360, window.innerHeight || 1000);
    const first = Math.max(0, Math.floor(this.scroller.scrollTop / ROW_H) - OVERSCAN);
    const items = this.grouped ? groupRows(rows, this.expanded, this.facts) : rows.map((row) => ({ row }));
    const last = Math.min(items.length, first + Math.ceil(view / ROW_H) + 2 * OVERSCAN);
    const want = [this.spacer("top", first * ROW_H)];
    for (const it of items.slice(first, last)) {
      if (it.batch) { want.push(this.batchRow(it)); continue; }
      const tr = this.updateRow(it.row, colors, now);
      tr.classList.toggle("qtd-in-batch", !!it.in_batch);
      want.push(tr);
      if (it.row.task_id === this.selected) want.push(this.detailRow());
    }
    want.push(this.spacer("bottom", (items.length - last) * ROW_H));
    const keep = new Set(want);
    for (const [id, tr] of this.trs) if (!keep.has(tr)) this.trs.delete(id);
    const current = this.tbody.children;
    if (current.length !== want.length || want.some((tr, i) => current[i] !== tr)) this.tbody.replaceChildren(...want);
  }

  // A batch as one row: its name, a progress bar, and cancel while tasks are left.
  batchRow(b) {
    const key = "batch:" + b.batch;
    let tr = this.trs.get(key);
    const state = `${b.done}/${b.total}/${this.expanded.has(b.batch)}/${b.name}/${b.task_type}`;
    if (tr && tr.dataset.state === state) return tr;
    const pct = (100 * b.done / b.total).toFixed(1);
    tr = h("tr", { class: "qtd-batch-row", "data-batch-id": b.batch, "data-state": state,
      "aria-expanded": String(this.expanded.has(b.batch)) },
    h("td", { class: "qtd-id", title: b.batch }, b.batch.slice(0, 8)),
    // The whole batch id in the title: %qtask cancel, a handle and the filter take it.
    h("td", { class: "qtd-name", title: `${b.name || "batch"} (${b.total}) · batch ${b.batch}` },
      `${this.expanded.has(b.batch) ? "▾" : "▸"} ${b.name || "batch"} (${b.total})`), h("td", {}, b.task_type || ""),
    h("td", {}, h("span", { class: "qtd-batch-progress" }, h("span", { class: "qtd-bar", role: "progressbar",
      "aria-valuenow": String(b.done), "aria-valuemax": String(b.total) }, h("span", { class: "qtd-bar-fill", style: `width:${pct}%` })),
    h("span", { class: "qtd-batch-n" }, `${b.done}/${b.total}`))),
    ...Array.from({ length: 4 }, () => h("td", {})), // the task rows' columns: one grid
    h("td", {}, b.done < b.total ? h("button", { class: "qtd-cancel-batch", "data-action": "cancel-batch", "data-id": b.batch, title: "cancel every unfinished task of this batch", "aria-label": "cancel batch" }, "cancel") : null));
    this.trs.set(key, tr);
    return tr;
  }

  spacer(name, px) {
    const key = "spacer" + name;
    if (!this[key]) this[key] = h("tr", { class: "qtd-spacer", "aria-hidden": "true" }, h("td", { colspan: String(this.span) }));
    this[key].style.height = px + "px";
    this[key].style.display = px ? "" : "none";
    return this[key];
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
    const shown = shownStatus(r, this.facts);
    if (tr.dataset.status !== shown) {
      tr.dataset.status = shown;
      c[3].replaceChildren(h("span", { class: `qtd-status qtd-status-${shown}`,
        style: `background:${colors[shown] || "#616161"}` }, shown || "?"));
    }
    const texts = cellTexts(r, now, this.facts);
    // The panel hides the id column: a task with no name goes by its id's start there.
    if (this.grouped && !texts[1]) texts[1] = texts[0];
    for (const i of [1, 2, 4, 5, 6, 7]) setText(i, texts[i]);
    if (c[1].title !== texts[1]) c[1].title = texts[1]; // a name cut by the panel's width
    const canCancel = !!r.status && !this.facts.finished.has(r.status);
    const canRetry = this.facts.retryable.has(r.status);
    const actions = `${canCancel}/${canRetry}`;
    if (tr.dataset.actions !== actions) {
      tr.dataset.actions = actions;
      const b = (name) => h("button", { class: "qtd-" + name, "data-action": name, "data-id": r.task_id }, name);
      c[8].replaceChildren(...[canCancel ? b("cancel") : null, canRetry ? b("retry") : null].filter(Boolean));
    }
    return tr;
  }

  // The selected task's detail, in a row right under it, drawn to the table's width (its
  // chart too): redrawn when that width changes by more than a few pixels.
  detailRow() {
    const t = this.detail;
    const width = Math.max(0, (this.scroller.clientWidth || 0) - 16);
    const key = t ? `${t.task_id}/${t.status}/${t.attempt}/${t.updated_at}/${Math.round(width / 8)}` : "loading";
    if (!this.detailTr) this.detailTr = h("tr", { class: "qtd-detail-row" }, h("td", { colspan: String(this.span), class: "qtd-detail" }));
    if (this.detailKey === key) return this.detailTr;
    this.detailKey = key;
    const cell = this.detailTr.cells[0];
    if (!t) { cell.replaceChildren(h("div", {}, "loading " + this.selected.slice(0, 8) + "…")); return this.detailTr; }
    const arrayUrl = (name) => this.client.url(`tasks/${t.task_id}/result/${name}`);
    cell.replaceChildren(this.detailHead(t), detailBody(t, this.facts.status, arrayUrl, width || 0));
    return this.detailTr;
  }

  // Name, the full ids (selectable, broken to the width), then facts that wrap as units.
  detailHead(t) {
    const insert = this.model.get("on_insert");
    const cells = this.rows.has(t.task_id) ? cellTexts(this.rows.get(t.task_id), Date.now() / 1000, this.facts) : [];
    const kv = (k, v) => h("span", { class: "qtd-kv" }, k ? `${k} ${v}` : String(v));
    return h("div", { class: "qtd-detail-head" },
      t.name ? h("div", { class: "qtd-detail-name" }, t.name) : null,
      h("div", { class: "qtd-full-id", title: "task id" }, t.task_id),
      t.batch_id ? h("div", { class: "qtd-full-id qtd-detail-batch", title: "batch id" }, "batch " + t.batch_id) : null,
      h("div", {}, kv("", t.task_type), kv("", t.status), kv("attempt", t.attempt),
        t.worker ? kv("worker", t.worker) : null,
        cells.length ? kv("queue wait", cells[5] || "–") : null, cells.length ? kv("run time", cells[6] || "–") : null,
        insert ? h("button", { class: "qtd-insert", onclick: () => insert(t.task_id) }, "insert in notebook") : null));
  }

  close() {
    this.closed = true;
    clearInterval(this.timer);
    this.client.close();
  }
}

// A model for hosts without a kernel (the JupyterLab renderer and panel): the widget's
// traits as plain values; filters change locally.
export function plainModel(values) {
  const v = { ...values };
  const handlers = new Map();
  return {
    get: (k) => v[k],
    set: (k, x) => { v[k] = x; for (const f of handlers.get("change:" + k) || []) f(); },
    save_changes: () => {},
    on: (ev, f) => handlers.set(ev, [...(handlers.get(ev) || []), f]),
  };
}

// Draws a live table into `el`; returns the function that stops it.
export function mountTable(el, model) {
  const table = new Table(model, el);
  table.start();
  return () => table.close();
}

export default {
  render({ model, el }) {
    return mountTable(el, model);
  },
};
