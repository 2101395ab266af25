// qtaskdist live task table: the merge and view rules, with no DOM.
//
// The kernel sends this file ahead of task_table.js as one ES module (TaskTable._esm), and
// tests/unit/test_table_rules.py runs it under node against the same table of cases
// (tests/unit/table_rules_cases.json) as its Python twin,
// qtaskdist_jupyter.kernel.widget.TaskTableState. The statuses and the sets over them are
// not written here: they arrive from the kernel as the widget's `facts` trait
// (qtaskdist_jupyter.core.status), read by readFacts().

const NATURAL = new Intl.Collator(undefined, { numeric: true });

export function readFacts(raw) {
  const f = raw || {};
  return {
    status: f.status || {}, // member name -> value, as TaskStatus: status.RUNNING === "running"
    statuses: f.statuses || [],
    finished: new Set(f.finished || []),
    retryable: new Set(f.retryable || []),
    taskTypes: f.task_types || [],
    deleted: f.deleted,
    waiting: f.waiting || "waiting", // shown for a claimed task whose job has not begun
  };
}

// rows: task id -> row; missing: ids seen only through an event, whose full row is due.
// order: every row, sorted as the table lists them; rebuilt only when rows come, go or get
// a page (a status event keeps it), so a burst of events costs no sort.
export function newState() {
  return { rows: new Map(), missing: new Set(), cursor: null, order: null };
}

export function epoch(v) {
  if (v === null || v === undefined || v === "") return null;
  if (typeof v === "number") return v;
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : t / 1000;
}

export function dur(s) {
  if (s === null || s === undefined) return "";
  s = Math.max(0, s);
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}

// A list page's row replaces ours unless ours saw a newer event.
export function applyRow(state, t) {
  state.order = null;
  const updated = epoch(t.updated_at) || 0;
  const cur = state.rows.get(t.task_id);
  state.missing.delete(t.task_id);
  if (cur && cur.updated > updated) {
    // Newer events own status and times; the row fills what events never carry.
    cur.name = t.name ?? null;
    cur.created = epoch(t.created_at) || cur.created;
    cur.error = t.error ?? null;
    return;
  }
  state.rows.set(t.task_id, {
    task_id: t.task_id, name: t.name ?? null, task_type: t.task_type ?? null,
    status: t.status ?? null, attempt: t.attempt || 0, batch_id: t.batch_id ?? null,
    created: epoch(t.created_at), queued: epoch(t.queued_at) || epoch(t.created_at),
    started: epoch(t.started_at), finished: epoch(t.finished_at),
    updated, error: t.error ?? null,
  });
}

// An event always applies (the events stream is totally ordered). Returns the row, null
// for a deletion; an unknown task gets a provisional row and its id goes into `missing`.
export function applyEvent(state, ev, facts) {
  if (ev.status === facts.deleted) {
    state.order = null;
    state.rows.delete(ev.task_id);
    state.missing.delete(ev.task_id);
    return null;
  }
  const ts = ev.ts || Date.now() / 1000;
  let row = state.rows.get(ev.task_id);
  if (!row) {
    row = { task_id: ev.task_id, name: null, task_type: ev.task_type ?? null, status: null,
      attempt: 0, batch_id: ev.batch_id ?? null, created: ts, queued: ts, started: null, finished: null,
      updated: 0, error: null };
    state.rows.set(ev.task_id, row);
    state.order = null;
    state.missing.add(ev.task_id);
  }
  row.status = ev.status;
  row.attempt = ev.attempt ?? row.attempt;
  // A running event with `started` is the job's start; without it, the claim: it waits.
  if (ev.status === facts.status.RUNNING) { row.started = ev.started ? ts : null; row.finished = null; }
  else if (facts.finished.has(ev.status)) {
    row.finished = ts;
    // A quick task gets no `started` event: its end carries its start.
    if (ev.started_at != null && !row.started) row.started = ev.started_at;
  }
  else { row.started = null; row.finished = null; row.queued = ts; } // back in the queue (a retry)
  row.updated = Math.max(row.updated, ts);
  if (ev.id) state.cursor = ev.id;
  return row;
}

