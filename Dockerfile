# One image for every wirewatch role: `wirewatch poll`, `work`, `serve` (API), `run`.
# PID 1 is wirewatch itself (exec-form ENTRYPOINT): SIGTERM stops it in order, SIGHUP
# reloads the config (`docker kill -s HUP`). Health checks: `python -m monitor.healthcheck`.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY monitor ./monitor
COPY workers ./workers
RUN pip install --no-cache-dir -c constraints.txt '.[apprise,semantic]'
COPY config ./config
COPY seeds ./seeds
RUN useradd --system --home /app wirewatch \
    && mkdir -p /app/.wirewatch && chown wirewatch /app/.wirewatch
USER wirewatch
ENV WIREWATCH_CONFIG=/app/config/wirewatch.yaml
EXPOSE 8080
ENTRYPOINT ["wirewatch"]
CMD ["run"]
