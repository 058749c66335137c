package redis_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-lockout/lockout"
	redisstore "github.com/go-lockout/lockout/backend/redis"
	"github.com/go-lockout/lockout/internal/testserver"
)

// TestDjangoDefenderRedisURL is the README's row for DEFENDER_REDIS_URL: the
// same URL, parsed by go-redis, names the server and the database.
func TestDjangoDefenderRedisURL(t *testing.T) {
	ctx := context.Background()
	srv := testserver.Redis(t)
	redisURL := "redis://" + srv.Addr + "/3" // DEFENDER_REDIS_URL

	opts, err := goredis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	opts.ContextTimeoutEnabled = true
	client := goredis.NewClient(opts)
	defer client.Close()
	if err := client.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	store, err := redisstore.New(ctx, client, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	p, err := lockout.New(store, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(2)}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	alice := lockout.Subject{Username: "alice"}
	for range 2 {
		a, err := p.Allow(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Failure(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Allow(ctx, alice); !errors.Is(err, lockout.ErrLocked) {
		t.Fatalf("after 2 failures: %v, want locked", err)
	}
	// The lock is in database 3, where the URL points.
	keys, err := client.Keys(ctx, "lockout:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Errorf("no lockout keys in database 3")
	}
}
