package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// result is one row of the table: a system under a workload, merged from
// the runs of its rounds.
type result struct {
	System, Workload string
	s                *sample
	// Verified counts password verifications; Admitted those on the
	// victim's account (the attack's figure).
	Verified, Admitted int64
	// Calls is the backend round trips, RedisSent the commands the Redis
	// client sent, RedisRun the data commands the Redis servers ran
	// (scripts' commands included); -1 when they do not apply.
	Calls, RedisSent, RedisRun int64
	// RedisExchanges is the single commands and pipelines the Redis client
	// sent, each a round trip: more than Calls when a call takes two rounds
	// (a read after a write of another slot on a Cluster); -1 when it does
	// not apply.
	RedisExchanges int64
	// CPU is the CPU time this process and the servers used; -1 when it
	// cannot be measured.
	CPU time.Duration
	// Lockouts, Refusals and BackendErrors count the policy's hooks;
	// FirstBackendError is the first backend error's message.
	Lockouts, Refusals, BackendErrors int64
	FirstBackendError                 string
	// Overhead holds the pairs' ratios of the baseline's throughput to
	// this one's, CPUOverhead those of this one's CPU time per login to
	// the baseline's (see stats.go); empty for the baseline and the
	// attack. OverheadVerdict and CPUVerdict say why a ratio may not be
	// quoted, empty when it may.
	Overhead, CPUOverhead       ratioStats
	OverheadVerdict, CPUVerdict string
	// Shortest is the measured time of the shortest run of the row's
	// pairs (both sides).
	Shortest time.Duration
	// Runs is how many measured runs (rounds) the row merges; Spread is
	// the difference between their highest and lowest throughput, relative
	// to the merged throughput (0 for one run).
	Runs   int
	Spread float64
	tputs  []float64

	// round and partner place a run in its pair: partner is, for a
	// baseline run, the configuration it is paired with.
	round   int
	partner string
}

// Throughput returns logins per second.
func (r *result) Throughput() float64 {
	if r.s.elapsed <= 0 {
		return 0
	}
	return float64(r.s.logins()) / r.s.elapsed.Seconds()
}

// PerLogin returns n per login, or -1 when n is -1.
func (r *result) PerLogin(n int64) float64 {
	if n < 0 || r.s.logins() == 0 {
		return -1
	}
	return float64(n) / float64(r.s.logins())
}

// CPUPerLogin returns the CPU time per login, or -1.
func (r *result) CPUPerLogin() time.Duration {
	if r.CPU < 0 || r.s.logins() == 0 {
		return -1
	}
	return r.CPU / time.Duration(r.s.logins())
}

// merge adds the run o to r.
func (r *result) merge(o *result) {
	r.s.merge(o.s)
	r.Verified += o.Verified
	r.Admitted += o.Admitted
	add := func(a *int64, b int64) {
		if *a < 0 || b < 0 {
			*a = -1
		} else {
			*a += b
		}
	}
	add(&r.Calls, o.Calls)
	add(&r.RedisSent, o.RedisSent)
	add(&r.RedisRun, o.RedisRun)
	add(&r.RedisExchanges, o.RedisExchanges)
	if r.CPU < 0 || o.CPU < 0 {
		r.CPU = -1
	} else {
		r.CPU += o.CPU
	}
	r.Lockouts += o.Lockouts
	r.Refusals += o.Refusals
	r.BackendErrors += o.BackendErrors
	if r.FirstBackendError == "" {
		r.FirstBackendError = o.FirstBackendError
	}
	r.Runs += o.Runs
	r.tputs = append(r.tputs, o.tputs...)
}

// report is a whole run.
type report struct {
	Opts       options
	Iterations int
	Machine    machine
	LoadBefore string
	LoadAfter  string
	CPUOf      []string // the processes whose CPU time counts
	Started    time.Time
	Total      time.Duration
	Results    []*result
}

// machine describes where the run happened.
type machine struct {
	CPUs   int
	Model  string
	Memory string
	OS     string
	Go     string
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version(), Model: "unknown", Memory: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				f := strings.Fields(v)
				if len(f) == 0 {
					break
				}
				if kb, err := strconv.ParseFloat(f[0], 64); err == nil {
					m.Memory = fmt.Sprintf("%.0f GiB", kb/(1<<20))
				}
				break
			}
		}
	}
	return m
}

