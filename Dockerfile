# relay's container image: a static binary on distroless (CA certificates,
# tzdata, no shell), running as an unprivileged user. See README, "Install":
#
#   docker build -t relay .
#   docker run -d --name relay -p 2525:2525 -v relay-data:/var/lib/relay relay
#
# The configuration is /etc/relay/relay.toml (dist/container.toml: it
# listens on 0.0.0.0:2525 inside the container); mount your own over it or
# set RELAY_CONFIG. Stamp a release with
# --build-arg VERSION=1.2.0 --build-arg COMMIT=$(git rev-parse HEAD).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/relay ./cmd/relay \
 && mkdir -p -m 0700 /out/data

# static-debian12: CA certificates and /etc/passwd with "nonroot" (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/relay /usr/bin/relay
COPY dist/container.toml /etc/relay/relay.toml
# The data directory belongs to the user relay runs as, before the volume
# is mounted over it: Docker copies its owner and mode into a new volume.
COPY --from=build --chown=65532:65532 /out/data /var/lib/relay
ENV RELAY_CONFIG=/etc/relay/relay.toml
USER 65532:65532
WORKDIR /var/lib/relay
VOLUME ["/var/lib/relay"]
EXPOSE 2525
# distroless has no curl: relay health asks /healthz on admin.listen.
HEALTHCHECK --interval=30s --timeout=15s --start-period=10s --retries=3 \
  CMD ["/usr/bin/relay", "health"]
# SIGTERM (docker stop) drains like systemctl stop: allow it 45 s with
# docker stop -t 45 or stop_grace_period: 45s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/relay"]
CMD ["serve"]
