package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-lockout/lockout/internal/testserver"
)

// TestShort runs every configuration under every workload in a short mode
// and checks what the run must show: exactly limit verifications admitted
// in the attack on the stores with atomic tag groups, at most limit on
// memcached; round trips per login within DESIGN.md's budget on Redis; and
// output files that parse.
func TestShort(t *testing.T) {
	out := t.TempDir()
	args := []string{
		"-short", "-duration", "250ms", "-warmup", "50ms", "-attack-duration", "400ms",
		"-clients", "8", "-iterations", "64", "-accounts", "50", "-out", out,
	}
	var stdout, stderr bytes.Buffer
	o, err := parseFlags(args, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServers(t, o.systems)
	rep, err := run(context.Background(), o, srv, &stdout, &stderr)
	t.Logf("progress:\n%s", &stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("table:\n%s", &stdout)

	cells := map[[2]string]*result{}
	for _, r := range rep.Results {
		cells[[2]string{r.System, r.Workload}] = r
		if r.s.errors > 0 {
			t.Errorf("%s / %s: %d requests failed, the first with %s", r.Workload, r.System, r.s.errors, r.s.firstError)
		}
		if r.BackendErrors > 0 {
			t.Errorf("%s / %s: %d backend errors, the first: %s", r.Workload, r.System, r.BackendErrors, r.FirstBackendError)
		}
	}
	for _, s := range append([]string{sysBaseline}, allSystems...) {
		for _, w := range allWorkloads {
			if cells[[2]string{s, w}] == nil {
				t.Errorf("no result for %s / %s", w, s)
			}
		}
	}

	// One pair per configuration and workload: -short never quotes an
	// overhead.
	for _, r := range rep.Results {
		if r.System == sysBaseline || r.Workload == wlAttack {
			continue
		}
		if r.Overhead.N != 1 || shortVerdict(r.OverheadVerdict) != "too short" || shortVerdict(r.CPUVerdict) != "too short" {
			t.Errorf("%s / %s: %d pairs, verdicts %q and %q; want 1 pair, too short", r.Workload, r.System, r.Overhead.N, r.OverheadVerdict, r.CPUVerdict)
		}
	}

	// The attack.
	for _, s := range allSystems {
		r := cells[[2]string{s, wlAttack}]
		if r == nil {
			continue
		}
		switch {
		case exactAttack(s) && r.Admitted != limit:
			t.Errorf("attack on %s: %d verifications admitted, want exactly %d", s, r.Admitted, limit)
		case s == sysMemcached && (r.Admitted > limit || r.Admitted < 1):
			t.Errorf("attack on %s: %d verifications admitted, want 1 to %d", s, r.Admitted, limit)
		}
		t.Logf("attack on %s: %d verifications admitted", s, r.Admitted)
	}

	// The round-trip budget (DESIGN.md): admitted 1, refused <= 2 (0 when
	// the lock cache remembers the lock), failure that does not lock 0
	// (fixed windows), failure that locks <= 3, success 1.
	for _, s := range []string{sysRedis, sysCluster} {
		for _, w := range allWorkloads {
			r := cells[[2]string{s, w}]
			if r == nil {
				continue
			}
			admitted := r.s.ok + r.s.failed
			budget := admitted + 2*r.s.refused + r.s.ok + 3*min(r.Lockouts, r.s.failed)
			if r.Calls < admitted || r.Calls > budget {
				t.Errorf("%s / %s: %d round trips for %d successes, %d failures (%d lockouts), %d refusals: want %d to %d",
					w, s, r.Calls, r.s.ok, r.s.failed, r.Lockouts, r.s.refused, admitted, budget)
			}
			if r.Refusals != r.s.refused {
				t.Errorf("%s / %s: the policy refused %d attempts, the clients saw %d refusals", w, s, r.Refusals, r.s.refused)
			}
		}
		if r := cells[[2]string{s, wlSuccess}]; r != nil && r.PerLogin(r.Calls) > 2 {
			t.Errorf("success / %s: %.2f round trips per login, want at most 2", s, r.PerLogin(r.Calls))
		}
		if r := cells[[2]string{s, wlFailures}]; r != nil && r.Lockouts == 0 && r.PerLogin(r.Calls) > 1 {
			t.Errorf("failures / %s: %.2f round trips per login without lockouts, want at most 1", s, r.PerLogin(r.Calls))
		}
	}
	// On one server, every call is one command: one round trip.
	for _, w := range allWorkloads {
		if r := cells[[2]string{sysRedis, w}]; r != nil && (r.RedisExchanges != r.Calls || r.RedisSent != r.Calls || r.RedisRun < r.Calls) {
			t.Errorf("%s / redis: %d calls, but %d Redis round trips, %d commands sent, %d run",
				w, r.Calls, r.RedisExchanges, r.RedisSent, r.RedisRun)
		}
	}

	checkFiles(t, out, rep)
}

// checkFiles checks that the output files exist and parse.
func checkFiles(t *testing.T, dir string, rep *report) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, csvFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", csvFile, err)
	}
	if len(recs) != len(rep.Results)+1 {
		t.Fatalf("%s: %d records, want a header and %d rows", csvFile, len(recs), len(rep.Results))
	}
	if got, want := strings.Join(recs[0], ","), strings.Join(csvHeader, ","); got != want {
		t.Errorf("%s header = %s, want %s", csvFile, got, want)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, rec := range recs[1:] {
		if v, err := strconv.ParseFloat(rec[col["logins_per_s"]], 64); err != nil || v <= 0 {
			t.Errorf("%s: %s / %s: logins_per_s %q", csvFile, rec[0], rec[1], rec[col["logins_per_s"]])
		}
		if rec[col["workload"]] == wlAttack {
			if _, err := strconv.Atoi(rec[col["admitted"]]); err != nil {
				t.Errorf("%s: %s: admitted %q", csvFile, rec[1], rec[col["admitted"]])
			}
		}
	}

	md, err := os.ReadFile(filepath.Join(dir, mdFile))
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for line := range strings.Lines(string(md)) {
		if strings.HasPrefix(line, "| ") {
			rows++
		}
	}
	if rows != len(rep.Results)+2 || !strings.Contains(string(md), "| --- |") {
		t.Errorf("%s: %d table lines, want a header, a separator and %d rows:\n%s", mdFile, rows, len(rep.Results), md)
	}

	svg, err := os.ReadFile(filepath.Join(dir, svgFile))
	if err != nil {
		t.Fatal(err)
	}
	c := parseSVG(t, svg)
	if want := len(rep.Opts.systems) * 3 * 2; c.root != "svg" || c.class["bar"]+c.class["unquoted"] != want {
		t.Errorf("%s: root <%s> with %d bars and %d unquoted marks, want <svg> with %d in all", svgFile, c.root, c.class["bar"], c.class["unquoted"], want)
	}
	if want := len(rep.Opts.systems) + 1; c.class["attack"] != want {
		t.Errorf("%s: %d attack bars, want %d", svgFile, c.class["attack"], want)
	}
}

// svgContent is what a chart holds: its root element, its elements by
// class, and its visible text.
type svgContent struct {
	root  string
	class map[string]int
	text  []string
}

func parseSVG(t *testing.T, svg []byte) svgContent {
	t.Helper()
	c := svgContent{class: map[string]int{}}
	dec := xml.NewDecoder(bytes.NewReader(svg))
	var stack []string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s does not parse: %v", svgFile, err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if c.root == "" {
				c.root = tok.Name.Local
			}
			stack = append(stack, tok.Name.Local)
			for _, a := range tok.Attr {
				if a.Name.Local == "class" {
					c.class[a.Value]++
				}
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 && stack[len(stack)-1] == "text" {
				c.text = append(c.text, string(tok))
			}
		}
	}
	return c
}

