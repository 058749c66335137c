package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

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
	dec := xml.NewDecoder(bytes.NewReader(svg))
	var root string
	bars := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s does not parse: %v", svgFile, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "title" {
				bars++
			}
		}
	}
	if want := len(rep.Opts.systems) * 3 * 2; root != "svg" || bars != want {
		t.Errorf("%s: root <%s> with %d bars, want <svg> with %d", svgFile, root, bars, want)
	}
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
			return len(o.systems) == len(allSystems) && len(o.workloads) == len(allWorkloads) && o.duration.Seconds() == 6
		}},
		{[]string{"-short"}, false, func(o options) bool { return o.duration.Seconds() == 1 && o.attackDuration.Seconds() == 1 }},
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
