// Command metricsserver is a login server guarded by lockout that exposes
// the policy's OpenTelemetry metrics to Prometheus, at /metrics.
//
//	go run ./examples/metricsserver           (in the lockoutotel module)
//	curl -d username=alice -d password=nope http://127.0.0.1:8080/login
//	curl http://127.0.0.1:8080/metrics
//
// POST /login takes a form (username, password); the demo user is
// alice/wonderland. Three wrong passwords lock a username out for a
// minute. The metrics are lockoutotel's (lockout_decisions_total,
// lockout_lockouts_total, lockout_degraded, lockout_decision_duration_seconds,
// ...), exported through the OpenTelemetry Prometheus exporter, beside the
// Go runtime's.
package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend/memory"
	"github.com/go-lockout/lockout/lockouthttp"
	"github.com/go-lockout/lockout/lockoutotel"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "`address` to listen on")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr); err != nil {
		fmt.Fprintln(os.Stderr, "metricsserver:", err)
		os.Exit(1)
	}
}

// run serves on addr until ctx is done.
func run(ctx context.Context, addr string) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv, err := newServer(logger)
	if err != nil {
		return err
	}
	defer srv.Close()
	hs := &http.Server{Addr: addr, Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(shutdown)
	}()
	logger.Info("serving", "login", "http://"+addr+"/login", "metrics", "http://"+addr+"/metrics")
	if err := hs.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// server is the login server: its handler, and what Close releases.
type server struct {
	http.Handler
	policy *lockout.Policy
	store  *memory.Store
}

// newServer wires the policy, its metrics and the handlers.
func newServer(logger *slog.Logger) (*server, error) {
	// 1. The observer, a Producer of its own metrics, and a Prometheus
	// registry fed by the OpenTelemetry exporter, which reads the
	// observer's metrics (and those of the meter provider it belongs to:
	// an exporter, like any reader, needs one).
	obs, err := lockoutotel.New(&lockoutotel.Options{Producer: true})
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithProducer(obs))
	if err != nil {
		return nil, err
	}
	sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))

	// 2. The policy, with the observer.
	store, err := memory.New(nil)
	if err != nil {
		return nil, err
	}
	rules := []lockout.Rule{lockout.ByUsername(3), lockout.ByIP(20)}
	for i := range rules {
		rules[i].Schedule = lockout.Fixed(time.Minute)
	}
	policy, err := lockout.New(store, lockout.Config{Rules: rules, Observer: obs, Logger: logger})
	if err != nil {
		store.Close()
		return nil, err
	}

	// 3. The login endpoint behind lockouthttp's middleware, and /metrics.
	guard := lockouthttp.NewMiddleware(policy, lockouthttp.Config{Username: lockouthttp.FormField("username")})
	mux := http.NewServeMux()
	mux.Handle("POST /login", guard.Wrap(http.HandlerFunc(login)))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return &server{Handler: mux, policy: policy, store: store}, nil
}

// Close closes the policy and its store.
func (s *server) Close() error {
	return errors.Join(s.policy.Close(), s.store.Close())
}

// login checks the demo user's password; the middleware reads the outcome
// from the status (2xx: a success).
func login(w http.ResponseWriter, r *http.Request) {
	subject, _ := lockouthttp.SubjectFromContext(r.Context())
	ok := subject.Username == "alice"
	ok = subtle.ConstantTimeCompare([]byte(r.PostFormValue("password")), []byte("wonderland")) == 1 && ok
	if !ok {
		http.Error(w, "wrong username or password", http.StatusUnauthorized)
		return
	}
	fmt.Fprintln(w, "welcome,", subject.Username)
}