// TestMainErr runs the command as main does, with the servers started by a
// testserver.Standalone: the attack on memory and Redis.
func TestMainErr(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := mainErr([]string{"-short", "-workloads", "attack", "-backends", "memory,redis", "-attack-duration", "300ms",
		"-iterations", "64", "-accounts", "10", "-out", out}, &stdout, &stderr)
	t.Logf("progress:\n%s", &stderr)
	if errors.Is(err, testserver.ErrSkipped) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"none (baseline)", "memory", "redis"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, &stdout)
		}
	}
	for _, f := range []string{csvFile, mdFile, svgFile} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr bool
		check   func(options) bool
	}{
		{nil, false, func(o options) bool {
			return len(o.systems) == len(allSystems) && len(o.workloads) == len(allWorkloads) && o.duration.Seconds() == 12 && o.rounds == 8
		}},
		{[]string{"-short"}, false, func(o options) bool {
			return o.duration.Seconds() == 1 && o.attackDuration.Seconds() == 1 && o.rounds == 1
		}},
		{[]string{"-short", "-duration", "3s"}, false, func(o options) bool { return o.duration.Seconds() == 3 }},
		{[]string{"-backends", "redis,baseline,memory"}, false, func(o options) bool {
			return strings.Join(o.systems, ",") == "memory,redis"
		}},
		{[]string{"-backends", "postgres"}, true, nil},
		{[]string{"-workloads", ""}, true, nil},
		{[]string{"-clients", "0"}, true, nil},
		{[]string{"-attack-duration", "2m"}, true, nil},
		{[]string{"extra"}, true, nil},
	}
	for _, tt := range tests {
		o, err := parseFlags(tt.args, io.Discard)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseFlags(%q) error = %v, want error %v", tt.args, err, tt.wantErr)
			continue
		}
		if err == nil && !tt.check(o) {
			t.Errorf("parseFlags(%q) = %+v", tt.args, o)
		}
	}
}

