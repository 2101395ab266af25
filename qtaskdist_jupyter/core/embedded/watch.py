"""The embedded pair's watchdog: ``python -m qtaskdist_jupyter.core.embedded.watch HOME``.

A holder that exits releases its lease, and the last one out stops the pair. A holder
killed with SIGKILL (or the OOM killer) cannot; without this process the pair would then
run forever with nobody using it. :func:`qtaskdist_jupyter.core.services.ensure_services`
starts one next to the pair. Every :data:`WATCH_INTERVAL_S` it drops the leases of dead
holders and, when none is left alive, stops the pair and exits. It also exits when the
pair was stopped by someone else or another watchdog took over.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from qtaskdist_jupyter.core.embedded import daemons, leases, services

WATCH_INTERVAL_S = 2.0  # a dead last holder's pair stops within about this long

log = logging.getLogger("qtaskdist_jupyter.core.embedded.watch")


def check_once(home: Path) -> bool:
    """One look; True while the watchdog should keep watching."""
    with services._lock(home):
        state = services._read_state(home)
        if (state.get("watchdog") or {}).get("pid") != os.getpid():
            log.info("another watchdog took over; exiting")
            return False
        up = [w for w in services.DAEMONS if daemons.running(home, services.entry(state, w), w)]
        if not up:
            log.info("the pair is stopped; exiting")
            return False
        if leases.live_holders(home):
            return True
        services._stop_pair(home, state, timeout_s=15.0)
        log.warning("no live holder left (the last one died without releasing): stopped the pair")
        return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m qtaskdist_jupyter.core.embedded.watch HOME", file=sys.stderr)
        return 2
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s watchdog: %(message)s")
    home = Path(args[0]).resolve()
    log.info("watching the embedded pair under %s (pid %d)", home, os.getpid())
    while True:
        time.sleep(WATCH_INTERVAL_S)
        try:
            if not check_once(home):
                return 0
        except Exception:  # noqa: BLE001 - a watchdog that dies leaves the pair unwatched
            log.exception("check failed; trying again")


if __name__ == "__main__":
    sys.exit(main())
