package integration

import (
	"context"
	"testing"
	"time"

	gm "github.com/bradfitz/gomemcache/memcache"
	"github.com/testcontainers/testcontainers-go"
	tcmemcached "github.com/testcontainers/testcontainers-go/modules/memcached"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/memcache"
	"github.com/go-lockout/lockout/conformance"
)

// memcachedImage is the memcached the containers run: the version the
// library is tested with on the CI machines.
const memcachedImage = "memcached:1.6-alpine"

// memcachedTimeout is the client timeout of the stores under test: Docker's
// port forwarding and the race detector on a small machine stall a request
// beyond the 500 ms default now and then.
const memcachedTimeout = 5 * time.Second

// TestMemcached runs the conformance suite against the memcache store over
// a memcached container.
func TestMemcached(t *testing.T) {
	requireDocker(t)
	t.Parallel()

	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	// -M: the store refuses a server that may evict keys (memcache.ErrEvicting);
	// the image's entrypoint runs memcached with arguments that start with '-'.
	ctr, err := tcmemcached.Run(ctx, memcachedImage, testcontainers.WithCmdArgs("-M"))
	testcontainers.CleanupContainer(t, ctr)
	if err != nil {
		t.Fatalf("start memcached container: %v", err)
	}
	addr, err := ctr.HostPort(ctx)
	if err != nil {
		t.Fatalf("memcached container address: %v", err)
	}
	runMemcached(t, addr)
}

// runMemcached runs the conformance suite against the memcache store over
// the memcached server at addr (host:port).
func runMemcached(t *testing.T, addr string) {
	flusher := gm.New(addr)
	flusher.Timeout = memcachedTimeout
	t.Cleanup(func() { flusher.Close() })

	conformance.Run(t, conformance.Harness{
		New: func(t testing.TB) backend.Backend {
			if err := flusher.FlushAll(); err != nil {
				t.Fatalf("flush_all: %v", err)
			}
			s, err := memcache.NewServers([]string{addr}, &memcache.Options{Timeout: memcachedTimeout})
			if err != nil {
				t.Fatalf("memcache store: %v", err)
			}
			return s
		},
		Granularity: time.Second,
		Lister:      false, // memcached cannot list keys
	})
}
