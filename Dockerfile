# The gateway image: the mlflow-gateway package and its runtime dependencies only (no MLflow:
# MLflow runs in its own image, mlflow/Dockerfile).
#   docker build -t mlflow-gateway/gateway:0.1.0 .
# Configuration: GATEWAY_* variables (README.md, docs/deployment.md).
FROM python:3.11.13-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
# gateway/policy_files/ links to the shipped casbin model and bootstrap policy here: without them
# the wheel would lack both, and the gateway would not start.
COPY policies ./policies
RUN python -m venv /opt/gateway \
    && /opt/gateway/bin/pip install --no-cache-dir .

FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/gateway/bin:$PATH \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=5000 \
    GATEWAY_DATA_DIR=/data

COPY --from=build /opt/gateway /opt/gateway
COPY deploy/gateway/healthcheck.py /opt/gateway/healthcheck.py
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin gateway \
    && mkdir -p /data \
    && chown gateway:gateway /data

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/opt/gateway/healthcheck.py", "/.gateway/healthz"]
ENTRYPOINT ["mlflow-gateway"]
CMD ["serve"]
