# A worker node: the worker extra only, no Jupyter.
FROM python:3.11-slim
RUN useradd -m -u 1000 worker
WORKDIR /opt/qtaskdist
COPY pyproject.toml README.md ./
COPY qtaskdist_jupyter ./qtaskdist_jupyter
COPY server_extension ./server_extension
COPY worker ./worker
COPY jupyter-config ./jupyter-config
RUN pip install --no-cache-dir ".[worker]"
USER worker
ENV OMP_NUM_THREADS=1
CMD ["qtaskdist-worker", "--concurrency", "2", "--alive-file", "/tmp/qtaskdist-worker.alive"]
