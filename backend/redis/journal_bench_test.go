package redis_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
	redisstore "github.com/go-lockout/lockout/backend/redis"
	"github.com/go-lockout/lockout/internal/testserver"
)

// benchRecord is a typical attempt record: a failure with a username, an
// IP and a browser's user agent.
func benchRecord(i int) backend.Record {
	return backend.Record{
		Time:      time.Now(),
		Outcome:   "failure",
		Username:  fmt.Sprintf("user%d@example.com", i%1000),
		IP:        fmt.Sprintf("203.0.%d.%d", i/256%256, i%256),
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
	}
}

// BenchmarkJournalAppend appends batches of 64 records (what the engine's
// queue hands a store at once) to one journal on a standalone server; it
// reports the time and allocations per batch, and the server's memory per
// record kept (MEMORY USAGE of the stream over its length).
func BenchmarkJournalAppend(b *testing.B) {
	srv := testserver.Redis(b)
	client := newClient(b, srv.Addr, nil)
	testserver.FlushRedis(b, srv.Addr)
	s := newStore(b, client, nil)
	batch := make([]backend.Record, 64)
	for i := range batch {
		batch[i] = benchRecord(i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Append(ctx, "bench", batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/record")
	n, err := client.XLen(ctx, "{bench}:journal").Result()
	if err != nil {
		b.Fatal(err)
	}
	mem, err := client.MemoryUsage(ctx, "{bench}:journal", 0).Result()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(mem)/float64(n), "server-B/record")
	_ = redisstore.DefaultJournalMax
}
