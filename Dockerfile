# syntax=docker/dockerfile:1
# The operator's image: `wmco run` as a non-root user, with the real Windows payload at /payload.
#
#   docker build -t quay.io/wmco/wmco:latest .
#
# Three stages:
#   payload  cross-compiles the Windows binaries from the Go module proxy with the pinned wrapper
#            modules of hack/payload/ (hack/payload/build.sh prints its output folder, which holds
#            manifest.json and the files, on its last line);
#   wheel    builds the operator's wheel and installs it with its dependencies into /opt/wmco;
#   (final)  a slim Python image with /opt/wmco and /payload, running as 65532:65532 -- the user
#            id deploy/base/deployment.yaml asks for (OpenShift assigns its own; everything here
#            is readable by any user).
ARG GO_IMAGE=docker.io/library/golang:1.26-bookworm
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${GO_IMAGE} AS payload
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY hack/payload/ hack/payload/
RUN dir="$(WMCO_CACHE_DIR=/tmp/wmco-cache hack/payload/build.sh | tail -n 1)" \
    && test -f "$dir/manifest.json" \
    && mkdir -p /out \
    && cp -a "$dir" /out/payload \
    && chmod -R a+rX /out/payload

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/ src/
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /out . \
    && python -m venv /opt/wmco \
    && /opt/wmco/bin/pip install --no-cache-dir /out/wmco-*.whl \
    && /opt/wmco/bin/wmco version

FROM ${PYTHON_IMAGE}
COPY --from=wheel /opt/wmco /opt/wmco
COPY --from=payload /out/payload /payload
ENV PATH=/opt/wmco/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WMCO_PAYLOAD_DIR=/payload
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["wmco", "run"]
