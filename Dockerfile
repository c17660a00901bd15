# The worker image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY agentstream ./agentstream
COPY schemas ./schemas
COPY processors ./processors
COPY sinks ./sinks
RUN pip install --no-cache-dir ".[worker]"
EXPOSE 6066
CMD ["agentstream", "worker"]
