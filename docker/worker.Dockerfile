# A worker node: the worker extra only, no Jupyter.
#   docker build -f docker/worker.Dockerfile -t qtaskdist-worker .
FROM python:3.11-slim
RUN useradd -m -u 1000 worker
WORKDIR /opt/qtaskdist
COPY pyproject.toml README.md ./
COPY qtaskdist_jupyter ./qtaskdist_jupyter
COPY server_extension ./server_extension
COPY worker ./worker
COPY jupyter-config ./jupyter-config
RUN pip install --no-cache-dir ".[worker]"
COPY docker/worker_healthcheck.py /opt/qtaskdist/worker_healthcheck.py
USER worker
ENV OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
# Healthy while a worker on this container's hostname heartbeats in Redis.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "/opt/qtaskdist/worker_healthcheck.py"]
CMD ["qtaskdist-worker", "--concurrency", "2"]
