package redis_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-lockout/lockout/backend"
	redisstore "github.com/go-lockout/lockout/backend/redis"
	"github.com/go-lockout/lockout/conformance"
	"github.com/go-lockout/lockout/internal/testserver"
)

// BenchmarkRedis measures the store and, on the same server in the same
// run, bare go-redis commands over as many keys, so that ratios can be
// quoted:
//
//   - Store/...: conformance.RunBenchmarks (context.Background: the call
//     runs on the caller's goroutine);
//   - BareIncr: client.Incr of one of conformance.BenchKeys existing keys;
//   - BarePipeline6: one pipeline of three INCR and three GET, the bare
//     commands of Batch6;
//   - StoreIncr, StoreBatch6: the store's IncrExisting and Batch6 again;
//   - StoreIncrCancelable, StoreBatch6Cancelable: the same with a context
//     that can be cancelled, as a request's can (the call then runs on a
//     goroutine of its own);
//   - StoreIncrDeadline, StoreBatch6Deadline: the same with a context that
//     has a deadline, on a client with ContextTimeoutEnabled (the call runs
//     on the caller's goroutine).
//
// The last eight also report the CPU time that one operation costs the client
// process (client-µs/op, user+system) and the Redis server (server-µs/op,
// from INFO cpu): on a shared machine wall time is noisy, CPU time much less.
func BenchmarkRedis(b *testing.B) {
	srv := testserver.Redis(b)
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	b.Cleanup(func() { client.Close() })
	newStore := func(b testing.TB) *redisstore.Store {
		testserver.FlushRedis(b, srv.Addr)
		s, err := redisstore.New(context.Background(), client, nil)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}

	b.Run("Store", func(b *testing.B) {
		conformance.RunBenchmarks(b, conformance.Harness{
			New: func(b testing.TB) backend.Backend { return newStore(b) },
		})
	})
	b.Run("BareIncr", func(b *testing.B) {
		keys := fillBare(b, client, srv.Addr)
		runBare(b, client, func(ctx context.Context, i int) error {
			return client.Incr(ctx, keys[i]).Err()
		})
	})
	b.Run("BarePipeline6", func(b *testing.B) {
		keys := fillBare(b, client, srv.Addr)
		n := len(keys)
		runBare(b, client, func(ctx context.Context, i int) error {
			pipe := client.Pipeline()
			for j := range 3 {
				pipe.Incr(ctx, keys[(i+j)%n])
			}
			for j := 3; j < 6; j++ {
				pipe.Get(ctx, keys[(i+j)%n])
			}
			_, err := pipe.Exec(ctx)
			return err
		})
	})
	// storeBench runs IncrExisting (size 1) or Batch6 (size 6) with a
	// context that cannot end, one that can be cancelled, or one with a
	// deadline on a client with ContextTimeoutEnabled.
	ctxClient := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	b.Cleanup(func() { ctxClient.Close() })
	storeBench := func(b *testing.B, ctxKind string, size int) {
		c := client
		ctx := context.Background()
		switch ctxKind {
		case "cancelable":
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
		case "deadline":
			c = ctxClient
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Hour)
			defer cancel()
		}
		s := newStore(b)
		if c != client {
			var err error
			if s, err = redisstore.New(ctx, c, nil); err != nil {
				b.Fatal(err)
			}
		}
		keys := fillBare(b, client, srv.Addr)
		n := len(keys)
		runBare(b, client, func(_ context.Context, i int) error {
			var ops [6]backend.Op
			var res [6]backend.Result
			for j := range size {
				if j < 3 {
					ops[j] = backend.IncrOp(keys[(i+j)%n], 1, time.Hour)
				} else {
					ops[j] = backend.ExistsOp(keys[(i+j)%n])
				}
			}
			return s.Do(ctx, ops[:size], res[:size])
		})
	}
	b.Run("StoreIncr", func(b *testing.B) { storeBench(b, "background", 1) })
	b.Run("StoreBatch6", func(b *testing.B) { storeBench(b, "background", 6) })
	b.Run("StoreIncrCancelable", func(b *testing.B) { storeBench(b, "cancelable", 1) })
	b.Run("StoreBatch6Cancelable", func(b *testing.B) { storeBench(b, "cancelable", 6) })
	b.Run("StoreIncrDeadline", func(b *testing.B) { storeBench(b, "deadline", 1) })
	b.Run("StoreBatch6Deadline", func(b *testing.B) { storeBench(b, "deadline", 6) })
}

