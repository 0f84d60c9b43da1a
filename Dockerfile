# metrics-gateway image: a static binary on distroless, running as 65532.
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     -t ghcr.io/metrics-gateway/metrics-gateway:<tag> .
#
# Multi-platform with buildx (--platform linux/amd64,linux/arm64): the
# builder runs natively and cross-compiles.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src

# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download

COPY cmd/ cmd/
COPY pkg/ pkg/

ARG VERSION=v0.1.0-dev
# Set by BuildKit for the platform being built; empty means the builder's own.
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags "-s -w -X github.com/metrics-gateway/metrics-gateway/pkg/server.Version=${VERSION}" \
      -o /out/metrics-gateway ./cmd/metrics-gateway

# No shell, no package manager; CA certificates and /etc/passwd for nonroot.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/metrics-gateway /metrics-gateway
USER 65532:65532
# metrics-server's port, as in the manifests (--secure-port).
EXPOSE 10250
ENTRYPOINT ["/metrics-gateway"]