// loadAverage returns the 1, 5 and 15 minute load averages, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// cell is one planned run: a system under a workload, in one round; for a
// baseline run, partner is the configuration it is paired with.
type cell struct {
	system, workload string
	round            int
	partner          string
}

// plan lists the runs. Each workload but the attack is measured in
// o.rounds rounds. In each round every configuration runs for
// o.duration/o.rounds right next to a run of the baseline, its pair: the
// baseline first in even rounds, second in odd ones. The configurations'
// order rotates by one each round, so that a change in the machine's load
// during the workload falls on every configuration alike, and each pair's
// two runs see nearly the same machine. The attack runs once per system.
func plan(o options) []cell {
	var cells []cell
	for _, w := range o.workloads {
		if w == wlAttack {
			for _, s := range append([]string{sysBaseline}, o.systems...) {
				cells = append(cells, cell{s, w, 0, ""})
			}
			continue
		}
		for r := range o.rounds {
			if len(o.systems) == 0 {
				cells = append(cells, cell{sysBaseline, w, r, ""})
			}
			for i := range o.systems {
				s := o.systems[(i+r)%len(o.systems)]
				a, b := cell{sysBaseline, w, r, s}, cell{s, w, r, ""}
				if r%2 == 1 {
					a, b = b, a
				}
				cells = append(cells, a, b)
			}
		}
	}
	return cells
}

// runTime returns how long c runs, warm-up included.
func (o options) runTime(c cell) time.Duration {
	if c.workload == wlAttack {
		return o.attackDuration
	}
	return o.warmup + o.duration/time.Duration(o.rounds)
}

// swapHandler serves the handler of the current cell.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }

// run runs the benchmark against srv, prints the table to stdout and
// progress to stderr, and writes the output files.
func run(ctx context.Context, o options, srv servers, stdout, stderr io.Writer) (*report, error) {
	rep := &report{Opts: o, Machine: describeMachine(), LoadBefore: loadAverage(), Started: time.Now()}
	rep.Iterations = o.iterations
	if rep.Iterations == 0 {
		n, err := tuneIterations(o.cost)
		if err != nil {
			return nil, err
		}
		rep.Iterations = n
	}
	fmt.Fprintf(stderr, "lockbench: %d CPUs (%s), load %s; PBKDF2-HMAC-SHA256 with %d iterations; hashing %d accounts\n",
		rep.Machine.CPUs, rep.Machine.Model, rep.LoadBefore, rep.Iterations, o.accounts)
	app, err := newLoginApp(o.accounts, rep.Iterations)
	if err != nil {
		return nil, err
	}
	e, err := newEnv(ctx, srv, app, o.systems, max(o.clients, o.guessers))
	if err != nil {
		return nil, err
	}
	defer e.close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	sw := &swapHandler{}
	sw.set(app)
	mux := http.NewServeMux()
	mux.Handle("/login", sw)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	base := "http://" + ln.Addr().String()
	hc := newHTTPClient(max(o.clients, o.guessers) + 16)
	defer hc.CloseIdleConnections()

	cells := plan(o)
	var left time.Duration
	for _, c := range cells {
		left += o.runTime(c)
	}
	var raw []*result
	for i, c := range cells {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		round := ""
		if c.workload != wlAttack && o.rounds > 1 {
			round = fmt.Sprintf("%d/%d", c.round+1, o.rounds)
		}
		label := labels[c.system]
		if c.partner != "" {
			label = "baseline for " + shortLabel(c.partner)
		}
		fmt.Fprintf(stderr, "[%3d/%d] %-8s %-29s %-5s ", i+1, len(cells), c.workload, label, round)
		r, err := runCell(ctx, o, e, sw, hc, base, c, i)
		if err != nil {
			fmt.Fprintln(stderr)
			return nil, fmt.Errorf("%s / %s: %w", c.workload, c.system, err)
		}
		r.round, r.partner = c.round, c.partner
		left -= o.runTime(c)
		fmt.Fprintf(stderr, "%6.0f logins/s  p50 %-8s p99 %-8s", r.Throughput(), ms(r.s.percentile(50)), ms(r.s.percentile(99)))
		if d := r.CPUPerLogin(); d >= 0 {
			fmt.Fprintf(stderr, " CPU %-8s", us(d))
		}
		if c.workload == wlAttack {
			fmt.Fprintf(stderr, " admitted %d", r.Admitted)
		} else if b, x, ok := pairOf(r, raw); ok {
			fmt.Fprintf(stderr, " pair %.2fx", b.Throughput()/x.Throughput())
		}
		if r.s.errors > 0 {
			fmt.Fprintf(stderr, " ERRORS %d (first: %s)", r.s.errors, r.s.firstError)
		}
		if r.BackendErrors > 0 {
			fmt.Fprintf(stderr, " BACKEND ERRORS %d (first: %s)", r.BackendErrors, r.FirstBackendError)
		}
		fmt.Fprintf(stderr, "  [%s, ~%s left]\n", time.Since(rep.Started).Round(time.Second), left.Round(time.Second))
		raw = append(raw, r)
	}
	rep.Results = combine(raw)
	rep.CPUOf = append([]string{"lockbench"}, e.serverDesc...)
	rep.LoadAfter = loadAverage()
	rep.Total = time.Since(rep.Started)

	if err := writeTable(stdout, rep); err != nil {
		return nil, err
	}
	if err := writeFiles(o.out, rep); err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "lockbench: done in %s; load %s; wrote %s\n", rep.Total.Round(time.Second), rep.LoadAfter, o.out)
	return rep, nil
}