func TestDataCommands(t *testing.T) {
	info := "# Commandstats\r\n" +
		"cmdstat_evalsha:calls=10,usec=100,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_incr:calls=5,usec=5,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_client|setinfo:calls=4,usec=4,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_info:calls=3,usec=30,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_hello:calls=2,usec=2,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n"
	n, err := dataCommands(info)
	if err != nil || n != 15 {
		t.Errorf("dataCommands = %d, %v; want 15", n, err)
	}
	if _, err := dataCommands("cmdstat_get:usec=1\r\n"); err == nil {
		t.Error("dataCommands accepted a line without calls=")
	}
}

// near reports whether a and b agree to 1e-9.
func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestSummarize(t *testing.T) {
	tests := []struct {
		name                     string
		ratios                   []float64
		n                        int
		median, p25, p75, lo, hi float64
		spread                   float64
	}{
		{"none", nil, 0, 0, 0, 0, 0, 0, 0},
		{"one", []float64{1.2}, 1, 1.2, 1.2, 1.2, 1.2, 1.2, 0},
		{"two", []float64{1.0, 1.2}, 2, 1.1, 1.05, 1.15, 1.0, 1.2, 0.1 / 1.1},
		{"odd, unsorted", []float64{1.3, 1.0, 1.1, 1.2, 1.4}, 5, 1.2, 1.1, 1.3, 1.0, 1.4, 0.2 / 1.2},
		// Type 7: h = q(n-1) = 1.75 and 5.25 for n = 8.
		{"eight", []float64{0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6}, 8, 1.25, 1.075, 1.425, 0.9, 1.6, 0.35 / 1.25},
		{"an outlier moves neither median nor IQR much", []float64{1, 1, 1, 1, 1, 1, 1, 9}, 8, 1, 1, 1, 1, 9, 0},
		{"runs without a measurement left out", []float64{0, -1, math.Inf(1), math.NaN(), 1.1}, 1, 1.1, 1.1, 1.1, 1.1, 1.1, 0},
	}
	for _, tt := range tests {
		st := summarize(tt.ratios)
		if st.N != tt.n || !near(st.Median, tt.median) || !near(st.P25, tt.p25) || !near(st.P75, tt.p75) ||
			!near(st.Min, tt.lo) || !near(st.Max, tt.hi) || !near(st.Spread(), tt.spread) {
			t.Errorf("%s: summarize(%v) = %+v (spread %.4f), want n %d, median %g, IQR %g–%g, min %g, max %g, spread %.4f",
				tt.name, tt.ratios, st, st.Spread(), tt.n, tt.median, tt.p25, tt.p75, tt.lo, tt.hi, tt.spread)
		}
		if tt.n > 0 && len(st.Ratios) != tt.n {
			t.Errorf("%s: Ratios = %v, want the %d measured ones in order", tt.name, st.Ratios, tt.n)
		}
	}
	// The order measured is kept; the input is not sorted in place.
	in := []float64{1.3, 1.0, 1.2}
	if st := summarize(in); !slices.Equal(st.Ratios, []float64{1.3, 1.0, 1.2}) || !slices.Equal(in, []float64{1.3, 1.0, 1.2}) {
		t.Errorf("summarize reordered: Ratios %v, input %v", st.Ratios, in)
	}
}

