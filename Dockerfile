# goe-bridge: go-e EV chargers <-> MQTT.
# Build for several architectures (Raspberry Pi included), see docs/docker.md:
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 -t goe-bridge .
# The same file builds the Home Assistant add-on (config.json beside it): the Supervisor
# passes BUILD_ARCH, which selects the add-on stage at the end.
ARG BUILD_ARCH=""

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/goe-bridge
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY bridge ./bridge
RUN /opt/goe-bridge/bin/pip install .
# The running bridge needs neither pip nor setuptools; byte-compile once here, so the
# read-only image never writes .pyc files.
RUN /opt/goe-bridge/bin/python -m pip uninstall --yes pip setuptools
RUN /opt/goe-bridge/bin/python -m compileall -q /opt/goe-bridge

FROM python:3.11-slim AS image
LABEL org.opencontainers.image.title="goe-bridge" \
      org.opencontainers.image.description="Connects go-e EV chargers to MQTT (Home Assistant, ioBroker, Node-RED, openWB)" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="0.1.0"
# The base image's own pip, setuptools and wheel are not needed at run time either.
RUN python -m pip uninstall --yes pip setuptools wheel \
    && rm -rf /usr/local/lib/python3.11/ensurepip \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin goe \
    && mkdir /data && chown goe /data
# The status page and /healthz are on by default in the image (inside the container; publish
# the port to reach them), so HEALTHCHECK works with any config; GOE_BRIDGE__HTTP__ENABLED=false
# turns them off.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/goe-bridge/bin:$PATH \
    GOE_BRIDGE__HTTP__ENABLED=true \
    GOE_BRIDGE__HTTP__HOST=0.0.0.0 \
    GOE_BRIDGE__STATE_FILE=/data/state.json
COPY --from=build /opt/goe-bridge /opt/goe-bridge
USER goe
# /data: the bridge's record for its next start (survives a power cut that rolls the broker back)
VOLUME ["/config", "/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["goe-bridge", "health", "http://127.0.0.1:8080/healthz", "--quiet"]
ENTRYPOINT ["goe-bridge"]
CMD ["run", "-c", "/config/config.yaml"]

# The Home Assistant add-on: the same image, run as root as add-ons are (the Supervisor's
# /data/options.json belongs to root); its options and the Supervisor's MQTT broker are the
# config. The Supervisor watches the add-on itself.
FROM image AS addon-image
USER root
HEALTHCHECK NONE
CMD ["addon-run"]

# `docker build`: the image; the Supervisor (BUILD_ARCH set): the add-on
FROM ${BUILD_ARCH:+addon-}image
