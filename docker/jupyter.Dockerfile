# The Jupyter server with the qtaskdist extension (no Aer: the server validates circuits
# with qiskit core; workers simulate).
FROM python:3.11-slim
RUN useradd -m -u 1000 jovyan
WORKDIR /opt/qtaskdist
COPY pyproject.toml README.md ./
COPY qtaskdist_jupyter ./qtaskdist_jupyter
COPY server_extension ./server_extension
COPY worker ./worker
COPY jupyter-config ./jupyter-config
RUN pip install --no-cache-dir ".[server]" jupyterlab
USER jovyan
WORKDIR /home/jovyan
EXPOSE 8888
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--ServerApp.root_dir=/home/jovyan"]
