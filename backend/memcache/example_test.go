package memcache_test

import (
	"log"
	"time"

	gm "github.com/bradfitz/gomemcache/memcache"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend/memcache"
)

// ExampleNewServers sets up a policy over two memcached servers (run with
// -M, so that a full server refuses writes instead of evicting a lock).
// It needs the servers, so it is compiled but not run.
func ExampleNewServers() {
	store, err := memcache.NewServers([]string{"10.0.0.1:11211", "10.0.0.2:11211"}, &memcache.Options{Prefix: "myapp:"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close() // it owns its client

	policy, err := lockout.New(store, lockout.Config{
		Rules: []lockout.Rule{lockout.ByUsername(5), lockout.ByIP(20)},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer policy.Close()
	// policy.Allow(ctx, subject), then Success or Failure.
}

// ExampleNew sets up the store over a gomemcache client the caller keeps
// and tunes.
func ExampleNew() {
	client := gm.New("127.0.0.1:11211")
	client.MaxIdleConns = memcache.DefaultMaxIdleConns // the client's default of 2 is too few
	client.Timeout = 200 * time.Millisecond
	defer client.Close() // after the store

	store, err := memcache.New(client, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	// lockout.New(store, ...) as above.
}
