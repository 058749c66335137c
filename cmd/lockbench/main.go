// Command lockbench is the load test of a login endpoint with and without
// lockout: what the protection costs a login, per backend and workload, and
// how many password guesses an attacker gets.
//
// It starts, in one process, a sample login endpoint on loopback (net/http;
// the password check is PBKDF2-HMAC-SHA256 tuned to -cost, 1 ms by default),
// the servers the backends need (redis-server, a three-master Redis Cluster
// and memcached on free loopback ports, started as the tests start them),
// and many concurrent HTTP clients. Each cell of the table runs one
// configuration under one workload for -duration, in -rounds rounds. In
// every round each configuration runs right next to a run of the baseline
// (A B, then B A in the next round), and the configurations' order rotates,
// so that a change in the machine's load falls on both runs of a pair and on
// all configurations alike.
//
// Configurations, side by side in the same run:
//
//	baseline          no protection
//	memory, bolt, redis, cluster, memcached
//	                  the lockouthttp middleware with three rules (username,
//	                  IP, username+IP; limit 5, the library's defaults
//	                  otherwise) on that store
//	check-then-count  django-defender's order with plain go-redis commands on
//	                  the same Redis: GET the block keys, verify, then INCR and
//	                  EXPIRE the failure counters and SET a block key at the limit
//
// Workloads:
//
//	success   every login succeeds (1,000 accounts)
//	mixed     90% successes, 10% failures over 1,000,000 usernames
//	failures  every login fails, over 1,000,000 usernames
//	attack    256 concurrent guessers, each from its own address and with its
//	          connection open, on one username with limit 5, for
//	          -attack-duration
//
// Every request comes from a random address in 10.0.0.0/8, sent in
// X-Forwarded-For (which the endpoint trusts from loopback), so that no
// address nears the limit outside the attack.
//
// Per cell it reports throughput, p50 and p99 latency, the overhead versus
// the baseline (baseline throughput / throughput), the CPU time per login of
// this process and the servers together and its ratio to the baseline's
// (steadier than throughput on a busy machine), each overhead as the median
// of its pairs' ratios with their interquartile range, or "too short" or
// "too noisy" where the rule in stats.go forbids quoting it (fewer than 5
// pairs, runs under 1 s, or an interquartile range above 10% of the
// median), the backend round trips per
// login (store calls, counted by wrapping the store with counting.Wrap;
// for check-then-count, its commands and pipelines), the Redis commands per
// login (sent, counted by a go-redis hook; and run, from INFO commandstats,
// which includes the commands Lua scripts run), and in the attack the
// password verifications admitted on the attacked account. The table is
// printed, and written into -out as results.csv (with every pair's ratio),
// results.md and overhead.svg (hand-written SVG: the overheads with their
// spread, why one can be below 1.00x, and the attack's admitted guesses
// against the limit). Progress goes to stderr.
//
// Usage:
//
//	go run ./cmd/lockbench [-duration 12s] [-rounds 8] [-short] [-clients 64]
//	    [-cost 1ms] [-backends memory,bolt,redis,cluster,memcached,check-then-count]
//	    [-workloads success,mixed,failures,attack] [-out ./lockbench-out]
//
// -short is the quick mode for CI: 1 s cells in one round, 1 s attack; one
// pair is too short to quote, and the outputs say so. The full run takes
// about ten minutes on two CPUs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-lockout/lockout/internal/testserver"
)

// options are the command's settings.
type options struct {
	duration       time.Duration // per cell, over all its rounds
	rounds         int           // the rounds a cell's duration is split into
	warmup         time.Duration // unmeasured run before each cell but the attack's
	attackDuration time.Duration
	clients        int
	guessers       int
	cost           time.Duration
	iterations     int // 0: tune to cost
	accounts       int
	systems        []string // without the baseline, which always runs
	workloads      []string
	out            string
	args           []string // as given, for the report
}

func main() {
	if err := mainErr(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "lockbench:", err)
		os.Exit(1)
	}
}

// mainErr is main, returning its error: it parses args, starts the servers
// the backends need, runs the benchmark and writes the outputs.
func mainErr(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	sa := testserver.NewStandalone("lockbench", stderr)
	defer sa.Close()
	var srv servers
	fmt.Fprintln(stderr, "lockbench: starting servers")
	if err := sa.Run(func(tb testserver.TB) { srv = startServers(tb, o.systems) }); err != nil {
		return err
	}
	_, err = run(ctx, o, srv, stdout, stderr)
	return err
}

