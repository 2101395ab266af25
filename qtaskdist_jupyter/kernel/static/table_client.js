// qtaskdist live task table: the API and event client (no DOM beyond document.cookie).
//
// The browser talks to the API itself: it lists tasks over REST and follows GET events
// (SSE; long poll when SSE fails), with the page's cookies and the _xsrf cookie for POSTs.
// Nothing depends on a kernel. Shared by the anywidget (TaskTable._esm) and the JupyterLab
// extension (labextension/), which imports these files as they are.

// The base URL of the Jupyter page this runs in (JupyterLab's config, Notebook 7's body),
// or "" where there is none (a notebook viewer, an nbconvert export).
function pageBaseUrl() {
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
  return "";
}

// The API's path. In a Jupyter page, always that page's server: it serves qtaskdist/api/
// itself, or (under JupyterHub) forwards it to the shared service with the server's own
// hub token, so the page's cookies and _xsrf are the ones that count. A saved bundle's
// api_url names where the output was made (under a hub, the service itself, which this
// page's cookies do not sign in to), so it is used only where no page server is known,
// and only on this page's origin. Cookies and the _xsrf token go to the page's origin only,
// whatever a notebook file says.
function apiPath(model) {
  const page = pageBaseUrl();
  if (page) return page.replace(/\/?$/, "/") + "qtaskdist/api/";
  const given = model.get("api_url");
  if (given) {
    try {
      const u = new URL(given, window.location.href);
      if (u.origin === window.location.origin) return u.pathname.replace(/\/?$/, "/");
    } catch (e) { /* not a URL: use the model's base */ }
  }
  return (model.get("base_url") || "/").replace(/\/?$/, "/") + "qtaskdist/api/";
}

function cookie(name) {
  // Anchored on ";" rather than \b: a value may end in "=" or "|".
  const m = document.cookie.match("(?:^|;\\s*)" + name + "=([^;]*)");
  return m ? decodeURIComponent(m[1]) : "";
}

// Only what a row shows: never payloads or results (a statevector is megabytes).
export const ROW_FIELDS = "task_id,name,task_type,status,attempt,batch_id,created_at,queued_at,started_at,finished_at,updated_at,error";

export class ApiClient {
  constructor(model) {
    this.model = model;
    this.api = apiPath(model);
    this.closed = false;
    this.source = null;
  }

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

  // Every row a filter keeps, page by page (1,000 rows each); onPage(rows) after each.
  async loadAll(filter, onPage) {
    let cursor = null;
    let n = 0;
    do {
      const params = { limit: "1000", fields: ROW_FIELDS, ...(filter || {}) };
      if (cursor) params.cursor = cursor;
      const page = await this.call("GET", "tasks", params);
      onPage(page.tasks);
      n += page.tasks.length;
      cursor = page.next_cursor;
    } while (cursor && n < 100000 && !this.closed);
  }

  // Events after `cursor()`, to onEvent(ev); onState(error text, "" when connected).
  // onStale(): the server refused the cursor (422 on `after`: it restarted without
  // QTASKDIST_EVENTS_CURSOR_SECRET); it takes a new cursor and reloads, true when it did.
  follow(cursor, onEvent, onState, onStale) {
    if (this.closed) return;
    if (typeof EventSource !== "undefined" && !this.sseFailed) {
      const c = cursor();
      const src = new EventSource(this.url("events", c ? { after: c } : {}), { withCredentials: true });
      this.source = src;
      let opened = false;
      src.addEventListener("task", (m) => {
        try { onEvent(JSON.parse(m.data)); } catch (e) { /* skip a bad frame */ }
      });
      src.onopen = () => { opened = true; onState(""); };
      src.onerror = () => {
        if (!opened) { src.close(); this.sseFailed = true; this.follow(cursor, onEvent, onState, onStale); }
        else onState("lost the qtaskdist API, reconnecting…"); // EventSource retries with Last-Event-ID
      };
      return;
    }
    this.longPoll(cursor, onEvent, onState, onStale);
  }

  async longPoll(cursor, onEvent, onState, onStale) {
    while (!this.closed) {
      try {
        const params = { timeout_s: String(this.model.get("poll_timeout_s") || 25) };
        if (cursor()) params.after = cursor();
        const body = await this.call("GET", "events", params);
        for (const ev of body.events) onEvent(ev);
        onState("", body.cursor);
      } catch (e) {
        if (e.status === 422 && e.field === "after" && onStale && (await onStale())) continue;
        onState("lost the qtaskdist API, retrying: " + e.message);
        await new Promise((r) => setTimeout(r, 3000));
      }
    }
  }

  close() {
    this.closed = true;
    if (this.source) this.source.close();
  }
}
