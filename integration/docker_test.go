package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// dockerProbeTimeout bounds the search for a Docker engine, so that a
// DOCKER_HOST pointing at a host that never answers cannot hang the tests.
const dockerProbeTimeout = 5 * time.Second

// startTimeout bounds starting one container, image pull included.
const startTimeout = 3 * time.Minute

// dockerHealth reports why no healthy Docker engine is reachable, or nil
// when one is. It is computed once per test binary.
var dockerHealth = sync.OnceValue(func() (err error) {
	// testcontainers-go panics where it cannot find a Docker host in some
	// paths; treat that as no engine.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("testcontainers-go panicked: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), dockerProbeTimeout)
	defer cancel()
	// NewDockerClientWithOpts finds the host as testcontainers-go does
	// (and caches it for the containers started later), checking each
	// candidate with ctx; it does not fail when the engine does not answer,
	// so ask the engine for its info too.
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := cli.Info(ctx, client.InfoOptions{}); err != nil {
		return err
	}
	return nil
})

// requireDocker skips t unless a Docker engine is healthy. It skips in CI
// too: see the package documentation.
func requireDocker(t *testing.T) {
	t.Helper()
	if err := dockerHealth(); err != nil {
		t.Skipf("integration: skipping: no healthy Docker engine found (looked as testcontainers-go does, for at most %v): %v; "+
			"these tests need a running engine, the docker CLI alone is not enough", dockerProbeTimeout, err)
	}
}
