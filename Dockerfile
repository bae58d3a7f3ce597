# goe-bridge: go-e EV chargers <-> MQTT.
# Build for several architectures (Raspberry Pi included), see docs/docker.md:
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 -t goe-bridge .

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/goe-bridge
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN /opt/goe-bridge/bin/pip install .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="goe-bridge" \
      org.opencontainers.image.description="Connects go-e EV chargers to MQTT (Home Assistant, ioBroker, Node-RED, openWB)" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="0.1.0"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/goe-bridge/bin:$PATH
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin goe
COPY --from=build /opt/goe-bridge /opt/goe-bridge
USER goe
VOLUME ["/config"]
EXPOSE 8080
# Needs `http: {enabled: true}` in the config (the port it checks is 8080).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["goe-bridge", "health", "http://127.0.0.1:8080/healthz", "--quiet"]
ENTRYPOINT ["goe-bridge"]
CMD ["run", "-c", "/config/config.yaml"]
