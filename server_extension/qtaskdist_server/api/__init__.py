"""The API layer, shared by both hosts of the REST API (the jupyter-server extension and
the ``qtaskdist service`` of a team): :mod:`.service` (API policy over the store and the
broker), :mod:`.params` (query parameters), :mod:`.listing` (list views) and :mod:`.fleet`
(health of the fleet). Imports neither jupyter_server nor any host."""
