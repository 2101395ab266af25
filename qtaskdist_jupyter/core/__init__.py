"""What every runtime shares: configuration, errors, models, the store (PostgreSQL), the
broker (Redis Streams), circuit codecs, the service layer and the embedded services.

Imports neither IPython, anywidget, httpx nor jupyter_server (tests/unit/test_import_contract.py),
so a worker-only install can use all of it.
"""
