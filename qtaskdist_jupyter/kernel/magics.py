"""``%%qtask`` / ``%qtask``: submit circuits and manage tasks from a notebook cell.

Every mistake a user can make (no server, services down, a circuit that does not parse,
an unknown option, a wait that timed out) ends as one ``UsageError`` line: IPython prints
it without a traceback, and a notebook run still stops at that cell.

The client, handles, display and widget modules are imported inside the commands that
use them: ``%load_ext`` imports this module, and they pull in httpx, numpy, matplotlib and
anywidget, which a notebook that never runs a command should not pay for.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from qtaskdist_jupyter.core.errors import ApiError, QtaskdistError
from qtaskdist_jupyter.core.kinds import CONVERT, KINDS, SIMULATE
from qtaskdist_jupyter.core.short_ids import id_start
from qtaskdist_jupyter.core.status import FINISHED
from qtaskdist_jupyter.kernel.magic_helpers import (
    TaskOptions,
    binding_order,
    check_circuits,
    emit,
    is_qasm_text,
    is_uuid,
    parse_noise,
    parse_sweep,
    retried_line,
    status_lines,
    user_message,
)

if TYPE_CHECKING:  # pragma: no cover
    from qtaskdist_jupyter.kernel.answers import TaskJson

# The cell actions are the task types' verbs (core/kinds.py): simulate, convert, run.
CELL_ACTIONS = tuple(kind.verb for kind in KINDS.values())
LINE_ACTIONS = ("list", "show", "wait", "cancel", "retry", "table", "status")


@magics_class
class QtaskMagics(Magics):
    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self._client: Any = None
        self.last: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from qtaskdist_jupyter.kernel.client import Client  # lazy: see the docstring

            self._client = Client()
        return self._client

    @magic_arguments()
    @argument("action", help="cell: simulate | convert | run; line: " + " | ".join(LINE_ACTIONS))
    @argument(
        "target",
        nargs="?",
        help="task id, batch id (or its first 8+ characters) or task name for show / wait /"
        " cancel / retry",
    )
    @argument("--shots", type=int, help="shots per circuit (default 1024)")
    @argument("--seed", type=int, help="simulator seed")
    @argument("--method", help="Aer method: automatic, statevector, density_matrix, ...")
    @argument("--noise", help="depolarizing error P, or P1,P2[,READOUT]")
    @argument("--observables", nargs="+", help="Pauli strings, e.g. ZZ XI")
    @argument("--probabilities", action="store_true", help="also return probabilities")
    @argument("--statevector", action="store_true", help="also return the statevector")
    @argument("--memory", action="store_true", help="also return per-shot memory")
    @argument("--sweep", action="append", default=[], help="NAME=START:STOP:NUM (repeatable)")
    @argument("--chunk", type=int, default=1, help="sweep bindings per task (default 1)")
    @argument("--profile", choices=["base", "adaptive"], default="base", help="QIR profile")
    @argument("--module-name", help="QIR module name")
    @argument(
        "--verify",
        choices=["auto", "execute", "static"],
        help="convert: run each module in qir-runner (auto: when small enough; default)",
    )
    @argument("--device", help="backend device id for run ('local' works offline)")
    @argument("--name", help="task name")
    @argument("--tags", nargs="+", help="task tags")
    @argument("--max-retries", type=int, help="retries of a failed task (default 3)")
    @argument("--wait", action="store_true", help="wait for the result and show it")
    @argument("--out", help="store the handle in this variable")
    @argument(
        "--time-limit",
        type=float,
        dest="time_limit_s",
        help="simulate / convert / run: seconds each task may run on a worker",
    )
    @argument(
        "--timeout",
        type=float,
        help="wait / --wait: seconds this cell waits for the result (the task keeps running;"
        " its own limit is --time-limit)",
    )
    @argument("--all", action="store_true", help="wait: every unfinished task")
    @argument("--status", help="list / table: statuses, comma separated")
    @argument("--type", dest="task_type", help="list / table: task type")
    @argument("--batch", help="list / table: batch id or its first 8+ characters")
    @argument("--limit", type=int, default=50, help="list: rows (default 50)")
    @line_cell_magic
    def qtask(self, line: str, cell: str | None = None) -> Any:
        """Submit circuits to qtaskdist workers and manage their tasks.

        Cell magics (the body is OpenQASM 2/3 text, or Python whose last expression is a
        QuantumCircuit or a list of them, run in your namespace)::

            %%qtask simulate [--shots N] [--seed S] [--sweep theta=0:3.14:16] [--wait]
            %%qtask convert [--profile base|adaptive] [--verify auto|execute|static]
            %%qtask run --device local [--shots N]

        Line magics::

            %qtask list [--status queued,running]   %qtask show ID
            %qtask wait [ID|--all] [--timeout S]    %qtask cancel ID   %qtask retry ID
            %qtask table                             %qtask status

        ID: a task id, a batch id or a task name; an id may be given by its start, such
        as the 8 characters the table shows, when no other id of yours shares it.
        """
        args = parse_argstring(self.qtask, line)
        if args.action not in CELL_ACTIONS + LINE_ACTIONS:
            raise UsageError(
                f"unknown action {args.action!r}; use one of "
                + ", ".join(CELL_ACTIONS + LINE_ACTIONS)
            )
        if cell is None and args.action in CELL_ACTIONS:
            raise UsageError(
                f"'{args.action}' is a cell magic: put %%qtask {args.action} on a cell's first line"
            )
        if cell is not None and args.action in LINE_ACTIONS:
            raise UsageError(f"'{args.action}' is a line magic: use %qtask {args.action}")
        try:
            if cell is not None:
                return self._submit(args, cell)
            return getattr(self, f"_do_{args.action}")(args)
        except QtaskdistError as exc:
            offset = 1 if cell is not None and is_qasm_text(cell) else None
            raise UsageError(f"qtask: {user_message(exc, offset)}") from None

    def _user_ns(self) -> dict[str, object]:
        """The user's namespace: the magics run only registered on a shell."""
        assert self.shell is not None, "QtaskMagics used without an IPython shell"
        return self.shell.user_ns

    # ---- cell: submit --------------------------------------------------------------
    def circuits_from_body(self, body: str) -> Any:
        """OpenQASM text as is; otherwise the value of the cell's last Python expression."""
        if is_qasm_text(body):
            return body
        try:
            tree = ast.parse(body)
        except SyntaxError as exc:
            raise UsageError(
                f"the cell is neither OpenQASM (no 'OPENQASM' header) nor Python: {exc.msg} "
                f"(line {exc.lineno}, column {exc.offset})"
            ) from None
        if not tree.body or not isinstance(tree.body[-1], ast.Expr):
            raise UsageError(
                "the cell's last line must be an expression: a QuantumCircuit or a list of them"
            )
        ns = self._user_ns()
        head = ast.Module(body=tree.body[:-1], type_ignores=[])
        # The user's own code in the user's own kernel, like any other cell.
        exec(compile(head, "<%%qtask cell>", "exec"), ns)  # noqa: S102
        value = eval(compile(ast.Expression(tree.body[-1].value), "<%%qtask cell>", "eval"), ns)  # noqa: S307
        return check_circuits(value)

    def _submit(self, args: Any, body: str) -> Any:
        circuits = self.circuits_from_body(body)
        task = TaskOptions(name=args.name, tags=args.tags, max_retries=args.max_retries)
        limit = {"time_limit_s": args.time_limit_s} if args.time_limit_s else {}
        if args.action == SIMULATE.verb:
            handle = self._simulate(args, circuits, task, limit)
        elif args.action == CONVERT.verb:
            handle = self.client.submit_convert(
                circuits,
                profile=args.profile,
                module_name=args.module_name,
                verify=args.verify,
                **limit,
                **task,
            )
        else:
            if not args.device:
                raise UsageError(
                    "%%qtask run needs --device ID (--device local runs on Aer offline)"
                )
            handle = self.client.submit_backend(
                circuits, device_id=args.device, shots=args.shots or 1024, **limit, **task
            )
        self.last = handle
        if args.out:
            self._user_ns()[args.out] = handle
        if not args.wait:
            return handle
        self._wait_and_show(handle, args)
        return None

    def _simulate(
        self, args: Any, circuits: Any, task: TaskOptions, limit: dict[str, float]
    ) -> Any:
        opts = {
            **limit,
            "shots": args.shots or 1024,
            "seed": args.seed,
            "method": args.method,
            "noise": parse_noise(args.noise),
            "observables": args.observables,
            "probabilities": args.probabilities,
            "statevector": args.statevector,
            "memory": args.memory,
        }
        if not args.sweep:
            return self.client.submit_simulate(circuits, **opts, **task)
        if isinstance(circuits, list):
            raise UsageError("--sweep takes one parameterised circuit, not a list")
        if args.chunk < 1:
            raise UsageError("--chunk must be at least 1")
        # Always a batch, even for one chunk: a sweep is watched and shown as one.
        return self.client.submit_simulate(
            circuits, **opts, parameter_bindings=parse_sweep(args.sweep), chunk=args.chunk, **task
        )

    def _wait_and_show(self, handle: Any, args: Any) -> None:
        from qtaskdist_jupyter.kernel import display  # lazy: see the docstring
        from qtaskdist_jupyter.kernel.handles import BatchHandle

        if isinstance(handle, BatchHandle):
            handle.wait(args.timeout, progress=True)
            display.show_batch(handle.rows(), observables=args.observables or ())
        else:
            row = handle.wait(args.timeout, progress=False)
            display.show_result(row, observables=args.observables or ())

    # ---- line actions --------------------------------------------------------------
    def _target(self, args: Any) -> Any:
        """A TaskHandle for a task id or a task name (its newest task of that name), a
        BatchHandle for a batch id, else the last handle. An id may be given by its start
        (8 hex digits or more, as the table shows it), resolved among yours by the server;
        a start that is no id of yours is looked up as a name."""
        if not args.target:
            if self.last is None:
                raise UsageError(f"%qtask {args.action} needs a task or batch id")
            return self.last
        target = args.target
        if is_uuid(target):
            return self._by_id(target)
        if id_start(target) is not None:
            try:
                found = self.client.resolve(target)
            except ApiError as exc:
                if exc.status != 404:
                    raise  # ambiguous: one line naming how many ids it starts
            else:
                return self._by_id(found["id"], found["kind"])
        # A task's name: its newest task of that name.
        named = self.client.tasks(name=target, limit=1)
        if not named:
            raise UsageError(f"qtask: no task, batch or task name {target!r}")
        return self._by_id(str(named[0]["task_id"]), "task")

    def _by_id(self, target: str, kind: str | None = None) -> Any:
        """The handle of a whole id: a task's, else a batch's (``kind`` when known)."""
        from qtaskdist_jupyter.kernel.handles import BatchHandle, TaskHandle  # lazy

        if kind != "batch":
            try:
                return TaskHandle(self.client, target, self.client.get(target))
            except ApiError as exc:
                if exc.status != 404 or kind == "task":
                    raise
        ids = binding_order(self.client.tasks(batch_id=target, limit=20_000))
        if not ids:
            raise UsageError(f"qtask: no task or batch {target!r}")
        return BatchHandle(self.client, target, ids)

    def _do_list(self, args: Any) -> None:
        from qtaskdist_jupyter.kernel.widget import TaskTableState  # lazy: see the docstring

        batch = args.batch
        if batch and not is_uuid(batch):  # its start, as the table shows it
            batch = self.client.resolve(batch, kind="batch")["id"]
        rows = self.client.tasks(
            status=args.status, task_type=args.task_type, batch_id=batch, limit=args.limit
        )
        state = TaskTableState()
        state.apply_page(rows)
        emit(state.to_text(), state.to_html())

    def _do_show(self, args: Any) -> None:
        from qtaskdist_jupyter.kernel import display  # lazy: see the docstring
        from qtaskdist_jupyter.kernel.handles import TaskHandle

        h = self._target(args)
        if not isinstance(h, TaskHandle):
            emit(repr(h), h._repr_html_())
            return
        row = h.refresh()
        emit(
            f"{row.get('task_id')} {row.get('task_type')} {row.get('status')} "
            f"attempt {row.get('attempt')}",
            f"<div class='qtd-handle'>{h.header_html()}</div>",
        )
        display.show_result(row)  # the result itself, once: no second summary above it

    def _do_wait(self, args: Any) -> None:
        if args.all:
            self._wait_all(args.timeout)
            return
        from qtaskdist_jupyter.kernel.handles import BatchHandle  # lazy: see the docstring

        h = self._target(args)
        if isinstance(h, BatchHandle):
            counts = h.wait(args.timeout, progress=True)
            print(
                f"batch {h.batch_id}: "
                + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v)
            )
        else:
            row = h.wait(args.timeout, progress=True)
            print(f"task {h.task_id}: {row.get('status')}")

    def _wait_all(self, timeout: float | None) -> None:
        client = self.client

        def check() -> tuple[int, int]:
            c = client.counts()
            return sum(c.get(s, 0) for s in FINISHED), sum(c.values())

        client.wait_for(
            check,
            lambda e: e.get("status") in FINISHED,
            timeout_s=timeout,
            progress=True,
            desc="all tasks",
        )
        print(
            "all tasks finished: "
            + ", ".join(f"{k} {v}" for k, v in sorted(client.counts().items()) if v)
        )

    def _do_cancel(self, args: Any) -> None:
        from qtaskdist_jupyter.kernel.handles import BatchHandle  # lazy: see the docstring

        h = self._target(args)
        if isinstance(h, BatchHandle):
            print(f"batch {h.batch_id}: cancelled {h.cancel()} tasks")
            return
        row = self._transition(h, "cancelled", h.cancel)
        print(f"task {h.task_id}: {row.get('status')}")

    def _do_retry(self, args: Any) -> None:
        if not args.target:
            # Not the last handle: that may be any task, and a retry runs it again.
            raise UsageError("%qtask retry needs a task id (%qtask list --status failed)")
        h = self._target(args)
        if not hasattr(h, "retry"):  # a batch: its failed tasks are retried one by one
            raise UsageError(f"%qtask retry takes a task id; {args.target!r} is a batch")
        row = self._transition(h, "retried", h.retry)
        print(retried_line(h.task_id, row))

    @staticmethod
    def _transition(h: Any, verb: str, action: Callable[[], TaskJson]) -> TaskJson:
        """Run a handle's cancel/retry; an illegal transition is one clear line."""
        try:
            return action()
        except ApiError as exc:
            if exc.status == 409:
                raise UsageError(
                    f"qtask: task {h.task_id} cannot be {verb}: {exc.message}"
                ) from None
            raise

    def _do_table(self, args: Any) -> Any:
        from qtaskdist_jupyter.kernel.widget import TaskTable  # lazy: see the docstring

        return TaskTable.for_client(
            self.client,
            status=args.status or "",
            task_type=args.task_type or "",
            batch_id=args.batch or "",
        )

    def _do_status(self, args: Any) -> None:
        print("\n".join(status_lines(self.client.url, self.client.health())))
