# llmux container image: a multi-stage build on Debian 12, run as a non-root user.
#
#   docker build -t llmux .
#   docker run -p 8080:8080 -v $PWD/my.yaml:/etc/llmux/llmux.yaml:ro \
#              -e OPENAI_API_KEY=... llmux
#
# The configuration is read from /etc/llmux/llmux.yaml; secrets come from environment
# variables referenced there as ${NAME}.

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config \
      libuv1-dev node-llhttp libmbedtls-dev libjsmn-dev libyaml-dev libsqlite3-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt CMakePresets.json ./
COPY cmake cmake
COPY deps deps
COPY src src
RUN cmake --preset release -DLLMUX_MOCK=OFF \
 && cmake --build build/release -j"$(nproc)" --target llmux \
 && strip build/release/llmux \
 && build/release/llmux -V

# The runtime: the libraries llmux loads, the CA bundle it checks providers' certificates
# with, curl for the health check. In the same layer, `apt-get clean` drops the downloaded
# packages and apt's two binary caches (/var/cache/apt/*.bin, 76 MB after an update), which
# removing the lists alone leaves in the image.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libuv1 libmbedtls14 libmbedx509-1 \
      libmbedcrypto7 libyaml-0-2 libsqlite3-0 ca-certificates curl \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /var/cache/debconf/*-old \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin llmux
COPY --from=build /src/build/release/llmux /usr/local/bin/llmux
COPY conf/container.yaml /etc/llmux/llmux.yaml
USER llmux
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/llmux"]
CMD ["-c", "/etc/llmux/llmux.yaml"]