// The rows a filter keeps, newest first; a batch's rows share one creation time, so they
// follow their names in natural order (sweep[2] before sweep[10]).
export function visibleRows(state, filter) {
  const statuses = new Set((filter.status || "").split(",").filter(Boolean));
  const type = filter.task_type || "";
  const batch = (filter.batch_id || "").toLowerCase(); // a whole batch id or its start (the 8 shown)
  const part = (filter.name || "").toLowerCase(); // a part of the name, in any case
  if (!state.order) {
    state.order = [...state.rows.values()].sort((a, b) => (b.created || 0) - (a.created || 0)
      || NATURAL.compare(a.name || "", b.name || "") || (a.task_id < b.task_id ? -1 : 1));
  }
  return state.order.filter((r) => (!statuses.size || statuses.has(r.status))
    && (!type || r.task_type === type) && (!batch || (r.batch_id || "").startsWith(batch))
    && (!part || (r.name || "").toLowerCase().includes(part)));
}

// The panel's rows: a batch of two or more (among `rows`, in their order) is one item at
// its first task's place (its name, finished and total), followed by its tasks when its
// id is in `expanded`; every other task is an item of its own.
export function groupRows(rows, expanded, facts) {
  const members = new Map();
  for (const r of rows) {
    if (!r.batch_id) continue;
    if (members.has(r.batch_id)) members.get(r.batch_id).push(r);
    else members.set(r.batch_id, [r]);
  }
  const out = [];
  for (const r of rows) {
    const m = r.batch_id ? members.get(r.batch_id) : null;
    if (!m || m.length < 2) { out.push({ row: r }); continue; }
    if (m[0] !== r) continue; // drawn with its batch
    const done = m.filter((t) => facts.finished.has(t.status)).length;
    const name = (m[0].name || "").replace(/\[\d+\]$/, "");
    out.push({ batch: r.batch_id, name, task_type: m[0].task_type, done, total: m.length });
    if (expanded.has(r.batch_id)) for (const t of m) out.push({ row: t, in_batch: r.batch_id });
  }
  return out;
}

// The status the table shows: "waiting" for a claimed task whose job has not begun.
export function shownStatus(r, facts) {
  if (r.status === facts.status.RUNNING && !r.started) return facts.waiting;
  return r.status || "";
}

// Tasks per shown status (every status listed), and per batch: finished, total, newest creation.
// `rows`: the rows to count (a filter's), every row by default.
export function tally(state, facts, rows) {
  const counts = Object.fromEntries([...facts.statuses, facts.waiting].map((s) => [s, 0]));
  const batches = new Map();
  for (const r of rows || state.rows.values()) {
    const shown = shownStatus(r, facts);
    counts[shown] = (counts[shown] || 0) + 1;
    if (r.batch_id) {
      const b = batches.get(r.batch_id) || { done: 0, total: 0, created: 0 };
      b.total += 1;
      b.done += facts.finished.has(r.status) ? 1 : 0;
      b.created = Math.max(b.created, r.created || 0);
      batches.set(r.batch_id, b);
    }
  }
  return { counts, batches };
}

// The text of a row's cells: id, name, type, status, attempt, queue wait, run time, age.
// A pending task (created, never enqueued) is in no queue: it shows no queue wait.
export function cellTexts(r, now, facts) {
  const queued = r.status === facts.status.PENDING ? null : r.queued || r.created;
  const wait = queued ? ((r.started || (facts.finished.has(r.status) ? null : now)) ?? null) : null;
  const run = r.started ? (r.finished || now) : null;
  return [
    r.task_id.slice(0, 8), r.name || "", r.task_type || "", shownStatus(r, facts), String(r.attempt),
    wait !== null && queued ? dur(wait - queued) : "",
    run !== null ? dur(run - r.started) : "",
    r.created ? dur(now - r.created) : "",
  ];
}
