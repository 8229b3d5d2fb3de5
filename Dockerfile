# The control plane's one image: web (gunicorn), Celery worker, Celery beat and the
# one-shot migration all run it with different commands (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin controlplane

# Requirements first: the dependency layer is reused until requirements.txt changes.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .
# Static files are collected at build time with production settings (DEBUG=0 makes the
# manifest whitenoise serves). The values below exist only for this step: settings
# refuse to load in production mode without them, and the image keeps none of them.
RUN DEBUG=0 \
    SECRET_KEY=collectstatic-only \
    GITHUB_WEBHOOK_SECRET=collectstatic-only \
    VAR_DIR=/tmp/collectstatic-var \
    python manage.py collectstatic --noinput -v0 \
    && rm -rf /tmp/collectstatic-var \
    && mkdir -p /app/var \
    && chown controlplane /app/var

USER controlplane
EXPOSE 8000
CMD ["gunicorn", "controlplane.wsgi", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", "--workers", "2", "--threads", "4"]
