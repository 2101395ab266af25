"""Tools that assume a checkout of the repository (not in the wheel): the demo that runs
``notebooks/01-quickstart.ipynb`` and the Jupyter server launcher the demo, the tests and
the benchmarks share."""
