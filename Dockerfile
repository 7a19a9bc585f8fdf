# The one orderflow binary, for docker-compose.yml.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /orderflow ./cmd/orderflow

# nonroot: uid 65532; nothing in the image needs root.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /orderflow /orderflow
ENTRYPOINT ["/orderflow"]
