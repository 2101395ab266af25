// The renderer of application/vnd.qtaskdist.tasks+json: the live task table of a saved
// output (%qtask table, a batch handle, a task handle), drawn straight from the API with
// no kernel. It outranks the widget view (rank -10), so JupyterLab always shows this one.
import { Widget } from "@lumino/widgets";
import { mountTable, plainModel } from "../../qtaskdist_jupyter/kernel/static/task_table.js";
import "../../qtaskdist_jupyter/kernel/static/task_table.css";

export const MIME = "application/vnd.qtaskdist.tasks+json";

class TasksOutput extends Widget {
  constructor() {
    super();
    this.addClass("qtd-lab-output");
    this.stop = null;
  }

  async renderModel(model) {
    const data = model.data[MIME] || {};
    if (this.stop) this.stop();
    this.node.replaceChildren();
    // The bundle's values stand in for the widget's traits (live_view.tasks_bundle).
    this.stop = mountTable(this.node, plainModel({ poll_timeout_s: 25, ...data }));
  }

  dispose() {
    if (this.stop) this.stop();
    this.stop = null;
    super.dispose();
  }
}

export const rendererFactory = {
  safe: true,
  mimeTypes: [MIME],
  createRenderer: () => new TasksOutput(),
};

export default {
  id: "qtaskdist-jupyter:tasks-renderer",
  rendererFactory,
  rank: -20,
  dataType: "json",
};
