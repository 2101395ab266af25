// qtaskdist live task table: the detail panel of one selected task (its error and a hint,
// or its result: counts as SVG bars, stored arrays as a summary and a link, QIR text).
// An ES module: the kernel sends it between table_rules.js and task_table.js as one module
// (TaskTable._esm, its imports of the others dropped), and the JupyterLab extension
// imports it as it is (labextension/). It needs no kernel at run time.

const HINTS = [
  [/parse|syntax|invalid circuit|line \d+/i, "Check the circuit text at the line and column shown."],
  [/time ?limit|timed out|timeout/i, "Raise time_limit_s or split the work into smaller tasks."],
  [/observable|pauli/i, "Give each observable one Pauli factor per qubit (the rightmost acts on qubit 0)."],
  [/QTASKDIST_MAX|over .*limit|exceeds|too (large|many)/i, "The task is over a configured limit; shrink the circuit."],
  [/parameter/i, "Bind every circuit parameter (--sweep NAME=START:STOP:NUM)."],
  [/cancel/i, "Cancelled: press retry to run it again."],
  [/qbraid|device|api key/i, "Check the backend device id and QBRAID_API_KEY on the workers."],
];

export function h(tag, attrs, ...kids) {
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

// The body under the detail head: S maps member names to statuses (facts.status);
// arrayUrl(name) is the download link of a stored result array; width: the px a chart may
// take (0: its natural width).
export function detailBody(t, S, arrayUrl, width = 0) {
  const histogram = (counts, opts) => drawHistogram(counts, { ...opts, width });
  const res = t.result || {};
  if (t.status === S.FAILED || t.status === S.CANCELLED) {
    const msg = (t.error || t.status).split("\n")[0];
    const hint = (HINTS.find(([re]) => re.test(msg)) || [null, "See the worker log for details."])[1];
    // A cancelled task is no error: shown in the plain text colour, not the error's red.
    const cls = t.status === S.CANCELLED ? "qtd-ended" : "qtd-error";
    return h("div", { class: cls }, h("div", {}, msg), h("div", { class: "qtd-hint" }, "hint: " + hint));
  }
  if (t.status !== S.COMPLETED) return h("div", {}, `not finished yet (${t.status})`);
  if (res.llvm_ir) return qirPreview(t, res.llvm_ir);
  if (ARRAY_KEYS.some((k) => res[k] && res[k]["$array"])) {
    // Stored arrays: their summary only; the array itself is a link, never drawn here.
    return h("div", {},
      res.counts && !res.counts["$array"] && Object.keys(res.counts).length ? histogram(res.counts) : null,
      ...ARRAY_KEYS.filter((k) => res[k] && res[k]["$array"]).flatMap((k) => [arraySummary(res[k], arrayUrl), topChart(res[k], histogram)]));
  }
  if (res.counts) return histogram(res.counts);
  if (res.results) {
    return h("div", {}, ...res.results.slice(0, 4).map((p) => h("div", {},
      h("div", { class: "qtd-params" }, params(p.parameters) + (p.expectation_values ? " · ⟨O⟩ = " + p.expectation_values.map((v) => v.toFixed(3)).join(", ") : "")),
      p.counts && !p.counts["$array"] ? histogram(p.counts) : null)));
  }
  return h("pre", {}, JSON.stringify(res, null, 1).slice(0, 4000));
}

// The QIR text with a copy button and a download link (a .ll file named after the task).
function qirPreview(t, text) {
  const copy = h("button", { class: "qtd-qir-copy", onclick: (e) => {
    e.stopPropagation();
    const done = () => { copy.textContent = "copied"; };
    if (navigator.clipboard) navigator.clipboard.writeText(text).then(done, () => { copy.textContent = "copy failed"; });
  } }, "copy");
  const href = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  const file = `${(t.name || t.task_id).replace(/[^\w.-]+/g, "_")}.ll`;
  return h("div", {}, h("div", { class: "qtd-qir-actions" }, copy, " ",
    h("a", { class: "qtd-qir-download", href, download: file }, "download " + file)),
    h("pre", { class: "qtd-qir" }, text));
}

function arraySummary(ref, arrayUrl) {
  const top = (ref.top || []).slice(0, 4).map((e) => `|${e.bitstring}⟩ ${e.probability.toPrecision(3)}`);
  const first = (ref.first || []).slice(0, 4).join(" ");
  return h("div", { class: "qtd-array-summary", "data-array": ref["$array"] },
    h("b", {}, ref["$array"]),
    ` ${ref.dtype} [${(ref.shape || []).join("×")}] · ${bytes(ref.nbytes)} (stored ${bytes(ref.stored_bytes)}) · `,
    top.length ? "top: " + top.join(", ") + " · " : (first ? "first shots: " + first + " · " : ""),
    h("a", { href: arrayUrl(ref["$array"]), download: "" }, ".npy"));
}

const ARRAY_KEYS = ["statevector", "probabilities", "memory", "counts"];

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
// Only the 32 largest outcomes are drawn, and the caption says so; long bitstrings stand on
// end under their bar (20-bit labels side by side overlap).
const HIST_BARS = 32;

// A stored statevector's or probabilities' top basis states (from the row, nothing is
// downloaded) as bars scaled to the largest: on a fixed 0-1 axis, 20 qubits' bars of
// 1e-6 would not show.
function topChart(ref, histogram) {
  if (!ref.top || !ref.top.length) return null;
  const probs = Object.fromEntries(ref.top.map((e) => [e.bitstring, e.probability]));
  const total = (ref.shape || []).reduce((a, b) => a * b, 1);
  return histogram(probs, { noun: "basis states", total, fmt: (v) => v.toPrecision(3) });
}

// Fitted to `width` (when given): the bars narrow down to MIN_BAR px, labels stand on end
// once they are wider than a bar, and where a bar is narrower than its value's text only
// every k-th value is written (each bar's title holds its own).
const MIN_BAR = 12;
const CHAR_PX = 5.5; // a 9 px label's character, about

function drawHistogram(counts, { noun = "outcomes", total = 0, fmt = String, width = 0 } = {}) {
  const all = Object.entries(counts);
  const items = all.sort((a, b) => b[1] - a[1]).slice(0, HIST_BARS).sort((a, b) => (a[0] < b[0] ? -1 : 1));
  const max = Math.max(Number.MIN_VALUE, ...items.map(([, v]) => v));  // no fixed 0-1 axis
  const natural = fmt === String ? 28 : 44;
  const W = width ? Math.max(MIN_BAR, Math.min(natural, Math.floor((width - 10) / Math.max(1, items.length)))) : natural;
  const longest = Math.max(1, ...items.map(([k]) => k.length));
  const turned = items.some(([k]) => k.length > 4) || longest * CHAR_PX > W;
  const valueEvery = Math.max(1, Math.ceil((Math.max(...items.map(([, v]) => fmt(v).length)) * CHAR_PX + 2) / W));
  const H = 120, L = turned ? 6 * longest + 8 : 16;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "qtd-hist");
  const svgW = items.length * W + 10, svgH = H + 24 + L;
  svg.setAttribute("width", String(svgW));
  svg.setAttribute("height", String(svgH));
  // Drawn for the width it had; if its box narrows later (a panel or window resized),
  // the CSS scales it down to fit instead of overflowing (.qtd-hist max-width).
  svg.setAttribute("viewBox", `0 0 ${svgW} ${svgH}`);
  items.forEach(([k, v], i) => {
    const bh = Math.round((H * v) / max);
    const rect = document.createElementNS(ns, "rect");
    for (const [a, val] of Object.entries({ x: i * W + 5, y: H - bh + 14, width: W - 6, height: bh, class: "qtd-hist-bar" })) rect.setAttribute(a, String(val));
    const label = document.createElementNS(ns, "text");
    const cx = i * W + 5 + (W - 6) / 2 - 3; // a turned label's glyphs lie right of its anchor
    const at = turned ? { x: cx, y: H + 20, "font-size": "9", transform: `rotate(90 ${cx} ${H + 20})` }
      : { x: i * W + 5, y: H + 28, "font-size": "9" };
    for (const [a, val] of Object.entries(at)) label.setAttribute(a, String(val));
    label.textContent = k;
    const num = document.createElementNS(ns, "text");
    for (const [a, val] of Object.entries({ x: i * W + 5, y: H - bh + 11, "font-size": "9" })) num.setAttribute(a, String(val));
    num.textContent = i % valueEvery === 0 ? fmt(v) : "";
    const title = document.createElementNS(ns, "title");
    title.textContent = `${k}: ${v}`;
    rect.append(title);
    svg.append(rect, label, num);
  });
  const n = Math.max(total, all.length);
  const shown = n > items.length ? `top ${items.length} of ${n} ${noun}` : `${n} ${noun}`;
  return h("div", { class: "qtd-hist-box" }, h("div", { class: "qtd-hint" }, shown + (valueEvery > 1 ? " (hover a bar for its value)" : "")), svg);
}
