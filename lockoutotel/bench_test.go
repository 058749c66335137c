package lockoutotel_test

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/memory"
	redisstore "github.com/go-lockout/lockout/backend/redis"
	"github.com/go-lockout/lockout/internal/abbench"
	"github.com/go-lockout/lockout/internal/testserver"
	"github.com/go-lockout/lockout/lockoutotel"
)

const benchSubjects = 100_000

// benchSubjectsAndRules returns the benchmarks' subjects and their three
// rules (username, IP, username+IP), whose limit is out of reach.
func benchSubjectsAndRules() ([]lockout.Subject, []lockout.Rule) {
	subjects := make([]lockout.Subject, benchSubjects)
	for i := range subjects {
		subjects[i] = lockout.Subject{
			Username: fmt.Sprintf("user%06d", i),
			IP:       fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
		}
	}
	rules := []lockout.Rule{lockout.ByUsername(math.MaxInt32), lockout.ByIP(math.MaxInt32), lockout.ByUsernameAndIP(math.MaxInt32)}
	for i := range rules {
		rules[i].Window = time.Hour
		rules[i].Schedule = lockout.Fixed(time.Hour)
	}
	return subjects, rules
}

// BenchmarkObserver measures whole decisions (Allow then Failure, three
// rules: username, IP, username+IP, every limit out of reach) in
// parallel over 100,000 subjects whose counters the store already holds,
// on the memory store and on Redis, with each observer in the same run:
//
//   - observer=plain: none, the baseline;
//   - observer=nop: a DecisionObserver that does nothing: what the policy
//     itself spends on events and clocks for an observer;
//   - observer=metrics: an Observer in Producer mode (its metrics given to
//     a manual reader, as to a Prometheus exporter: collection happens at
//     scrape time), tracing off (a noop TracerProvider): what the README
//     recommends;
//   - observer=instruments: an Observer with an SDK MeterProvider's
//     instruments instead (the OpenTelemetry SDK's synchronous
//     histograms), tracing off;
//   - observer=traced: the same, with an SDK TracerProvider that samples
//     every decision (spans recorded, then dropped: no exporter).
//
// Besides the wall time per decision it reports cpu-ns/op, the process's
// CPU time per decision, which varies less on a busy machine. Compare
// with benchstat -col /observer. On Redis the client runs 8
// decisions per core at once, so that the cores, not the round trips,
// bound the throughput and an observer's cost shows.
func BenchmarkObserver(b *testing.B) {
	subjects, rules := benchSubjectsAndRules()
	ctx := context.Background()
	decide := func(p *lockout.Policy, s lockout.Subject) error {
		a, err := p.Allow(ctx, s)
		if err != nil {
			return err
		}
		if a.Err() != nil {
			return a.Err()
		}
		return a.Failure(ctx)
	}
	observers := []struct {
		name string
		new  func(b *testing.B) lockout.Observer
	}{
		{"plain", func(*testing.B) lockout.Observer { return nil }},
		{"nop", func(*testing.B) lockout.Observer { return nopObserver{} }},
		{"metrics", func(b *testing.B) lockout.Observer {
			return newBenchObserver(b, true, noop.NewTracerProvider())
		}},
		{"instruments", func(b *testing.B) lockout.Observer {
			return newBenchObserver(b, false, noop.NewTracerProvider())
		}},
		{"traced", func(b *testing.B) lockout.Observer {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
			b.Cleanup(func() { tp.Shutdown(context.Background()) })
			return newBenchObserver(b, true, tp)
		}},
	}
	run := func(b *testing.B, store backend.Backend, parallelism int) {
		// The steady state: every subject's counters exist.
		fill, err := lockout.New(store, lockout.Config{Rules: rules, Logger: discard})
		if err != nil {
			b.Fatal(err)
		}
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < benchSubjects; i = next.Add(1) - 1 {
					if err := decide(fill, subjects[i]); err != nil {
						b.Errorf("filling: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		fill.Close()
		if b.Failed() {
			return
		}
		for _, o := range observers {
			b.Run("observer="+o.name, func(b *testing.B) {
				p, err := lockout.New(store, lockout.Config{Rules: rules, Logger: discard, Observer: o.new(b)})
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				var gid atomic.Int64
				b.SetParallelism(parallelism)
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := processCPU()
				b.RunParallel(func(pb *testing.PB) {
					i := int(gid.Add(1)*7919) % benchSubjects
					for pb.Next() {
						if err := decide(p, subjects[i]); err != nil {
							b.Error(err)
							return
						}
						i = (i + 104729) % benchSubjects
					}
				})
				b.StopTimer()
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
	benchStores(b, func(b *testing.B, store backend.Backend, redis bool) {
		if redis {
			run(b, store, 8)
		} else {
			run(b, store, 1)
		}
	})
}

// benchStores runs f as the sub-benchmarks store=memory and store=redis
// (a server of its own), with their store.
func benchStores(b *testing.B, f func(b *testing.B, store backend.Backend, redis bool)) {
	b.Run("store=memory", func(b *testing.B) {
		store, err := memory.New(nil)
		if err != nil {
			b.Fatal(err)
		}
		defer store.Close()
		f(b, store, false)
	})
	b.Run("store=redis", func(b *testing.B) {
		srv := testserver.Redis(b)
		client := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
		defer client.Close()
		store, err := redisstore.New(context.Background(), client, nil)
		if err != nil {
			b.Fatal(err)
		}
		f(b, store, true)
	})
}

// newBenchObserver returns an Observer with tp, whose metrics go to a
// manual reader: as a Producer, or through an SDK MeterProvider's
// instruments.
func newBenchObserver(b *testing.B, producer bool, tp trace.TracerProvider) lockout.Observer {
	if producer {
		obs, err := lockoutotel.New(&lockoutotel.Options{Producer: true, TracerProvider: tp})
		if err != nil {
			b.Fatal(err)
		}
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader(sdkmetric.WithProducer(obs))))
		b.Cleanup(func() { mp.Shutdown(context.Background()) })
		return obs
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { mp.Shutdown(context.Background()) })
	obs, err := lockoutotel.New(&lockoutotel.Options{MeterProvider: mp, TracerProvider: tp})
	if err != nil {
		b.Fatal(err)
	}
	return obs
}

// processCPU returns the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkObserverCost measures what an observer costs a decision (Allow
// then Failure, as in BenchmarkObserver), in pairs of blocks, a plain
// policy's then the observed one's (the other way round in every other
// pair), on the same store, each block after a garbage collection: a busy
// machine's load hits both sides of a pair alike. On the memory store a
// block is 50,000 decisions over GOMAXPROCS goroutines; on Redis 5,000
// over 8 goroutines per core. cost-% is the median of the pairs' cost;
// base-ns/op and variant-ns/op the medians of each side's wall time per
// decision (the observer's cost per decision is their difference).
func BenchmarkObserverCost(b *testing.B) {
	subjects, rules := benchSubjectsAndRules()
	ctx := context.Background()
	run := func(b *testing.B, store backend.Backend, ops, workers int) {
		policy := func(b *testing.B, o lockout.Observer) *lockout.Policy {
			p, err := lockout.New(store, lockout.Config{Rules: rules, Logger: discard, Observer: o})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.Close() })
			return p
		}
		next := 0
		block := func(p *lockout.Policy) func(ops int) (time.Duration, error) {
			return func(ops int) (time.Duration, error) {
				// A collection of the store's heap takes longer than many
				// decisions: start each block after one, so that none lands
				// in one side of a pair only.
				runtime.GC()
				start := next
				next += ops
				return abbench.BlockN(ops, workers, func(i int) error {
					a, err := p.Allow(ctx, subjects[(start+i)*7919%benchSubjects])
					if err != nil {
						return err
					}
					if a.Err() != nil {
						return a.Err()
					}
					return a.Failure(ctx)
				})
			}
		}
		plain := policy(b, nil)
		if _, err := block(plain)(benchSubjects); err != nil { // the steady state: every subject's counters exist
			b.Fatal(err)
		}
		for _, o := range []struct {
			name string
			new  func(b *testing.B) lockout.Observer
		}{
			{"nop", func(*testing.B) lockout.Observer { return nopObserver{} }},
			{"metrics", func(b *testing.B) lockout.Observer { return newBenchObserver(b, true, noop.NewTracerProvider()) }},
			{"instruments", func(b *testing.B) lockout.Observer { return newBenchObserver(b, false, noop.NewTracerProvider()) }},
		} {
			b.Run("observer="+o.name, func(b *testing.B) {
				abbench.Pairs(b, ops, block(plain), block(policy(b, o.new(b))))
			})
		}
	}
	benchStores(b, func(b *testing.B, store backend.Backend, redis bool) {
		if redis {
			// 8 decisions per core at once, as in BenchmarkObserver.
			run(b, store, 5_000, 8*runtime.GOMAXPROCS(0))
		} else {
			run(b, store, 50_000, runtime.GOMAXPROCS(0))
		}
	})
}
