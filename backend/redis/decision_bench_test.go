package redis_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	redisstore "github.com/go-lockout/lockout/backend/redis"
	"github.com/go-lockout/lockout/internal/abbench"
	"github.com/go-lockout/lockout/internal/testserver"
)

// benchSubjects is how many subjects (and, for BenchmarkBareIncr, keys) the
// decision benchmarks spread their load over.
const benchSubjects = 100_000

// BenchmarkDecision measures admitted lockout decisions with three rules
// (username, IP, username+IP): lockout.Policy.Allow then Failure, over this
// store, in parallel over 100,000 subjects. Every limit is out of reach, so
// every decision is admitted; the store holds every subject's counters before
// the timer starts (the steady state), and Failure costs no backend call, so
// a decision is one store call: three Incr and three Exists.
//
// The client has ContextTimeoutEnabled, as the package documentation
// recommends: the policy's calls carry a deadline and run on the caller's
// goroutine. Compare with BenchmarkBareIncr, run in the same invocation
// (go test -bench 'Decision|BareIncr'). Sub-benchmarks: "redis" on one
// server, "cluster" on the 3-master Redis Cluster.
func BenchmarkDecision(b *testing.B) {
	subjects := make([]lockout.Subject, benchSubjects)
	for i := range subjects {
		subjects[i] = lockout.Subject{
			Username: fmt.Sprintf("user%06d", i),
			IP:       fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
		}
	}
	rules := []lockout.Rule{
		lockout.ByUsername(math.MaxInt32), lockout.ByIP(math.MaxInt32), lockout.ByUsernameAndIP(math.MaxInt32),
	}
	for i := range rules {
		rules[i].Window = time.Hour
		rules[i].Schedule = lockout.Fixed(time.Hour)
	}
	ctx := context.Background()
	decide := func(p *lockout.Policy, s lockout.Subject) error {
		a, err := p.Allow(ctx, s)
		if err != nil {
			return err
		}
		if a.Err() != nil {
			return a.Err() // admitted despite a store error: not what is measured
		}
		return a.Failure(ctx)
	}
	// on returns decide on p for a subject's index.
	on := func(p *lockout.Policy) func(i int) error {
		return func(i int) error { return decide(p, subjects[i]) }
	}
	run := func(b *testing.B, client goredis.UniversalClient, servers []string) {
		store, err := redisstore.New(ctx, client, nil)
		if err != nil {
			b.Fatal(err)
		}
		p, err := lockout.New(store, lockout.Config{Rules: rules, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		// The steady state: every subject's counters exist.
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < benchSubjects; i = next.Add(1) - 1 {
					if err := decide(p, subjects[i]); err != nil {
						b.Errorf("filling: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		if b.Failed() {
			return
		}
		b.Run("AllowFailure", func(b *testing.B) {
			runParallelCPU(b, servers, scriptCommands, on(p))
		})
		// The same decisions with the attempt journal on: a record per
		// failure, appended to a stream by the journal's goroutine in
		// batches. The queue is large enough that nothing is dropped
		// (drops would make the run cheaper).
		jp, err := lockout.New(store, lockout.Config{Rules: rules, Logger: slog.New(slog.DiscardHandler),
			Journal: &lockout.JournalConfig{Queue: 1 << 18}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { jp.Close() })
		b.Run("AllowFailureJournal", func(b *testing.B) {
			runParallelCPU(b, servers, scriptCommands, on(jp))
			b.StartTimer() // the journal's work still queued is part of the cost
			if err := jp.SyncJournal(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if st := jp.JournalStats(); st.Dropped > 0 {
				b.Errorf("journal dropped records: %+v", st)
			}
		})
		// The two policies again, in pairs of blocks of 5,000 decisions
		// on 8 goroutines per core, in alternating order (abbench): the
		// journal's cost as the median of the pairs', on a machine whose
		// load changes. The journal's block includes writing what it
		// queued. Run it with -benchtime=20x (20 pairs).
		b.Run("JournalCost", func(b *testing.B) {
			block := pairBlocks(8 * runtime.GOMAXPROCS(0))
			abbench.Pairs(b, 5_000, block(on(p), nil), block(on(jp), func() error { return jp.SyncJournal(ctx) }))
			if st := jp.JournalStats(); st.Dropped > 0 {
				b.Errorf("journal dropped records: %+v", st)
			}
		})
		// Decisions against their baseline, a bare INCR of one of
		// 100,000 existing keys, in pairs of blocks of 5,000 calls in
		// alternating order (abbench): ratio is the decisions'
		// throughput over the INCRs', the median of the pairs'. With 2
		// goroutines per core, the round trips bound both; with 8, the
		// machine's cores do (client and server share them here). Run
		// it with -benchtime=20x (20 pairs).
		keys := bareKeys(b, client)
		incr := func(i int) error { return client.Incr(ctx, keys[i]).Err() }
		for _, perCore := range []int{2, 8} {
			b.Run(fmt.Sprintf("VsBareIncr/goroutines=%dxGOMAXPROCS", perCore), func(b *testing.B) {
				block := pairBlocks(perCore * runtime.GOMAXPROCS(0))
				abbench.Pairs(b, 5_000, block(incr, nil), block(on(p), nil))
			})
		}
		// The floors of a decision on this machine, against the same
		// baseline in the same way (8 goroutines per core): "store", the
		// store alone serving a decision's six operations (its script,
		// without the engine); "pipeline", the plain commands an exact
		// decision would need without a script, in one round trip: per
		// rule key INCRBY, EXPIRE NX (a TTL only for a new counter), PTTL
		// and EXISTS of its lock marker. Neither is atomic per hash tag, as
		// the store's script is; they say how far the bar is from what
		// the server and the shared cores allow.
		fc, fl := floorKeys(b, client)
		b.Run("FloorVsBareIncr/store", func(b *testing.B) {
			block := pairBlocks(8 * runtime.GOMAXPROCS(0))
			batch := func(i int) error {
				var ops [6]backend.Op
				var res [6]backend.Result
				for j := range 3 { // in the engine's order: the reads last
					ops[j] = backend.IncrOp(fc[i][j], 1, time.Hour)
					ops[3+j] = backend.ExistsOp(fl[i][j])
				}
				return store.Do(ctx, ops[:], res[:])
			}
			abbench.Pairs(b, 5_000, block(incr, nil), block(batch, nil))
		})
		b.Run("FloorVsBareIncr/pipeline", func(b *testing.B) {
			block := pairBlocks(8 * runtime.GOMAXPROCS(0))
			pipeline := func(i int) error {
				_, err := client.Pipelined(ctx, func(pipe goredis.Pipeliner) error {
					for j := range 3 {
						pipe.IncrBy(ctx, fc[i][j], 1)
						pipe.ExpireNX(ctx, fc[i][j], time.Hour)
						pipe.PTTL(ctx, fc[i][j])
						pipe.Exists(ctx, fl[i][j])
					}
					return nil
				})
				return err
			}
			abbench.Pairs(b, 5_000, block(incr, nil), block(pipeline, nil))
		})
	}
	b.Run("redis", func(b *testing.B) {
		srv := testserver.Redis(b)
		client := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
		b.Cleanup(func() { client.Close() })
		run(b, client, []string{srv.Addr})
	})
	b.Run("cluster", func(b *testing.B) {
		cl := testserver.RedisCluster(b)
		client := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: cl.Addrs, ContextTimeoutEnabled: true})
		b.Cleanup(func() { client.Close() })
		run(b, client, cl.Addrs)
	})
}

// bareKeys returns the keys of BenchmarkBareIncr, 100,000 of them, each
// set on client's servers with an hour to live.
func bareKeys(b *testing.B, client goredis.UniversalClient) []string {
	ctx := context.Background()
	keys := make([]string, benchSubjects)
	pipe := client.Pipeline()
	for i := range keys {
		keys[i] = fmt.Sprintf("bench/%06d", i)
		pipe.Set(ctx, keys[i], 1, time.Hour)
		if pipe.Len() == 1000 || i == len(keys)-1 {
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	return keys
}

// floorKeys returns the keys of the floor benchmarks: for each of 100,000
// subjects, three counters (one hash tag each, as a decision's rule keys),
// set on client's servers with an hour to live, and their lock markers,
// which do not exist.
func floorKeys(b *testing.B, client goredis.UniversalClient) (counters, markers [][3]string) {
	ctx := context.Background()
	counters, markers = make([][3]string, benchSubjects), make([][3]string, benchSubjects)
	pipe := client.Pipeline()
	for i := range counters {
		for j := range 3 {
			counters[i][j] = fmt.Sprintf("floor:a:rule%d:{u=user%06d}", j, i)
			markers[i][j] = fmt.Sprintf("floor:l:rule%d:{u=user%06d}", j, i)
			pipe.Set(ctx, counters[i][j], 1, time.Hour)
		}
		if pipe.Len() >= 1000 || i == len(counters)-1 {
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	return counters, markers
}

// pairBlocks returns a maker of abbench blocks on workers goroutines: a
// block calls f on ops subject (key) indexes spread with a prime stride,
// going on where the maker's last block ended, then after, when set,
// whose time counts in the block's (a writer catching up).
func pairBlocks(workers int) func(f func(i int) error, after func() error) func(ops int) (time.Duration, error) {
	next := 0
	return func(f func(i int) error, after func() error) func(ops int) (time.Duration, error) {
		return func(ops int) (time.Duration, error) {
			start := next
			next += ops
			d, err := abbench.BlockN(ops, workers, func(i int) error { return f((start + i) * 7919 % benchSubjects) })
			if err == nil && after != nil {
				t0 := time.Now()
				err = after()
				d += time.Since(t0)
			}
			return d, err
		}
	}
}

// runParallelCPU runs f in parallel over subject (key) indexes spread with a
// prime stride, and reports the CPU time one operation costs this process
// (client-µs/op, user+system) and the servers at addrs (server-µs/op, from
// INFO cpu, summed): on a shared machine, wall time is noisy, CPU time much
// less so. It also reports the time the servers spent running the commands
// named in cmds (cmd-µs/op, from INFO commandstats: the time inside the
// commands, without reading requests and writing replies).
func runParallelCPU(b *testing.B, addrs []string, cmds []string, f func(i int) error) {
	var admins []*goredis.Client
	for _, a := range addrs {
		c := goredis.NewClient(&goredis.Options{Addr: a})
		b.Cleanup(func() { c.Close() })
		admins = append(admins, c)
	}
	servers := func() (d time.Duration) {
		for _, c := range admins {
			d += serverCPU(b, c)
		}
		return d
	}
	inCommands := func() (usec float64) {
		for _, c := range admins {
			usec += commandUsec(b, c, cmds)
		}
		return usec
	}
	var gid atomic.Int64
	b.ReportAllocs()
	server0, usec0 := servers(), inCommands()
	b.ResetTimer()
	client0 := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		i := int(gid.Add(1)*7919) % benchSubjects
		for pb.Next() {
			if err := f(i); err != nil {
				b.Error(err)
				return
			}
			i = (i + 104729) % benchSubjects
		}
	})
	b.StopTimer()
	clientCPU, serverCPU, usec := processCPU()-client0, servers()-server0, inCommands()-usec0
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(b.N) }
	b.ReportMetric(us(clientCPU), "client-µs/op")
	b.ReportMetric(us(serverCPU), "server-µs/op")
	b.ReportMetric(usec/float64(b.N), "cmd-µs/op")
}

// commandUsec returns the microseconds the server of c has spent running
// the commands named in cmds (INFO commandstats).
func commandUsec(b *testing.B, c *goredis.Client, cmds []string) float64 {
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !slices.Contains(cmds, strings.TrimPrefix(name, "cmdstat_")) {
			continue
		}
		for field := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(field, "usec="); ok {
				usec, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatalf("INFO commandstats: %q", line)
				}
				total += usec
			}
		}
	}
	return total
}

// BenchmarkBareIncr is the baseline of BenchmarkDecision: a bare go-redis
// INCR of one of 100,000 existing keys per operation, in parallel, with a
// client configured as BenchmarkDecision's, on one server ("redis") and on
// the 3-master Cluster ("cluster").
func BenchmarkBareIncr(b *testing.B) {
	ctx := context.Background()
	run := func(b *testing.B, client goredis.UniversalClient, servers []string) {
		keys := bareKeys(b, client)
		b.Run("Incr", func(b *testing.B) {
			runParallelCPU(b, servers, []string{"incr"}, func(i int) error { return client.Incr(ctx, keys[i]).Err() })
		})
	}
	b.Run("redis", func(b *testing.B) {
		srv := testserver.Redis(b)
		client := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
		b.Cleanup(func() { client.Close() })
		run(b, client, []string{srv.Addr})
	})
	b.Run("cluster", func(b *testing.B) {
		cl := testserver.RedisCluster(b)
		client := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: cl.Addrs, ContextTimeoutEnabled: true})
		b.Cleanup(func() { client.Close() })
		run(b, client, cl.Addrs)
	})
}
