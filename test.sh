#!/usr/bin/env bash
# The test command: vet, staticcheck and the race-enabled tests, for the
# library and for the nested modules (integration, lockoutotel).
set -euo pipefail
cd "$(dirname "$0")"

go vet ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
go test -race -count=1 -timeout 20m ./...
# Every benchmark once, without the race detector: one that no longer runs
# (a server it starts that the store refuses, a setup that fails) fails
# here, not on the day someone measures.
go test -run '^$' -bench . -benchtime=1x -count=1 -timeout 10m ./...

# integration/ is a module of its own (testcontainers-go), which the root's
# ./... does not descend into. Its tests skip where no Docker engine runs,
# in CI too. -vet=all runs every go vet check as part of the race build,
# which saves compiling the Docker client packages a second time for go vet.
(
	cd integration
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	go test -race -vet=all -count=1 -timeout 10m ./...
)

# lockoutotel/ is a module of its own too (OpenTelemetry, Prometheus), so
# that importing the library pulls neither in. Its tests include the
# Prometheus scrape of its example server, and a check, with go list, that
# the root module depends on no OpenTelemetry or Prometheus module.
(
	cd lockoutotel
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	go test -race -vet=all -count=1 -timeout 10m ./...
)
