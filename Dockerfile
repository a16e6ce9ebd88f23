# One image for worker, beat, flower and the migrate job (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    PATH=/app/.venv/bin:$PATH

RUN pip install --no-cache-dir uv==0.13.9 \
    && useradd --create-home --uid 10001 app

WORKDIR /app

# Dependencies first, from the lock only, so that a code change does not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-install-project --extra s3 --extra xlsx --extra stripe --python python3

COPY saas_tasks ./saas_tasks
COPY config ./config
COPY Procfile ./
RUN uv sync --frozen --extra s3 --extra xlsx --extra stripe --python python3 \
    && mkdir -p /app/var \
    && chown -R app:app /app/var

USER app

# Compose (or the platform) names the process; this default is the worker.
CMD ["celery", "-A", "saas_tasks", "worker", "--loglevel=INFO", "--hostname=worker@%h"]
