package redis_test

import (
	"context"
	"errors"
	"log"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-lockout/lockout"
	redisstore "github.com/go-lockout/lockout/backend/redis"
)

// ExampleNew sets up a policy over one Redis server. It needs a server, so
// it is compiled but not run.
func ExampleNew() {
	ctx := context.Background()
	client := goredis.NewClient(&goredis.Options{
		Addr:                  "localhost:6379",
		ContextTimeoutEnabled: true, // decisions keep their deadline
	})
	defer client.Close() // after the store and the policy

	// New loads the script and refuses a server that may evict keys.
	store, err := redisstore.New(ctx, client, &redisstore.Options{Prefix: "myapp:"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	policy, err := lockout.New(store, lockout.Config{
		Rules: []lockout.Rule{lockout.ByUsername(5), lockout.ByIP(20)},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer policy.Close()

	a, err := policy.Allow(ctx, lockout.Subject{Username: "alice", IP: "192.0.2.1"})
	var refused *lockout.RefusedError
	switch {
	case errors.As(err, &refused):
		log.Printf("refused: retry after %v", refused.RetryAfter.Round(time.Second))
		return
	case err != nil:
		log.Fatal(err)
	}
	// ... verify the password, then:
	if err := a.Failure(ctx); err != nil { // or a.Success(ctx)
		log.Print(err)
	}
}

// ExampleNew_cluster sets up the store over a Redis Cluster: a subject's
// keys share a hash tag, so that each decision's keys live on one shard.
func ExampleNew_cluster() {
	ctx := context.Background()
	client := goredis.NewClusterClient(&goredis.ClusterOptions{
		Addrs:                 []string{"redis-1:6379", "redis-2:6379", "redis-3:6379"},
		ContextTimeoutEnabled: true,
	})
	defer client.Close()
	store, err := redisstore.New(ctx, client, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	// lockout.New(store, ...) as with one server.
}