// parseFlags parses args into options.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("lockbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o         options
		short     bool
		backends  string
		workloads string
	)
	fs.DurationVar(&o.duration, "duration", 12*time.Second, "measured `time` per configuration and workload, over all rounds (the baseline runs as long again for each)")
	fs.IntVar(&o.rounds, "rounds", 8, "rounds `n`: pairs of runs (baseline, configuration) each overhead is the median of")
	fs.DurationVar(&o.warmup, "warmup", 300*time.Millisecond, "unmeasured `time` before each round of a cell (not the attack's)")
	fs.DurationVar(&o.attackDuration, "attack-duration", 2*time.Second, "`time` the attack runs (shorter than the first lockout, 1 min)")
	fs.BoolVar(&short, "short", false, "a quick run for CI: 1s cells in 1 round, 100ms warm-up, 1s attack (explicit flags win)")
	fs.IntVar(&o.clients, "clients", 64, "concurrent HTTP clients `n` (the attack always has -guessers)")
	fs.IntVar(&o.guessers, "guessers", 256, "concurrent guessers `n` in the attack")
	fs.DurationVar(&o.cost, "cost", time.Millisecond, "`time` one password check takes (PBKDF2 iterations are tuned to it)")
	fs.IntVar(&o.iterations, "iterations", 0, "PBKDF2 iterations `n`, instead of tuning them to -cost")
	fs.IntVar(&o.accounts, "accounts", 1000, "accounts `n` that log in successfully")
	fs.StringVar(&backends, "backends", strings.Join(allSystems, ","), "comma-separated `list` of configurations besides the baseline")
	fs.StringVar(&workloads, "workloads", strings.Join(allWorkloads, ","), "comma-separated `list` of workloads")
	fs.StringVar(&o.out, "out", "lockbench-out", "`directory` for results.csv, results.md and overhead.svg")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if short {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["duration"] {
			o.duration = time.Second
		}
		if !set["rounds"] {
			o.rounds = 1
		}
		if !set["warmup"] {
			o.warmup = 100 * time.Millisecond
		}
		if !set["attack-duration"] {
			o.attackDuration = time.Second
		}
	}
	o.args = args
	var err error
	if o.systems, err = parseList(backends, allSystems, "backend"); err != nil {
		return o, err
	}
	if o.workloads, err = parseList(workloads, allWorkloads, "workload"); err != nil {
		return o, err
	}
	switch {
	case o.duration <= 0 || o.attackDuration <= 0 || o.warmup < 0:
		return o, errors.New("-duration and -attack-duration must be positive, -warmup not negative")
	case o.attackDuration >= 50*time.Second:
		return o, errors.New("-attack-duration must stay well under the first lockout (1 min)")
	case o.clients < 1 || o.guessers < 1 || o.accounts < 1 || o.rounds < 1:
		return o, errors.New("-clients, -guessers, -accounts and -rounds must be at least 1")
	case o.cost <= 0 || o.iterations < 0:
		return o, errors.New("-cost must be positive and -iterations not negative")
	}
	return o, nil
}

// parseList parses a comma-separated list of names from valid, keeping
// valid's order.
func parseList(s string, valid []string, what string) ([]string, error) {
	want := map[string]bool{}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if f == sysBaseline && what == "backend" {
			continue // always run
		}
		if !slices.Contains(valid, f) {
			return nil, fmt.Errorf("unknown %s %q (want some of %s)", what, f, strings.Join(valid, ","))
		}
		want[f] = true
	}
	var out []string
	for _, v := range valid {
		if want[v] {
			out = append(out, v)
		}
	}
	if len(out) == 0 && what == "workload" {
		return nil, errors.New("no workload")
	}
	return out, nil
}

// startServers starts the servers the systems need, on tb (a test, or a
// testserver.Standalone).
func startServers(tb testserver.TB, systems []string) servers {
	tb.Helper()
	srv := servers{TempDir: tb.TempDir()}
	for _, s := range systems {
		switch s {
		case sysRedis, sysCheckCount:
			if srv.Redis == "" {
				srv.Redis = testserver.Redis(tb).Addr
			}
		case sysCluster:
			srv.Cluster = testserver.RedisCluster(tb).Addrs
		case sysMemcached:
			// Room for every cell's keys (they are not flushed between
			// cells), and no eviction, as the store's documentation asks.
			srv.Memcached = testserver.Memcached(tb, "-m", "1024", "-M").Addr
		}
	}
	return srv
}
