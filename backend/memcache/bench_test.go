package memcache

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gm "github.com/bradfitz/gomemcache/memcache"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/conformance"
	"github.com/go-lockout/lockout/internal/testserver"
)

// BenchmarkStore runs the conformance benchmarks against one memcached.
// IncrExisting and Batch6 (three increments and three reads, the shape of
// an admitted decision with three rules) compare with BenchmarkBareIncrement.
func BenchmarkStore(b *testing.B) {
	srv := testserver.Memcached(b, "-m", "1024")
	conformance.RunBenchmarks(b, conformance.Harness{
		New: func(t testing.TB) backend.Backend {
			testserver.FlushMemcached(t, srv.Addr)
			s, err := NewServers([]string{srv.Addr}, &Options{Timeout: testTimeout})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Granularity: time.Second,
	})
}

// BenchmarkBareIncrement is the baseline: gomemcache's Increment of an
// existing key, spread over conformance.BenchKeys keys, with the client
// settings the store's benchmark uses.
func BenchmarkBareIncrement(b *testing.B) {
	srv := testserver.Memcached(b, "-m", "1024")
	testserver.FlushMemcached(b, srv.Addr)
	c := gm.New(srv.Addr)
	c.MaxIdleConns = DefaultMaxIdleConns
	c.Timeout = testTimeout
	defer c.Close()
	keys := make([]string, conformance.BenchKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench/%06d", i)
	}
	var wg sync.WaitGroup
	var fillErr atomic.Value
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < len(keys); i += 32 {
				if err := c.Add(&gm.Item{Key: keys[i], Value: []byte("1"), Expiration: 3600}); err != nil {
					fillErr.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := fillErr.Load(); err != nil {
		b.Fatalf("filling: %v", err)
	}
	var gid atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(gid.Add(1)*7919) % len(keys)
		for pb.Next() {
			if _, err := c.Increment(keys[i], 1); err != nil {
				b.Error(err)
				return
			}
			i = (i + 104729) % len(keys)
		}
	})
}