// runCell sets c's system up afresh, warms it up, and measures it.
func runCell(ctx context.Context, o options, e *env, sw *swapHandler, hc *http.Client, base string, c cell, idx int) (*result, error) {
	target := base + "/login"
	inst, err := e.open(c.system, strconv.Itoa(idx))
	if err != nil {
		return nil, err
	}
	sw.set(inst.handler)
	defer sw.set(e.app)
	clients, d := o.clients, o.duration/time.Duration(o.rounds)
	seed := uint64(len(c.workload)) // the same requests for every system
	if c.workload == wlAttack {
		// A prepared attacker has its connections open: open one per
		// guesser (on a path the middleware does not guard), so that all
		// first guesses arrive together.
		clients, d = o.guessers, o.attackDuration
		if err := openConns(ctx, hc, base+"/healthz", clients); err != nil {
			return nil, errors.Join(err, inst.close())
		}
	} else if o.warmup > 0 {
		drive(ctx, hc, target, c.workload, clients, o.accounts, o.warmup, seed+1000)
	}
	if err := ctx.Err(); err != nil {
		return nil, errors.Join(err, inst.close())
	}

	calls := func() int64 {
		if inst.calls == nil {
			return -1
		}
		return inst.calls()
	}
	v0, a0, c0 := e.app.verified.Load(), e.app.victimVerified.Load(), calls()
	l0, r0, b0 := inst.lockouts.Load(), inst.refusals.Load(), inst.backendErrors.Load()
	sent0, ex0 := e.redisSent(c.system)
	cpu0 := e.cpu()
	cmd0, err := e.redisCommands(ctx, c.system)
	if err != nil {
		return nil, errors.Join(err, inst.close())
	}
	s := drive(ctx, hc, target, c.workload, clients, o.accounts, d, seed)
	cpu1 := e.cpu()
	sent1, ex1 := e.redisSent(c.system)
	cmd1, err := e.redisCommands(ctx, c.system)
	if err != nil {
		return nil, errors.Join(err, inst.close())
	}
	r := &result{
		System: c.system, Workload: c.workload, s: s, Runs: 1,
		Verified: e.app.verified.Load() - v0, Admitted: e.app.victimVerified.Load() - a0,
		Calls: -1, RedisSent: -1, RedisRun: -1, RedisExchanges: -1, CPU: -1,
		Lockouts: inst.lockouts.Load() - l0, Refusals: inst.refusals.Load() - r0, BackendErrors: inst.backendErrors.Load() - b0,
	}
	if c0 >= 0 {
		r.Calls = calls() - c0
	}
	if cpu0 >= 0 && cpu1 >= 0 {
		r.CPU = cpu1 - cpu0
	}
	if sent0 >= 0 {
		r.RedisSent, r.RedisExchanges = sent1-sent0, ex1-ex0
	}
	if cmd0 >= 0 {
		r.RedisRun = cmd1 - cmd0
	}
	if msg := inst.firstBackendError.Load(); msg != nil {
		r.FirstBackendError = *msg
	}
	if err := inst.close(); err != nil {
		return nil, err
	}
	if s.logins() == 0 {
		return nil, fmt.Errorf("no login completed: %s", s.firstError)
	}
	r.tputs = []float64{r.Throughput()}
	return r, nil
}

