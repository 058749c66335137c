package integration

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"

	"github.com/go-lockout/lockout/backend"
	redisstore "github.com/go-lockout/lockout/backend/redis"
	"github.com/go-lockout/lockout/conformance"
)

// redisImage is the Redis the containers run: the version the library is
// tested with on the CI machines.
const redisImage = "redis:7.0-alpine"

// TestRedis runs the conformance suite against the redis store over a
// go-redis client to a Redis container, set up as the store's package
// documentation recommends.
func TestRedis(t *testing.T) {
	requireDocker(t)
	t.Parallel()

	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	ctr, err := tcredis.Run(ctx, redisImage)
	testcontainers.CleanupContainer(t, ctr)
	if err != nil {
		t.Fatalf("start Redis container: %v", err)
	}
	url, err := ctr.ConnectionString(ctx)
	if err != nil {
		t.Fatalf("Redis container address: %v", err)
	}
	runRedis(t, url)
}

// runRedis runs the conformance suite against the redis store over a
// go-redis client to the server at url (redis://host:port).
func runRedis(t *testing.T, url string) {
	opts, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatalf("parse %q: %v", url, err)
	}
	opts.ContextTimeoutEnabled = true
	client := goredis.NewClient(opts)
	t.Cleanup(func() { client.Close() })

	conformance.Run(t, conformance.Harness{
		New: func(t testing.TB) backend.Backend {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := client.FlushDB(ctx).Err(); err != nil {
				t.Fatalf("FLUSHDB: %v", err)
			}
			s, err := redisstore.New(ctx, client, nil)
			if err != nil {
				t.Fatalf("redis store: %v", err)
			}
			return s
		},
		Granularity: redisstore.Granularity,
		Lister:      true,
		AtomicTags:  true, // one script call per batch on a plain client
	})
}
