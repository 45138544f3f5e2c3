# hedgeflow worker / CLI image: `docker build -t hedgeflow .`
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 hedgeflow
WORKDIR /app
# the runtime dependencies at exactly the locked versions, hashes checked (`make upgrade` changes them)
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
# every package of pyproject's [tool.setuptools.packages.find]
COPY config ./config
COPY domain ./domain
COPY venues ./venues
COPY ledger ./ledger
COPY telemetry ./telemetry
COPY messages ./messages
COPY activities ./activities
COPY workflows ./workflows
COPY control ./control
COPY workers ./workers
COPY lab ./lab
COPY hedgeflow ./hedgeflow
RUN pip install --no-deps . && mkdir -p /data && chown hedgeflow /data
USER hedgeflow
ENV HEDGEFLOW__STATE_DIR=/data
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=5s --retries=5 \
  CMD python -c "import urllib.request,os; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('HEDGEFLOW__METRICS_PORT', '9464'), timeout=4)" || exit 1
ENTRYPOINT ["hedgeflow"]
CMD ["worker"]
