package main

import (
	"bytes"
	"encoding/csv"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// The output files, in -out.
const (
	csvFile = "results.csv"
	mdFile  = "results.md"
	svgFile = "overhead.svg"
)

var tableHeader = []string{
	"workload", "backend", "logins/s", "p50", "p99", "overhead", "CPU/login", "CPU overhead",
	"round trips/login", "Redis cmds/login sent/run", "refused", "admitted",
}

// row formats r for the terminal and Markdown tables.
func row(r *result) []string {
	dash := func(v float64, prec int) string {
		if v < 0 {
			return "-"
		}
		return strconv.FormatFloat(v, 'f', prec, 64)
	}
	overhead, cpuOverhead, cpu, admitted := "-", "-", "-", "-"
	if r.Workload == wlAttack {
		admitted = strconv.FormatInt(r.Admitted, 10)
	} else {
		if r.Overhead > 0 {
			overhead = fmt.Sprintf("%.2fx", r.Overhead)
		}
		if r.CPUOverhead > 0 {
			cpuOverhead = fmt.Sprintf("%.2fx", r.CPUOverhead)
		}
	}
	if d := r.CPUPerLogin(); d >= 0 {
		cpu = us(d)
	}
	trips := dash(r.PerLogin(r.Calls), 2)
	if r.RedisExchanges >= 0 && r.Calls >= 0 && r.RedisExchanges != r.Calls {
		// A call that took two rounds on the wire.
		trips += fmt.Sprintf(" (wire %.2f)", r.PerLogin(r.RedisExchanges))
	}
	redis := "-"
	if r.RedisSent >= 0 || r.RedisRun >= 0 {
		redis = dash(r.PerLogin(r.RedisSent), 2) + " / " + dash(r.PerLogin(r.RedisRun), 2)
	}
	refused := fmt.Sprintf("%.1f%%", 100*float64(r.s.refused)/float64(max(r.s.logins(), 1)))
	out := []string{
		r.Workload, labels[r.System],
		fmt.Sprintf("%.0f", r.Throughput()),
		ms(r.s.percentile(50)), ms(r.s.percentile(99)),
		overhead, cpu, cpuOverhead,
		trips, redis,
		refused, admitted,
	}
	if r.s.errors > 0 {
		out[1] += fmt.Sprintf(" (%d errors)", r.s.errors)
	}
	return out
}

// writeTable prints the table.
func writeTable(w io.Writer, rep *report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(tableHeader, "\t"))
	prev := ""
	for _, r := range rep.Results {
		if prev != "" && r.Workload != prev {
			fmt.Fprintln(tw, strings.Repeat("\t", len(tableHeader)-1))
		}
		prev = r.Workload
		fmt.Fprintln(tw, strings.Join(row(r), "\t"))
	}
	return tw.Flush()
}

// writeFiles writes the CSV, Markdown and SVG files into dir.
func writeFiles(dir string, rep *report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", dir, err)
	}
	files := []struct {
		name  string
		write func(io.Writer, *report) error
	}{{csvFile, writeCSV}, {mdFile, writeMarkdown}, {svgFile, writeSVG}}
	for _, f := range files {
		var b bytes.Buffer
		if err := f.write(&b, rep); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}

var csvHeader = []string{
	"workload", "backend", "rounds", "seconds", "logins", "logins_per_s", "spread", "p50_ms", "p99_ms", "overhead",
	"cpu_us_per_login", "cpu_overhead",
	"round_trips_per_login", "redis_round_trips_per_login", "redis_cmds_sent_per_login", "redis_cmds_run_per_login",
	"ok", "failed", "refused", "errors", "verified", "admitted", "lockouts", "refusals", "backend_errors",
}

