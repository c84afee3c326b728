# wtal-pipe with the CUDA build of torch (falls back to CPU when no GPU is visible).
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /opt/wtal-pipe
RUN pip install torch==2.14.1
COPY pyproject.toml README.md ./
COPY wtal_pipe ./wtal_pipe
COPY models ./models
RUN pip install -e ".[plot]"
ENV WTAL_MODELS_DIR=/opt/wtal-pipe/models
WORKDIR /work
ENTRYPOINT ["wtal"]
CMD ["--help"]
