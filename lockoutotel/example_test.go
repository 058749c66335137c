package lockoutotel_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend/memory"
	"github.com/go-lockout/lockout/lockoutotel"
)

// Example wires a policy's metrics to Prometheus through the
// OpenTelemetry exporter, locks a username out, and scrapes the lockout's
// counters.
func Example() {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	// The observer reports its metrics itself, as a Producer of the
	// exporter (the cheapest way); the exporter, like any reader, needs a
	// MeterProvider.
	obs, err := lockoutotel.New(&lockoutotel.Options{Producer: true})
	if err != nil {
		log.Fatal(err)
	}
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithProducer(obs))
	if err != nil {
		log.Fatal(err)
	}
	sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	store, err := memory.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	policy, err := lockout.New(store, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(3)}, Observer: obs,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer policy.Close()

	alice := lockout.Subject{Username: "alice", IP: "192.0.2.1"}
	for range 3 { // three wrong passwords lock alice out
		if _, err := policy.Check(ctx, alice, func(context.Context) (bool, error) { return false, nil }); err != nil {
			log.Fatal(err)
		}
	}
	_, err = policy.Allow(ctx, alice)
	fmt.Println("locked:", errors.Is(err, lockout.ErrLocked))

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		if line := sc.Text(); strings.HasPrefix(line, "lockout_lockouts_total") || strings.HasPrefix(line, "lockout_decisions_total") {
			fmt.Println(line)
		}
	}
	// Output:
	// locked: true
	// lockout_decisions_total{lockout_fallback="false",lockout_outcome="admitted"} 3
	// lockout_decisions_total{lockout_fallback="false",lockout_outcome="failure"} 3
	// lockout_decisions_total{lockout_fallback="false",lockout_outcome="refused",lockout_reason="locked",lockout_rule="username"} 1
	// lockout_lockouts_total{lockout_fallback="false",lockout_rule="username"} 1
}
