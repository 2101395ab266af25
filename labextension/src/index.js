// The JupyterLab plugins of qtaskdist: the "Quantum tasks" side panel (every task of the
// signed-in user, from any notebook, kernel or the REST API, live) and the status-bar item
// ("qtask: 3 running · 120 queued", red while the API is unreachable). The saved outputs'
// renderer is mime.js. All of them draw the one table of qtaskdist_jupyter/kernel/static.
import { Widget } from "@lumino/widgets";
import { INotebookTracker, NotebookActions } from "@jupyterlab/notebook";
import { IStatusBar } from "@jupyterlab/statusbar";
import { mountTable, plainModel } from "../../qtaskdist_jupyter/kernel/static/task_table.js";
import "../../qtaskdist_jupyter/kernel/static/task_table.css";
// Written by the build from qtaskdist_jupyter/kernel/live_view.py (npm run build).
import built from "./facts.json";

const OPEN = "qtaskdist:open-tasks";

// "h = Client().handle(...)" in a new cell under the active one.
function insertHandle(tracker, taskId) {
  const panel = tracker.currentWidget;
  if (!panel) return;
  NotebookActions.insertBelow(panel.content);
  const cell = panel.content.activeCell;
  cell.model.sharedModel.setSource(`from qtaskdist_jupyter import Client\n\nh = Client().handle("${taskId}")\nh`);
}

function statusText(counts, error) {
  if (error) return "qtask: services down";
  // Waiting for a job process (claimed, not begun) or for a worker: queued either way.
  const queued = (counts.pending || 0) + (counts.queued || 0) + (counts.waiting || 0);
  return `qtask: ${counts.running || 0} running · ${queued} queued`;
}

const plugin = {
  id: "qtaskdist-jupyter:tasks-panel",
  autoStart: true,
  optional: [INotebookTracker, IStatusBar],
  activate: (app, tracker, statusBar) => {
    const panel = new Widget();
    panel.id = "qtaskdist-tasks";
    panel.title.label = "Tasks";
    panel.title.caption = "Quantum tasks";
    panel.addClass("qtd-panel");
    const item = new Widget({ node: document.createElement("button") });
    item.addClass("qtd-statusbar");
    item.node.textContent = "qtask: …";
    item.node.title = "Quantum tasks: open the panel";
    const onTally = (counts, error) => {
      item.node.textContent = statusText(counts, error);
      item.node.classList.toggle("qtd-down", !!error);
    };
    mountTable(panel.node, plainModel({
      ...built, poll_timeout_s: 25, group_batches: true,
      on_tally: onTally,
      on_insert: tracker ? (id) => insertHandle(tracker, id) : null,
    }));
    app.shell.add(panel, "left", { rank: 700 });
    app.commands.addCommand(OPEN, { label: "Quantum tasks", execute: () => app.shell.activateById(panel.id) });
    item.node.addEventListener("click", () => app.commands.execute(OPEN));
    if (statusBar) statusBar.registerStatusItem("qtaskdist-jupyter:status", { item, align: "left", rank: 5 });
  },
};

export default [plugin];
