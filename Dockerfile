# The production image: a static ladder binary, built without the embedded
# development broker (-tags nodev), on distroless static, as the non-root
# user 65532. It carries topics/ (the topic spec and scripts) for the chart's
# provisioning job. Build from the repository root:
#   docker build --build-arg VERSION=$(git describe --tags --always) -t REGISTRY/ladder:TAG .

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -tags nodev -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" -o /ladder ./cmd/ladder

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /ladder /usr/local/bin/ladder
COPY topics/ /usr/share/ladder/topics/
USER 65532:65532
# /metrics, /healthz and /readyz (LADDER_HTTP_ADDR).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ladder"]
CMD ["run"]
