package redis_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/internal/testserver"
)

// BenchmarkLockedKey measures refusals of one locked key hit by many
// goroutines at once, the shape of an attack on one account, with the
// lock cache on (the default) and off (NoLockCache). It reports the
// commands the server ran per refusal (cmds/op, from INFO commandstats):
// about 0 with the cache, which remembers the lock for LockCacheTTL and
// asks the store again once per TTL.
func BenchmarkLockedKey(b *testing.B) {
	srv := testserver.Redis(b)
	client := newClient(b, srv.Addr, func(o *goredis.Options) { o.ContextTimeoutEnabled = true })
	store := newStore(b, client, nil)
	victim := lockout.Subject{Username: "victim", IP: "203.0.113.9"}
	for _, tc := range []struct {
		name     string
		cacheTTL time.Duration
	}{{"cache", 0}, {"nocache", lockout.NoLockCache}} {
		b.Run(tc.name, func(b *testing.B) {
			r := lockout.ByUsername(3)
			r.Schedule = lockout.Fixed(time.Hour)
			p, err := lockout.New(store, lockout.Config{
				Rules:        []lockout.Rule{r, lockout.ByIP(1000)},
				Prefix:       "bench-" + tc.name,
				LockCacheTTL: tc.cacheTTL,
				Logger:       slog.New(slog.DiscardHandler),
			})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			ctx := context.Background()
			for range 3 { // locks the victim (already locked on the benchmark's later runs)
				a, err := p.Allow(ctx, victim)
				if err != nil {
					break
				}
				a.Failure(ctx)
			}
			calls0 := totalCalls(b, client)
			b.ReportAllocs()
			b.SetParallelism(16) // 16 x GOMAXPROCS goroutines
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := p.Allow(ctx, victim); err == nil {
						b.Error("admitted while locked")
						return
					}
				}
			})
			b.StopTimer()
			// INFO itself is counted once by the second read.
			b.ReportMetric(float64(totalCalls(b, client)-calls0-1)/float64(b.N), "cmds/op")
		})
	}
}

// totalCalls sums the calls of every command in INFO commandstats.
func totalCalls(b *testing.B, c *goredis.Client) int64 {
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for line := range strings.Lines(info) {
		_, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
		if err != nil {
			b.Fatalf("INFO commandstats: %q", line)
		}
		total += n
	}
	return total
}