// fillBare flushes the server and creates conformance.BenchKeys counters,
// named as the conformance benchmarks name theirs.
func fillBare(b *testing.B, client *goredis.Client, addr string) []string {
	b.Helper()
	testserver.FlushRedis(b, addr)
	ctx := context.Background()
	keys := make([]string, conformance.BenchKeys)
	pipe := client.Pipeline()
	for i := range keys {
		keys[i] = fmt.Sprintf("bench/%06d", i)
		pipe.Set(ctx, keys[i], 1, 0)
		if pipe.Len() == 1000 || i == len(keys)-1 {
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	return keys
}

// runBare runs f in parallel over the key indexes the conformance
// benchmarks visit, and reports the CPU time per operation of this process
// and of the server client talks to.
func runBare(b *testing.B, client *goredis.Client, f func(ctx context.Context, i int) error) {
	var gid atomic.Int64
	b.ReportAllocs()
	server0 := serverCPU(b, client)
	b.ResetTimer()
	client0 := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		i := int(gid.Add(1)*7919) % conformance.BenchKeys
		ctx := context.Background()
		for pb.Next() {
			if err := f(ctx, i); err != nil {
				b.Error(err)
				return
			}
			i = (i + 104729) % conformance.BenchKeys
		}
	})
	b.StopTimer()
	clientCPU := processCPU() - client0
	serverCPU := serverCPU(b, client) - server0
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(b.N) }
	b.ReportMetric(us(clientCPU), "client-µs/op")
	b.ReportMetric(us(serverCPU), "server-µs/op")
}

// processCPU returns the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU returns the user and system CPU time the Redis server has used.
func serverCPU(b *testing.B, client *goredis.Client) time.Duration {
	info, err := client.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for _, f := range []string{"used_cpu_user:", "used_cpu_sys:"} {
		for line := range strings.Lines(info) {
			if v, ok := strings.CutPrefix(line, f); ok {
				sec, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					b.Fatal(err)
				}
				total += time.Duration(sec * float64(time.Second))
			}
		}
	}
	return total
}

// BenchmarkRedisCluster runs conformance.RunBenchmarks against the 3-master
// Cluster, and a bare ClusterClient.Incr over as many keys. Batch6 there is
// one pipeline: one round trip to each node its six keys live on.
func BenchmarkRedisCluster(b *testing.B) {
	cl := testserver.RedisCluster(b)
	client := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: cl.Addrs})
	b.Cleanup(func() { client.Close() })
	b.Run("Store", func(b *testing.B) {
		conformance.RunBenchmarks(b, conformance.Harness{
			New: func(b testing.TB) backend.Backend {
				testserver.FlushRedis(b, cl.Addrs...)
				s, err := redisstore.New(context.Background(), client, nil)
				if err != nil {
					b.Fatal(err)
				}
				return s
			},
		})
	})
	b.Run("BareIncr", func(b *testing.B) {
		testserver.FlushRedis(b, cl.Addrs...)
		ctx := context.Background()
		keys := make([]string, conformance.BenchKeys)
		pipe := client.Pipeline()
		for i := range keys {
			keys[i] = fmt.Sprintf("bench/%06d", i)
			pipe.Set(ctx, keys[i], 1, 0)
			if pipe.Len() == 1000 || i == len(keys)-1 {
				if _, err := pipe.Exec(ctx); err != nil {
					b.Fatal(err)
				}
			}
		}
		var gid atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(gid.Add(1)*7919) % conformance.BenchKeys
			for pb.Next() {
				if err := client.Incr(ctx, keys[i]).Err(); err != nil {
					b.Error(err)
					return
				}
				i = (i + 104729) % conformance.BenchKeys
			}
		})
	})
}
