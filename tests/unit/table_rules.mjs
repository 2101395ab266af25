// Runs the table's JS rules (qtaskdist_jupyter/kernel/static/table_rules.js) over the shared
// cases: node table_rules.mjs RULES_JS CASES_JSON FACTS (the widget's facts trait, as JSON). Prints one outcome per case
// as JSON; tests/unit/test_table_rules.py compares it with the expectations.
import { readFileSync } from "node:fs";

const [rulesPath, casesPath, factsJson] = process.argv.slice(2);
// A data: URL, so the file loads as an ES module whatever node makes of a ".js" name.
const source = readFileSync(rulesPath, "utf8");
const rules = await import("data:text/javascript;base64," + Buffer.from(source).toString("base64"));
const facts = rules.readFacts(JSON.parse(factsJson));
const { cases } = JSON.parse(readFileSync(casesPath, "utf8"));

const out = {};
for (const c of cases) {
  const state = rules.newState();
  for (const step of c.steps) {
    if (step.page) for (const t of step.page) rules.applyRow(state, t);
    else rules.applyEvent(state, step.event, facts);
  }
  const { counts, batches } = rules.tally(state, facts);
  out[c.name] = {
    rows: Object.fromEntries(state.rows),
    missing: [...state.missing].sort(),
    cursor: state.cursor,
    counts,
    batches: Object.fromEntries([...batches].map(([id, b]) => [id, [b.done, b.total]])),
    visible: (c.filters || [{}]).map((f) => rules.visibleRows(state, f).map((r) => r.task_id)),
    cells: c.cells ? c.cells.ids.map((id) => rules.cellTexts(state.rows.get(id), c.cells.now, facts)) : [],
  };
}
// undefined would vanish from the JSON; the Python side has None there.
process.stdout.write(JSON.stringify(out, (k, v) => (v === undefined ? null : v)));
