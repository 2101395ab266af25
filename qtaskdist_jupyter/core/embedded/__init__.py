"""The embedded-services subsystem: PostgreSQL + Valkey started or joined under
``Settings.home`` for a single machine with no URLs (docs/embedded.md), and the
``qtaskdist`` command line that starts, stops and inspects them.

- :mod:`.services`: start or join the pair, hold and release it, resolve the URLs;
- :mod:`.daemons`: start, probe and stop one daemon;
- :mod:`.leases`: who holds the pair;
- :mod:`.watch`: the watchdog that stops a pair whose holders all died;
- :mod:`.cli`: ``qtaskdist`` (``services``, ``db upgrade``, ``gc``, ``service``, …).

Not the domain: these modules run the store, the broker and the migrations, so the domain
contract (tests/unit/test_import_contract.py) does not apply to them. Nothing is
re-exported here: a process that joins the pair imports only what it uses.
"""