func writeCSV(w io.Writer, rep *report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	f := func(v float64, prec int) string {
		if v < 0 {
			return ""
		}
		return strconv.FormatFloat(v, 'f', prec, 64)
	}
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	msf := func(d time.Duration) string { return f(float64(d)/float64(time.Millisecond), 3) }
	for _, r := range rep.Results {
		ratio := func(v float64) string {
			if v <= 0 {
				return ""
			}
			return f(v, 4)
		}
		cpu := ""
		if d := r.CPUPerLogin(); d >= 0 {
			cpu = f(float64(d)/float64(time.Microsecond), 1)
		}
		rec := []string{
			r.Workload, r.System, strconv.Itoa(r.Runs), f(r.s.elapsed.Seconds(), 3), i(r.s.logins()),
			f(r.Throughput(), 1), f(r.Spread, 4), msf(r.s.percentile(50)), msf(r.s.percentile(99)), ratio(r.Overhead),
			cpu, ratio(r.CPUOverhead),
			f(r.PerLogin(r.Calls), 4), f(r.PerLogin(r.RedisExchanges), 4), f(r.PerLogin(r.RedisSent), 4), f(r.PerLogin(r.RedisRun), 4),
			i(r.s.ok), i(r.s.failed), i(r.s.refused), i(r.s.errors),
			i(r.Verified), i(r.Admitted), i(r.Lockouts), i(r.Refusals), i(r.BackendErrors),
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// command returns the command line of the run.
func command(o options) string {
	return strings.TrimSpace("go run ./cmd/lockbench " + strings.Join(o.args, " "))
}

func writeMarkdown(w io.Writer, rep *report) error {
	o := rep.Opts
	m := rep.Machine
	fmt.Fprintf(w, "# lockbench results\n\n")
	fmt.Fprintf(w, "Command: `%s`, started %s, took %s.\n\n", command(o), rep.Started.UTC().Format("2006-01-02 15:04 UTC"), rep.Total.Round(time.Second))
	fmt.Fprintf(w, "Machine: %d CPUs (%s), %s RAM, %s, %s. Load average (1, 5, 15 min): %s at the start, %s at the end.\n\n",
		m.CPUs, m.Model, m.Memory, m.OS, m.Go, rep.LoadBefore, rep.LoadAfter)
	fmt.Fprintf(w, "Settings: %d concurrent clients; %s per cell, in %d interleaved rounds, each after a %s warm-up; "+
		"attack: %d guessers for %s. Password check: PBKDF2-HMAC-SHA256, %d iterations (about %s). "+
		"Rules: username, IP and username+IP, limit %d each.\n\n",
		o.clients, o.duration, o.rounds, o.warmup, o.guessers, o.attackDuration, rep.Iterations, o.cost, limit)
	fmt.Fprintln(w, "| "+strings.Join(tableHeader, " | ")+" |")
	seps := make([]string, len(tableHeader))
	for i := range seps {
		seps[i] = "---"
		if i >= 2 {
			seps[i] = "---:"
		}
	}
	fmt.Fprintln(w, "| "+strings.Join(seps, " | ")+" |")
	for _, r := range rep.Results {
		fmt.Fprintln(w, "| "+strings.Join(row(r), " | ")+" |")
	}
	fmt.Fprintln(w)
	var spreads []string
	for _, r := range rep.Results {
		if r.System == sysBaseline && r.Runs > 1 {
			spreads = append(spreads, fmt.Sprintf("%s %.0f%%", r.Workload, 100*r.Spread))
		}
	}
	if len(spreads) > 0 {
		fmt.Fprintf(w, "Baseline throughput spread between rounds ((highest - lowest) / mean): %s.\n\n", strings.Join(spreads, ", "))
	}
	fmt.Fprintf(w, `- overhead: the baseline's throughput over the configuration's, with the same clients and requests (1.00x: no cost).
- CPU/login: CPU time (user + system) of %s, per login; CPU overhead: its ratio to the baseline's. On a busy machine it is steadier than throughput.
- round trips/login: backend calls per login, counted by wrapping the store (internal/counting); for check-then-count, the commands and pipelines it sends. "wire" is the round trips the go-redis client made when they differ from the calls: on a Cluster, the store sends a read that follows a write of another hash slot in a second pipeline.
- Redis cmds/login sent / run: the commands the go-redis client sent (a hook counts them, pipelined or not), and the data commands the Redis server(s) ran according to INFO commandstats, which counts the commands the library's Lua script runs (redis.call) too; connection and cluster housekeeping (HELLO, CLIENT, CLUSTER, INFO, ...) is left out.
- admitted: password verifications on the attacked account during the attack (limit %d).
- check-then-count mimics django-defender's order (GET the block keys, verify, INCR+EXPIRE, SET a block key at the limit) with plain go-redis commands on the same Redis.
`, strings.Join(rep.CPUOf, ", "), limit)
	return nil
}

// svgColors are the workloads' bar colours.
var svgColors = []string{"#4e79a7", "#f28e2b", "#59a14f"}

// writeSVG draws the overheads (throughput, and CPU time per login) of
// every system under every workload but the attack, as grouped bars in two
// panels.
func writeSVG(w io.Writer, rep *report) error {
	var workloads []string
	for _, wl := range rep.Opts.workloads {
		if wl != wlAttack {
			workloads = append(workloads, wl)
		}
	}
	systems := rep.Opts.systems
	type panel struct {
		title string
		value func(*result) float64
	}
	panels := []panel{
		{"Throughput overhead: baseline throughput / throughput", func(r *result) float64 { return r.Overhead }},
		{"CPU overhead: CPU time per login / the baseline's", func(r *result) float64 { return r.CPUOverhead }},
	}

	const (
		left, right, head, foot = 64.0, 20.0, 48.0, 60.0
		panelTop, plotH         = 30.0, 240.0
		panelGap                = 40.0
		barW, barGap, groupGap  = 22.0, 4.0, 28.0
	)
	groupW := float64(len(workloads))*(barW+barGap) - barGap
	plotW := max(float64(len(systems))*(groupW+groupGap)+groupGap, 360)
	panelH := panelTop + plotH + panelGap
	width, height := left+plotW+right, head+float64(len(panels))*panelH+foot
	esc := func(s string) string {
		var b strings.Builder
		_ = xml.EscapeText(&b, []byte(s))
		return b.String()
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="15" font-weight="bold">%s</text>`+"\n", left, esc("Login overhead of lockout versus no protection"))
	fmt.Fprintf(&b, `<text x="%.0f" y="38" fill="#555555">%s</text>`+"\n", left,
		esc(fmt.Sprintf("%d clients, PBKDF2 %d iterations (~%s), %d CPUs (%s), load %s", rep.Opts.clients, rep.Iterations, rep.Opts.cost, rep.Machine.CPUs, rep.Machine.Model, rep.LoadBefore)))
	for pi, p := range panels {
		top := head + float64(pi)*panelH
		value := map[[2]string]float64{}
		hi := 1.2
		for _, r := range rep.Results {
			if r.System != sysBaseline && r.Workload != wlAttack && p.value(r) > 0 {
				value[[2]string{r.System, r.Workload}] = p.value(r)
				hi = max(hi, p.value(r)*1.1)
			}
		}
		step := 0.25
		if hi > 6 {
			step = 2
		} else if hi > 3 {
			step = 1
		} else if hi > 1.5 {
			step = 0.5
		}
		hi = math.Ceil(hi/step) * step
		y0 := top + panelTop + plotH
		y := func(v float64) float64 { return y0 - v/hi*plotH }
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" font-weight="bold">%s</text>`+"\n", left, top+panelTop-10, esc(p.title))
		for v := 0.0; v <= hi+1e-9; v += step {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd"/>`+"\n", left, y(v), left+plotW, y(v))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%.2fx</text>`+"\n", left-6, y(v)+4, v)
		}
		for gi, s := range systems {
			x0 := left + groupGap + float64(gi)*(groupW+groupGap)
			for wi, wl := range workloads {
				v, ok := value[[2]string{s, wl}]
				if !ok {
					continue
				}
				x := x0 + float64(wi)*(barW+barGap)
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n",
					x, y(v), barW, y0-y(v), svgColors[wi%len(svgColors)], esc(fmt.Sprintf("%s, %s: %.2fx", labels[s], wl, v)))
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9">%.2f</text>`+"\n", x+barW/2, y(v)-3, v)
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x0+groupW/2, y0+16, esc(shortLabel(s)))
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d62728" stroke-dasharray="6 4"/>`+"\n", left, y(1), left+plotW, y(1))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333333"/>`+"\n", left, y0, left+plotW, y0)
	}
	ly := height - foot + 24
	lx := left
	for wi, wl := range workloads {
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/>`+"\n", lx, ly-10, svgColors[wi%len(svgColors)])
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+16, ly, esc(wl))
		lx += 100
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#d62728">%s</text>`+"\n", lx, ly, esc("- - - baseline (1.00x)"))
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// shortLabel is a system's name under its bars.
func shortLabel(s string) string {
	if s == sysCheckCount {
		return "check-then-count"
	}
	return labels[s]
}
