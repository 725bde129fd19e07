# The Corral image for docker-compose.yml: web (gunicorn) and RQ workers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CORRAL_HOME=/data

# git: Corral's canonical repositories, session clones and commits. bubblewrap:
# the sandbox check commands and agent sessions run in (docker-compose.yml
# gives the containers the user namespaces it needs).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git bubblewrap \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . .
# Installs the pinned dependencies and the `corral` CLI. The code runs from
# /app (manage.py and gunicorn put the working folder first on sys.path), so
# templates/ and static/ are found there; whitenoise serves static files
# through the finders, so there is no collectstatic step.
RUN pip install .

RUN useradd --create-home --uid 1000 corral \
    && mkdir -p /data \
    && chown corral:corral /data
USER corral
VOLUME /data

EXPOSE 8000
CMD ["gunicorn", "corral.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "2", \
     "--access-logfile", "-", "--no-control-socket"]