func TestVerdict(t *testing.T) {
	// steady returns n ratios spread evenly over [1-d, 1+d]: an IQR of d.
	steady := func(n int, d float64) ratioStats {
		v := make([]float64, n)
		for i := range v {
			v[i] = 1 - d + 2*d*float64(i)/float64(n-1)
		}
		return summarize(v)
	}
	tests := []struct {
		name    string
		st      ratioStats
		runTime time.Duration
		want    string // prefix; "" for quotable
	}{
		{"enough steady pairs", steady(8, 0.02), 1500 * time.Millisecond, ""},
		{"the minimum", steady(minPairs, 0.04), minRunTime, ""},
		{"no pairs", ratioStats{}, time.Second, "too short: 0 pairs"},
		{"one pair (-short)", summarize([]float64{0.96}), time.Second, "too short: 1 pair "},
		{"one pair fewer than the minimum", steady(minPairs-1, 0.01), 2 * time.Second, "too short"},
		{"runs too short", steady(8, 0.01), 250 * time.Millisecond, "too short: 250ms runs"},
		{"noisy", steady(8, 0.2), 2 * time.Second, "too noisy: IQR 20%"},
		{"just noisy", steady(8, 0.101), 2 * time.Second, "too noisy"},
		{"at the noise limit", steady(8, 0.0999), 2 * time.Second, ""},
		{"short wins over noisy", steady(3, 0.5), 2 * time.Second, "too short"},
	}
	for _, tt := range tests {
		got := verdict(tt.st, tt.runTime)
		if (tt.want == "") != (got == "") || !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s: verdict(%+v, %s) = %q, want %q...", tt.name, tt.st, tt.runTime, got, tt.want)
		}
		if got != "" && shortVerdict(got) != "too short" && shortVerdict(got) != "too noisy" {
			t.Errorf("%s: shortVerdict(%q) = %q", tt.name, got, shortVerdict(got))
		}
	}
}