// pairOf returns the baseline run b and the configuration's run x of the
// pair r completes, when raw holds r's partner.
func pairOf(r *result, raw []*result) (b, x *result, ok bool) {
	for _, o := range raw {
		if o.Workload != r.Workload || o.round != r.round {
			continue
		}
		switch {
		case r.partner != "" && o.System == r.partner && o.partner == "":
			return r, o, true
		case r.System != sysBaseline && o.System == sysBaseline && o.partner == r.System:
			return o, r, true
		}
	}
	return nil, nil, false
}

// pairRatios returns, per configuration and workload, the ratios of its
// pairs of runs in raw, in order: throughput (baseline / configuration)
// and CPU time per login (configuration / baseline), and the measured time
// of the shortest run of those pairs.
func pairRatios(raw []*result) (tput, cpu map[[2]string][]float64, shortest map[[2]string]time.Duration) {
	tput, cpu, shortest = map[[2]string][]float64{}, map[[2]string][]float64{}, map[[2]string]time.Duration{}
	for _, r := range raw {
		if r.System == sysBaseline || r.Workload == wlAttack {
			continue
		}
		b, x, ok := pairOf(r, raw)
		if !ok {
			continue
		}
		k := [2]string{r.System, r.Workload}
		if t := x.Throughput(); t > 0 {
			tput[k] = append(tput[k], b.Throughput()/t)
		}
		if bc, xc := b.CPUPerLogin(), x.CPUPerLogin(); bc > 0 && xc >= 0 {
			cpu[k] = append(cpu[k], float64(xc)/float64(bc))
		}
		d := min(b.s.elapsed, x.s.elapsed)
		if s, ok := shortest[k]; !ok || d < s {
			shortest[k] = d
		}
	}
	return tput, cpu, shortest
}

// combine computes the pairs' ratios, merges the runs of each system under
// each workload, in table order, and judges whether each overhead may be
// quoted.
func combine(raw []*result) []*result {
	tput, cpu, shortest := pairRatios(raw) // before merging changes the runs
	var out []*result
	rows := map[[2]string]*result{}
	for _, r := range raw {
		k := [2]string{r.System, r.Workload}
		if m, ok := rows[k]; ok {
			m.merge(r)
			continue
		}
		rows[k] = r
		out = append(out, r)
	}
	// Table order: per workload, the baseline, then the systems.
	order := map[string]int{sysBaseline: 0}
	for i, s := range allSystems {
		order[s] = i + 1
	}
	wl := map[string]int{}
	for i, w := range allWorkloads {
		wl[w] = i
	}
	slices.SortStableFunc(out, func(a, b *result) int {
		if c := wl[a.Workload] - wl[b.Workload]; c != 0 {
			return c
		}
		return order[a.System] - order[b.System]
	})
	for _, r := range out {
		if len(r.tputs) > 1 {
			r.Spread = (slices.Max(r.tputs) - slices.Min(r.tputs)) / r.Throughput()
		}
		if r.System == sysBaseline || r.Workload == wlAttack {
			continue
		}
		k := [2]string{r.System, r.Workload}
		r.Overhead, r.CPUOverhead, r.Shortest = summarize(tput[k]), summarize(cpu[k]), shortest[k]
		r.OverheadVerdict = verdict(r.Overhead, r.Shortest)
		r.CPUVerdict = verdict(r.CPUOverhead, r.Shortest)
	}
	return out
}

// us formats d in microseconds.
func us(d time.Duration) string {
	return strconv.FormatInt(d.Microseconds(), 10) + "µs"
}

// ms formats d in milliseconds.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
}

// openConns sends n concurrent requests to url, so that the client keeps n
// idle connections open.
func openConns(ctx context.Context, hc *http.Client, url string, n int) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err == nil {
				var resp *http.Response
				if resp, err = hc.Do(req); err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("open connections: %w", err)
	}
	return nil
}
