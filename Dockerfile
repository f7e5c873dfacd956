FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    AGENTOPS_VAR_DIR=/app/var

WORKDIR /app
COPY pyproject.toml README.md ./
COPY agentops ./agentops
RUN pip install .
COPY manage.py ./
COPY templates ./templates
COPY static ./static
# collectstatic needs settings to import; a throwaway production-shaped environment is enough.
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY=collectstatic-only-not-a-real-key-0123456789abcdefghij \
    DJANGO_ALLOWED_HOSTS=localhost DATABASE_URL=postgres://build@localhost/build \
    REDIS_URL=redis://localhost:6379/0 AGENTOPS_FERNET_KEY=YnVpbGQtb25seS1ub3QtYS1yZWFsLWtleS0wMTIzNDU= \
    python manage.py collectstatic --noinput \
 && useradd --create-home agentops && mkdir -p /app/var && chown -R agentops /app/var
USER agentops
EXPOSE 8000
CMD ["gunicorn", "agentops.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