func TestRatioCell(t *testing.T) {
	st := summarize([]float64{1.02, 1.04, 1.06, 1.03, 1.05})
	tests := []struct {
		st   ratioStats
		why  string
		want string
	}{
		{st, "", "1.04x (1.03–1.05)"},
		{st, "too noisy: IQR 14% of the median (quoted up to 10%)", "too noisy"},
		{summarize([]float64{0.96}), "too short: 1 pair (quoted from 5)", "too short"},
		{ratioStats{}, "", "-"},
	}
	for _, tt := range tests {
		if got := ratioCell(tt.st, tt.why); got != tt.want {
			t.Errorf("ratioCell(%v, %q) = %q, want %q", tt.st.Ratios, tt.why, got, tt.want)
		}
	}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name      string
		systems   []string
		workloads []string
		rounds    int
		runs      int
	}{
		{"one pair", []string{sysRedis}, []string{wlSuccess}, 1, 2},
		{"alternating order", []string{sysRedis}, []string{wlSuccess}, 4, 8},
		{"rotating systems", []string{sysMemory, sysRedis, sysMemcached}, []string{wlSuccess, wlFailures}, 3, 2 * 3 * 3 * 2},
		{"with the attack", []string{sysMemory, sysRedis}, []string{wlMixed, wlAttack}, 2, 2*2*2 + 3},
		{"baseline only", nil, []string{wlSuccess, wlAttack}, 3, 3 + 1},
	}
	for _, tt := range tests {
		cells := plan(options{systems: tt.systems, workloads: tt.workloads, rounds: tt.rounds})
		if len(cells) != tt.runs {
			t.Errorf("%s: %d runs, want %d: %v", tt.name, len(cells), tt.runs, cells)
		}
		baselineFirst := map[string]int{}
		seen := map[cell]bool{}
		for i := 0; i < len(cells); i++ {
			c := cells[i]
			if seen[c] {
				t.Errorf("%s: %v planned twice", tt.name, c)
			}
			seen[c] = true
			if c.workload == wlAttack || len(tt.systems) == 0 {
				continue
			}
			// A pair: the baseline for s and s, next to each other, in
			// the same round.
			if i+1 >= len(cells) {
				t.Fatalf("%s: %v has no partner", tt.name, c)
			}
			d := cells[i+1]
			seen[d] = true
			i++
			b, x := c, d
			if c.system != sysBaseline {
				b, x = d, c
			} else {
				baselineFirst[x.system]++
			}
			if b.system != sysBaseline || b.partner != x.system || x.partner != "" || b.round != x.round || b.workload != x.workload {
				t.Errorf("%s: %v then %v is not a pair", tt.name, c, d)
			}
			if got, want := c.system == sysBaseline, b.round%2 == 0; got != want {
				t.Errorf("%s: round %d: baseline first %v, want %v", tt.name, b.round, got, want)
			}
		}
		// Each configuration is measured in every round of every workload
		// but the attack, with the baseline first in half of them.
		for _, s := range tt.systems {
			for _, w := range tt.workloads {
				for r := range tt.rounds {
					if w != wlAttack && (!seen[cell{s, w, r, ""}] || !seen[cell{sysBaseline, w, r, s}]) {
						t.Errorf("%s: no pair for %s / %s in round %d", tt.name, w, s, r)
					}
				}
			}
			first, pairs := 0, 0
			for _, w := range tt.workloads {
				if w != wlAttack {
					first, pairs = first+(tt.rounds+1)/2, pairs+tt.rounds
				}
			}
			if baselineFirst[s] != first {
				t.Errorf("%s: %s: baseline first in %d of %d pairs, want %d", tt.name, s, baselineFirst[s], pairs, first)
			}
		}
	}
}

// fakeRun is a measured run for combine: logins in elapsed, with cpu per
// login.
func fakeRun(system, workload string, round int, partner string, logins int64, elapsed, cpu time.Duration) *result {
	return &result{
		System: system, Workload: workload, round: round, partner: partner, Runs: 1,
		s:     &sample{elapsed: elapsed, ok: logins},
		Calls: -1, RedisSent: -1, RedisRun: -1, RedisExchanges: -1,
		CPU:   cpu * time.Duration(logins),
		tputs: []float64{float64(logins) / elapsed.Seconds()},
	}
}

