"""A small stand-in for qBraid's v1 API, for driving the real qBraid SDK in tests.

Speaks exactly what ``qbraid_core`` (sessions.py, services/runtime/client.py) calls:

==========================  ===================================================
``GET  /users/verify``      key check (``X-API-Key``); 401 when wrong
``GET  /devices``           ``?retired=false``; list of RuntimeDevice
``GET  /devices/{qrn}``     one RuntimeDevice, 404 when unknown
``POST /jobs``              JobRequest → RuntimeJob
``GET  /jobs``              ``?tags=<json object>&limit=n``; RuntimeJob list
``GET  /jobs/{qrn}``        RuntimeJob (each call counts as one poll)
``GET  /jobs/{qrn}/result`` Result ``{status, cost, timeStamps, resultData}``
``POST /jobs/{qrn}/cancel`` cancel a non-terminal job; 400 when terminal
==========================  ===================================================

Every body is wrapped ``{"success": true, "data": ...}``; errors are
``{"success": false, "error": {"message", "code"}}``, the envelope qbraid_core parses.
Submitted qasm2 programs really run on Aer (seeded by ``runtimeOptions.seed`` if given)
when a job completes, after ``polls_to_complete`` status polls.

The SDK also reads ``~/.qbraid/qbraidrc`` and ``QBRAID_*`` variables; :func:`sdk_env`
gives the environment a process needs to talk to this fake and nothing else.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from qiskit import qasm2
from qiskit_aer import AerSimulator

API_PREFIX = "/api/v1"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def _device(qrn: str, name: str, *, status: str = "ONLINE", qubits: int = 20) -> dict[str, Any]:
    return {
        "name": name,
        "qrn": qrn,
        "vendor": "qbraid",
        "deviceType": "SIMULATOR",
        "runInputTypes": ["qasm2"],
        "status": status,
        "numberQubits": qubits,
        "paradigm": "gate_model",
        "pricingModel": "fixed",
        "pricing": {"perTask": 0, "perShot": 0, "perMinute": 0},
        "directAccess": True,
    }


DEFAULT_DEVICES = [
    _device("qbraid:qbraid:sim:qir-sv", "QIR sparse simulator"),
    _device("qbraid:qbraid:sim:tiny", "Two-qubit simulator", qubits=2),
    _device("qbraid:qbraid:sim:offline", "Offline simulator", status="OFFLINE"),
]


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class FakeJob:
    qrn: str
    device_qrn: str
    program: dict[str, Any]
    shots: int
    tags: dict[str, Any]
    runtime_options: dict[str, Any]
    created_at: str = field(default_factory=_now)
    status: str = "INITIALIZING"
    status_msg: str | None = None
    polls: int = 0
    counts: dict[str, int] | None = None
    ended_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "jobQrn": self.qrn,
            "deviceQrn": self.device_qrn,
            "vendor": "qbraid",
            "provider": "qbraid",
            "status": self.status,
            "statusMsg": self.status_msg,
            "experimentType": "gate_model",
            "shots": self.shots,
            "tags": self.tags,
            "runtimeOptions": self.runtime_options,
            "timeStamps": {"createdAt": self.created_at, "endedAt": self.ended_at},
            "estimatedCost": 0,
            "cost": 0,
            "numCircuits": 1,
        }


class FakeQbraid:
    """The fake API server. ``start()`` binds 127.0.0.1 on a free port; ``url`` is its base."""

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        polls_to_complete: int = 2,
        devices: list[dict[str, Any]] | None = None,
    ) -> None:
        self.api_key = api_key
        self.polls_to_complete = polls_to_complete
        self.devices = {d["qrn"]: d for d in (devices or DEFAULT_DEVICES)}
        self.jobs: dict[str, FakeJob] = {}
        # Switches tests flip: commit the next N POST /jobs and still answer 502; make
        # jobs end FAILED instead of COMPLETED.
        self.fail_submits_after_commit = 0
        self.fail_jobs = False
        # Results carry a NUL character in their bitstrings (a provider's garbage that
        # PostgreSQL's jsonb refuses to store).
        self.corrupt_counts = False
        # Answer every request with this HTTP status (e.g. 500, 429) while set.
        self.force_status: int | None = None
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> FakeQbraid:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeQbraid:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}{API_PREFIX}"

    def live_jobs(self, **tags: Any) -> list[FakeJob]:
        with self.lock:
            return [
                j
                for j in self.jobs.values()
                if j.status not in TERMINAL and all(j.tags.get(k) == v for k, v in tags.items())
            ]

    # -- behaviour -----------------------------------------------------------------
    def _advance(self, job: FakeJob) -> None:
        """One status poll: INITIALIZING → QUEUED → RUNNING ... → COMPLETED/FAILED."""
        if job.status in TERMINAL:
            return
        job.polls += 1
        if job.polls < self.polls_to_complete:
            job.status = "QUEUED" if job.polls == 1 else "RUNNING"
            return
        job.ended_at = _now()
        if self.fail_jobs:
            job.status, job.status_msg = "FAILED", "simulated provider failure: device fault"
            return
        try:
            circuit = qasm2.loads(
                job.program["data"], custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS
            )
            seed = job.runtime_options.get("seed")
            result = AerSimulator().run(circuit, shots=job.shots, seed_simulator=seed).result()
            job.counts = dict(result.get_counts())
            if self.corrupt_counts:
                job.counts = {f"{k}\x00": v for k, v in job.counts.items()}
            job.status = "COMPLETED"
        except Exception as exc:  # the fake reports what a provider would: a failed job
            job.status, job.status_msg = "FAILED", f"{type(exc).__name__}: {exc}"


def sdk_env(fake: FakeQbraid, home: Path) -> dict[str, str]:
    """Environment for a process whose qBraid SDK must talk to ``fake`` only.

    ``HOME``/``QBRAID_CONFIG_FILE`` point at an empty directory so no real qbraidrc is
    read; ``QBRAID_API_URL`` is the fake; key variables are left to the caller.
    """
    return {
        "HOME": str(home),
        "QBRAID_CONFIG_FILE": str(home / ".qbraid" / "qbraidrc"),
        "QBRAID_API_URL": fake.url,
    }


def _make_handler(fake: FakeQbraid) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # keep pytest output clean

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def _send(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _ok(self, data: Any) -> None:
            self._send(200, {"success": True, "data": data})

        def _error(self, status: int, message: str, code: str) -> None:
            self._send(status, {"success": False, "error": {"message": message, "code": code}})

        def _dispatch(self, method: str) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            with fake.lock:
                fake.requests.append((method, path))
            if not path.startswith(API_PREFIX):
                return self._error(404, f"no route {path}", "NOT_FOUND")
            segs = [unquote(s) for s in path[len(API_PREFIX) :].strip("/").split("/")]
            if fake.force_status is not None:
                return self._error(fake.force_status, "forced failure", "FORCED")
            if self.headers.get("X-API-Key") != fake.api_key:
                return self._error(401, "Invalid API key", "UNAUTHORIZED")
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else {}
            with fake.lock:
                self._route(method, segs, query, body)

        def _route(
            self, method: str, segs: list[str], query: dict[str, str], body: dict[str, Any]
        ) -> None:
            match method, segs:
                case "GET", ["users", "verify"]:
                    self._ok({"organizationUserId": "org-user-1", "email": "t@example.com"})
                case "GET", ["devices"]:
                    self._ok(list(fake.devices.values()))
                case "GET", ["devices", qrn]:
                    if qrn not in fake.devices:
                        return self._error(404, f"Device '{qrn}' not found", "NOT_FOUND")
                    self._ok(fake.devices[qrn])
                case "POST", ["jobs"]:
                    self._submit(body)
                case "GET", ["jobs"]:
                    tags = json.loads(query.get("tags", "{}"))
                    hits = [
                        j.to_json()
                        for j in fake.jobs.values()
                        if all(j.tags.get(k) == v for k, v in tags.items())
                    ]
                    self._ok(hits[: int(query.get("limit", 100))])
                case "GET", ["jobs", qrn, *rest]:
                    job = fake.jobs.get(qrn)
                    if job is None:
                        return self._error(404, f"Job '{qrn}' not found", "NOT_FOUND")
                    if not rest:
                        fake._advance(job)
                        return self._ok(job.to_json())
                    if rest != ["result"] or job.status != "COMPLETED":
                        return self._error(400, "no result for this job", "NO_RESULT")
                    self._ok(
                        {
                            "status": job.status,
                            "cost": 0,
                            "timeStamps": {"createdAt": job.created_at, "endedAt": job.ended_at},
                            "resultData": {"measurementCounts": job.counts},
                        }
                    )
                case "POST", ["jobs", qrn, "cancel"]:
                    job = fake.jobs.get(qrn)
                    if job is None:
                        return self._error(404, f"Job '{qrn}' not found", "NOT_FOUND")
                    if job.status in TERMINAL:
                        return self._error(400, f"Job is {job.status}", "INVALID_STATE")
                    job.status, job.ended_at = "CANCELLED", _now()
                    self._ok({"jobQrn": qrn, "status": job.status})
                case _:
                    self._error(404, f"no route {method} /{'/'.join(segs)}", "NOT_FOUND")

        def _submit(self, body: dict[str, Any]) -> None:
            device = fake.devices.get(body.get("deviceQrn", ""))
            if device is None:
                return self._error(404, "Device not found", "NOT_FOUND")
            program = body.get("program") or {}
            if program.get("format") not in device["runInputTypes"]:
                return self._error(400, "Unsupported program format", "BAD_REQUEST")
            job = FakeJob(
                qrn=f"{device['qrn']}-{uuid.uuid4().hex[:12]}",
                device_qrn=device["qrn"],
                program=program,
                shots=int(body.get("shots") or 1000),
                tags=dict(body.get("tags") or {}),
                runtime_options=dict(body.get("runtimeOptions") or {}),
            )
            fake.jobs[job.qrn] = job
            if fake.fail_submits_after_commit > 0:
                # The job is stored, but the caller is told the gateway failed: the
                # situation that makes the SDK's POST retry create a twin.
                fake.fail_submits_after_commit -= 1
                return self._error(502, "Bad Gateway", "BAD_GATEWAY")
            self._ok(job.to_json())

    return Handler
