# hello-stateful: the static musl binary alone in an empty image.
# `make image` builds it from a context holding only that binary, so it needs no network and no
# base image: there is no shell, libc or package manager in it to patch or to exploit.
FROM scratch

# Set by `make image` from Cargo.toml; the binary already carries it (`--version`).
ARG VERSION=unknown
LABEL org.opencontainers.image.title="hello-stateful" \
      org.opencontainers.image.description="A tiny HTTP service that shows what a Kubernetes StatefulSet gives each replica" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"

# Owned by root and not writable by the server's user; 0755 from cargo.
COPY hello-stateful /hello-stateful

# Numeric, so Kubernetes' runAsNonRoot can verify it without an /etc/passwd (there is none).
# 65532 is the conventional "nonroot" id of distroless images; the StatefulSet's fsGroup matches.
USER 65532:65532
EXPOSE 8000
# Exec form: the server is PID 1 and handles SIGTERM itself (exits 0 within a second).
ENTRYPOINT ["/hello-stateful"]