func TestCombine(t *testing.T) {
	type run struct {
		baseline, config int64 // logins of the pair's runs, in 1 s each
	}
	tests := []struct {
		name    string
		pairs   []run
		elapsed time.Duration
		median  float64
		want    string // verdict prefix
	}{
		{"steady", []run{{1000, 900}, {1000, 910}, {1010, 900}, {990, 900}, {1000, 905}}, time.Second, 1000.0 / 905, ""},
		// The whole machine slows down in the third pair: the pair's ratio
		// stays, the pooled throughputs would not.
		{"load changes between pairs", []run{{1000, 800}, {1000, 800}, {400, 320}, {1000, 800}, {1000, 800}, {1000, 800}}, time.Second, 1.25, ""},
		{"one pair", []run{{1000, 1040}}, time.Second, 1000.0 / 1040, "too short"},
		{"noisy", []run{{1000, 800}, {1000, 1200}, {1000, 700}, {1000, 1300}, {1000, 1000}}, time.Second, 1, "too noisy"},
		{"short runs", []run{{100, 90}, {100, 90}, {100, 90}, {100, 90}, {100, 90}}, 100 * time.Millisecond, 100.0 / 90, "too short"},
	}
	for _, tt := range tests {
		var raw []*result
		for r, p := range tt.pairs {
			b := fakeRun(sysBaseline, wlSuccess, r, sysRedis, p.baseline, tt.elapsed, 100*time.Microsecond)
			x := fakeRun(sysRedis, wlSuccess, r, "", p.config, tt.elapsed, 120*time.Microsecond)
			if r%2 == 1 {
				raw = append(raw, x, b)
			} else {
				raw = append(raw, b, x)
			}
		}
		raw = append(raw, fakeRun(sysRedis, wlAttack, 0, "", 5000, tt.elapsed, 10*time.Microsecond))
		rows := combine(raw)
		if len(rows) != 3 {
			t.Fatalf("%s: %d rows, want baseline, redis and the attack", tt.name, len(rows))
		}
		base, redis, attack := rows[0], rows[1], rows[2]
		if base.System != sysBaseline || redis.System != sysRedis || attack.Workload != wlAttack {
			t.Fatalf("%s: rows in the wrong order: %s, %s, %s", tt.name, base.System, redis.System, attack.Workload)
		}
		if base.Overhead.N != 0 || attack.Overhead.N != 0 || base.Runs != len(tt.pairs) {
			t.Errorf("%s: baseline %+v (%d runs), attack %+v: want no ratios, %d runs", tt.name, base.Overhead, base.Runs, attack.Overhead, len(tt.pairs))
		}
		if redis.Overhead.N != len(tt.pairs) || math.Abs(redis.Overhead.Median-tt.median) > 1e-9 {
			t.Errorf("%s: overhead %+v, want median %.4f of %d pairs", tt.name, redis.Overhead, tt.median, len(tt.pairs))
		}
		for i, p := range tt.pairs {
			if want := float64(p.baseline) / float64(p.config); math.Abs(redis.Overhead.Ratios[i]-want) > 1e-9 {
				t.Errorf("%s: pair %d ratio %.4f, want %.4f", tt.name, i, redis.Overhead.Ratios[i], want)
			}
		}
		if got := redis.OverheadVerdict; (tt.want == "") != (got == "") || !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s: verdict %q, want %q", tt.name, got, tt.want)
		}
		if redis.Shortest != tt.elapsed {
			t.Errorf("%s: shortest run %s, want %s", tt.name, redis.Shortest, tt.elapsed)
		}
		// CPU per login is 1.2 times the baseline's in every pair: steady,
		// quotable wherever there are enough long pairs.
		if !near(redis.CPUOverhead.Median, 1.2) || redis.CPUOverhead.Spread() > 1e-9 {
			t.Errorf("%s: CPU overhead %+v, want 1.2 in every pair", tt.name, redis.CPUOverhead)
		}
	}
}

// TestFailureNote checks the chart's note on overheads below 1.00x: the
// password checks refusals skip when the failures workload refused many
// logins, noise when it refused almost none, and the general reason when
// no failures workload ran.
func TestFailureNote(t *testing.T) {
	tests := []struct {
		name          string
		refused, ok   int64 // of the failures workload on memory
		want, notWant string
	}{
		{"many refused", 300, 700, "30.0% of the logins were refused (memory)", "noise"},
		{"almost none", 5, 995, "at most 0.5% in the failures workload), so a median below 1.00x is noise", "skips it"},
		{"none", 0, 1000, "at most 0.0%", "skips it"},
		{"no failures workload", -1, 0, "skips it", "noise"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &report{}
			if tt.refused >= 0 {
				r := fakeRun(sysMemory, wlFailures, 0, "", tt.ok, time.Second, time.Millisecond)
				r.s.refused = tt.refused
				rep.Results = append(rep.Results, r, fakeRun(sysBaseline, wlFailures, 0, "", 1000, time.Second, time.Millisecond))
			}
			note := failureNote(rep)
			if !strings.Contains(note, tt.want) || strings.Contains(note, tt.notWant) {
				t.Errorf("failureNote = %q, want it to say %q and not %q", note, tt.want, tt.notWant)
			}
		})
	}
}

