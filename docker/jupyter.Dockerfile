# The Jupyter server with the qtaskdist extension (no Aer: the server validates circuits
# with qiskit core; workers simulate). The extension runs the Alembic migrations when the
# server starts, so no separate migration step is needed.
#   docker build -f docker/jupyter.Dockerfile -t qtaskdist-jupyter .
FROM python:3.11-slim
RUN useradd -m -u 1000 jovyan
WORKDIR /opt/qtaskdist
COPY pyproject.toml README.md ./
COPY qtaskdist_jupyter ./qtaskdist_jupyter
COPY server_extension ./server_extension
COPY worker ./worker
COPY jupyter-config ./jupyter-config
RUN pip install --no-cache-dir ".[server]" "jupyterlab>=4.2"
COPY notebooks /home/jovyan/notebooks
RUN chown -R jovyan /home/jovyan/notebooks
USER jovyan
WORKDIR /home/jovyan
ENV PYTHONUNBUFFERED=1
EXPOSE 8888
# The token comes from JUPYTER_TOKEN (.env); the server's qtaskdist health endpoint answers
# only once the extension is loaded.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=10 \
  CMD ["python", "-c", "import os, urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:8888/qtaskdist/api/health', headers={'Authorization': 'token ' + os.environ.get('JUPYTER_TOKEN', '')}), timeout=4)"]
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--ServerApp.root_dir=/home/jovyan"]