// TestWriteSVG draws a chart from made-up results and checks what a reader
// sees: a bar with its median where the rule allows quoting, a grey mark
// and no number where it does not, the note on overheads below 1.00x, and
// the attack's admitted guesses against the limit. The chart is kept with
// go test -artifacts.
func TestWriteSVG(t *testing.T) {
	systems := []string{sysMemory, sysRedis, sysCheckCount}
	workloads := []string{wlSuccess, wlMixed, wlFailures, wlAttack}
	rep := &report{
		Opts: options{systems: systems, workloads: workloads, rounds: 8, duration: 12 * time.Second, clients: 64, guessers: 256,
			attackDuration: 2 * time.Second, cost: time.Millisecond, args: []string{"-rounds", "8"}},
		Iterations: 600, Machine: machine{CPUs: 2, Model: "test CPU"}, LoadBefore: "1.00 1.00 1.00", LoadAfter: "1.00 1.00 1.00",
	}
	steady := []float64{1.11, 1.12, 1.13, 1.14, 1.15, 1.16, 1.17, 1.18}
	noisy := []float64{0.70, 0.80, 0.9, 0.9, 0.95, 1.0, 1.1, 1.3}
	admitted := map[string]int64{sysBaseline: 3887, sysMemory: 5, sysRedis: 5, sysCheckCount: 245}
	for _, w := range workloads {
		for _, s := range append([]string{sysBaseline}, systems...) {
			r := fakeRun(s, w, 0, "", 1500, 1500*time.Millisecond, time.Millisecond)
			r.Admitted = admitted[s]
			if w != wlAttack && s != sysBaseline {
				r.Overhead, r.CPUOverhead, r.Shortest = summarize(steady), summarize(steady), 1500*time.Millisecond
				switch {
				case s == sysRedis && w == wlSuccess:
					r.Overhead = summarize([]float64{0.96}) // -short's misleading figure
				case s == sysCheckCount:
					r.Overhead = summarize(noisy)
				}
				r.OverheadVerdict, r.CPUVerdict = verdict(r.Overhead, r.Shortest), verdict(r.CPUOverhead, r.Shortest)
			}
			rep.Results = append(rep.Results, r)
		}
	}
	var b bytes.Buffer
	if err := writeSVG(&b, rep); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), svgFile), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	c := parseSVG(t, b.Bytes())
	text := strings.Join(c.text, "\n")
	// Quoted: 3 workloads x 3 systems x 2 panels, less redis/success and
	// check-then-count's three in the throughput panel.
	if c.root != "svg" || c.class["bar"] != 14 || c.class["unquoted"] != 4 || c.class["attack"] != 4 {
		t.Errorf("root <%s>, classes %v: want <svg>, 14 bars, 4 unquoted, 4 attack bars", c.root, c.class)
	}
	for _, want := range []string{
		"1.15",                   // a quoted median
		"too short", "too noisy", // the unquoted ones
		"almost no login was refused", // why below 1.00x: noise here
		"too noisy (IQR",
		"3887", "245", "limit 5", // the attack
		"interquartile range", "at least 5 pairs",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the chart does not say %q:\n%s", want, text)
		}
	}
	for _, bad := range []string{"0.96", "0.95", "0.93"} { // the unquoted medians
		if slices.Contains(c.text, bad) {
			t.Errorf("the chart prints %s, a median it must not quote", bad)
		}
	}
}
