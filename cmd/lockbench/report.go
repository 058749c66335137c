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
	"workload", "backend", "logins/s", "p50", "p99", "pairs", "overhead (IQR)", "CPU/login", "CPU overhead (IQR)",
	"round trips/login", "Redis cmds/login sent/run", "refused", "admitted",
}

// ratioCell formats a ratio for the tables: its median and interquartile
// range, or why it is not quoted.
func ratioCell(st ratioStats, why string) string {
	switch {
	case st.N == 0:
		return "-"
	case why != "":
		return shortVerdict(why)
	}
	return fmt.Sprintf("%.2fx (%.2f–%.2f)", st.Median, st.P25, st.P75)
}

// refusedShare returns the share of r's logins that were refused.
func refusedShare(r *result) float64 {
	return float64(r.s.refused) / float64(max(r.s.logins(), 1))
}

// row formats r for the terminal and Markdown tables.
func row(r *result) []string {
	dash := func(v float64, prec int) string {
		if v < 0 {
			return "-"
		}
		return strconv.FormatFloat(v, 'f', prec, 64)
	}
	pairs, overhead, cpuOverhead, cpu, admitted := "-", "-", "-", "-", "-"
	if r.Workload == wlAttack {
		admitted = strconv.FormatInt(r.Admitted, 10)
	} else if r.System != sysBaseline {
		pairs = strconv.Itoa(r.Overhead.N)
		overhead = ratioCell(r.Overhead, r.OverheadVerdict)
		cpuOverhead = ratioCell(r.CPUOverhead, r.CPUVerdict)
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
	refused := fmt.Sprintf("%.1f%%", 100*refusedShare(r))
	out := []string{
		r.Workload, labels[r.System],
		fmt.Sprintf("%.0f", r.Throughput()),
		ms(r.s.percentile(50)), ms(r.s.percentile(99)),
		pairs, overhead, cpu, cpuOverhead,
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
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\noverhead: median of the pairs' ratios (baseline, then configuration, back to back), with their interquartile range.\n%s\n", ruleText())
	return err
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
	"workload", "backend", "rounds", "seconds", "logins", "logins_per_s", "spread", "p50_ms", "p99_ms",
	"pairs", "shortest_run_s",
	"overhead", "overhead_p25", "overhead_p75", "overhead_min", "overhead_max", "overhead_verdict", "overhead_ratios",
	"cpu_us_per_login",
	"cpu_overhead", "cpu_overhead_p25", "cpu_overhead_p75", "cpu_overhead_min", "cpu_overhead_max", "cpu_overhead_verdict", "cpu_overhead_ratios",
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
	// stats returns the median, quartiles, extremes, verdict and ratios of
	// st; empty fields when there are no pairs.
	stats := func(st ratioStats, why string) []string {
		if st.N == 0 {
			return make([]string, 7)
		}
		ratios := make([]string, len(st.Ratios))
		for i, v := range st.Ratios {
			ratios[i] = f(v, 4)
		}
		ok := "quoted"
		if why != "" {
			ok = why
		}
		return []string{f(st.Median, 4), f(st.P25, 4), f(st.P75, 4), f(st.Min, 4), f(st.Max, 4), ok, strings.Join(ratios, " ")}
	}
	for _, r := range rep.Results {
		cpu := ""
		if d := r.CPUPerLogin(); d >= 0 {
			cpu = f(float64(d)/float64(time.Microsecond), 1)
		}
		pairs, shortest := "", ""
		if r.Overhead.N > 0 {
			pairs, shortest = strconv.Itoa(r.Overhead.N), f(r.Shortest.Seconds(), 3)
		}
		rec := []string{
			r.Workload, r.System, strconv.Itoa(r.Runs), f(r.s.elapsed.Seconds(), 3), i(r.s.logins()),
			f(r.Throughput(), 1), f(r.Spread, 4), msf(r.s.percentile(50)), msf(r.s.percentile(99)),
			pairs, shortest,
		}
		rec = append(rec, stats(r.Overhead, r.OverheadVerdict)...)
		rec = append(rec, cpu)
		rec = append(rec, stats(r.CPUOverhead, r.CPUVerdict)...)
		rec = append(rec,
			f(r.PerLogin(r.Calls), 4), f(r.PerLogin(r.RedisExchanges), 4), f(r.PerLogin(r.RedisSent), 4), f(r.PerLogin(r.RedisRun), 4),
			i(r.s.ok), i(r.s.failed), i(r.s.refused), i(r.s.errors),
			i(r.Verified), i(r.Admitted), i(r.Lockouts), i(r.Refusals), i(r.BackendErrors),
		)
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
	fmt.Fprintf(w, "Settings: %d concurrent clients; every configuration measured for %s per workload, in %d rounds of a pair of runs "+
		"(%s of the baseline and %s of the configuration, back to back, each after a %s warm-up); "+
		"attack: %d guessers for %s. Password check: PBKDF2-HMAC-SHA256, %d iterations (about %s). "+
		"Rules: username, IP and username+IP, limit %d each.\n\n",
		o.clients, o.duration, o.rounds, o.duration/time.Duration(o.rounds), o.duration/time.Duration(o.rounds), o.warmup,
		o.guessers, o.attackDuration, rep.Iterations, o.cost, limit)
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
		fmt.Fprintf(w, "Baseline throughput spread between its runs ((highest - lowest) / mean): %s.\n\n", strings.Join(spreads, ", "))
	}
	fmt.Fprintf(w, "%s\n\n%s\n\n", ruleText(), failureNote(rep))
	fmt.Fprintf(w, `- pairs: the pairs of runs (a run of the baseline and one of the configuration, back to back, the baseline first in every other round) the overheads come from.
- overhead: per pair, the baseline's throughput over the configuration's, with the same clients and requests (1.00x: no cost); the median over the pairs, and in brackets their interquartile range (25th to 75th percentile).
- CPU/login: CPU time (user + system) of %s, per login; CPU overhead: per pair, its ratio to the baseline's, summarised the same way. On a busy machine it is steadier than throughput.
- round trips/login: backend calls per login, counted by wrapping the store (internal/counting); for check-then-count, the commands and pipelines it sends. "wire" is the round trips the go-redis client made when they differ from the calls: on a Cluster, the store sends a read that follows a write of another hash slot in a second pipeline.
- Redis cmds/login sent / run: the commands the go-redis client sent (a hook counts them, pipelined or not), and the data commands the Redis server(s) ran according to INFO commandstats, which counts the commands the library's Lua script runs (redis.call) too; connection and cluster housekeeping (HELLO, CLIENT, CLUSTER, INFO, ...) is left out.
- admitted: password verifications on the attacked account during the attack (limit %d).
- check-then-count mimics django-defender's order (GET the block keys, verify, INCR+EXPIRE, SET a block key at the limit) with plain go-redis commands on the same Redis.
`, strings.Join(rep.CPUOf, ", "), limit)
	var lines []string
	for _, r := range rep.Results {
		if r.Overhead.N == 0 {
			continue
		}
		v := make([]string, len(r.Overhead.Ratios))
		for i, x := range r.Overhead.Ratios {
			v[i] = fmt.Sprintf("%.2f", x)
		}
		line := fmt.Sprintf("- %s / %s: %s (min %.2f, max %.2f)", r.Workload, labels[r.System], strings.Join(v, " "), r.Overhead.Min, r.Overhead.Max)
		if r.OverheadVerdict != "" {
			line += "; " + r.OverheadVerdict
		}
		if r.CPUVerdict != "" && shortVerdict(r.CPUVerdict) != shortVerdict(r.OverheadVerdict) {
			line += "; CPU overhead " + r.CPUVerdict
		}
		lines = append(lines, line)
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "\n## Throughput overhead of each pair, in the order measured\n\n%s\n", strings.Join(lines, "\n"))
	}
	return nil
}

// failureNote explains why an overhead can be below 1.00x, with the
// largest share of refused logins among the configurations in the
// failures workload of rep.
func failureNote(rep *report) string {
	worst, who, seen := 0.0, "", false
	for _, r := range rep.Results {
		if r.Workload == wlFailures && r.System != sysBaseline {
			seen = true
			if refusedShare(r) >= worst {
				worst, who = refusedShare(r), labels[r.System]
			}
		}
	}
	general := "Why an overhead can be below 1.00x: most of a login's cost is its password check, and an attempt the protection refuses " +
		"skips it, so a workload with refusals can run faster than the unprotected baseline."
	switch {
	case !seen:
		return general
	case worst < 0.01:
		return fmt.Sprintf("Below 1.00x: almost no login was refused in this run (at most %.1f%% in the failures workload), so a median below 1.00x is noise: read it with its interquartile range.", 100*worst)
	}
	return general + fmt.Sprintf(" In this run's failures workload up to %.1f%% of the logins were refused (%s).", 100*worst, who)
}

// workloadColor is a workload's bar colour: the same in every chart,
// whichever workloads a run measures.
func workloadColor(wl string) string {
	switch wl {
	case wlSuccess:
		return "#4e79a7"
	case wlMixed:
		return "#f28e2b"
	case wlFailures:
		return "#59a14f"
	}
	return "#9c755f"
}

// chartVerdict is the words of an unquoted overhead's mark: "too short",
// or "too noisy" with the IQR that made it so.
func chartVerdict(st ratioStats, why string) string {
	if v := shortVerdict(why); v == "too noisy" {
		return fmt.Sprintf("too noisy (IQR %.0f%%)", 100*st.Spread())
	}
	return shortVerdict(why)
}

// writeSVG draws the chart: the overheads (throughput, and CPU time per
// login) of every configuration under every workload but the attack, as
// grouped bars of the pairs' median with their interquartile range, or a
// grey "too short" / "too noisy" mark where the rule of stats.go forbids
// quoting; why an overhead can be below 1.00x; and the attack's password
// checks admitted per configuration against the limit.
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
		stats func(*result) (ratioStats, string)
	}
	panels := []panel{
		{"Throughput overhead: baseline throughput / throughput", func(r *result) (ratioStats, string) { return r.Overhead, r.OverheadVerdict }},
		{"CPU overhead: CPU time per login / the baseline's", func(r *result) (ratioStats, string) { return r.CPUOverhead, r.CPUVerdict }},
	}
	var attack []*result
	for _, r := range rep.Results {
		if r.Workload == wlAttack {
			attack = append(attack, r)
		}
	}
	if len(workloads) == 0 || len(systems) == 0 {
		panels = nil
	}

	const (
		left, right, head       = 64.0, 24.0, 104.0
		panelTop, plotH         = 30.0, 220.0
		panelGap                = 44.0
		barW, barGap, groupGap  = 22.0, 4.0, 28.0
		lineH                   = 16.0
		attackLabelW, attackRow = 190.0, 22.0
	)
	groupW := float64(len(workloads))*(barW+barGap) - barGap
	// At least wide enough for the header's lines; the groups spread
	// over the width.
	plotW := max(float64(len(systems))*(groupW+groupGap)+groupGap, 840)
	spread := (plotW - float64(len(systems))*groupW) / float64(len(systems)+1)
	panelH := panelTop + plotH + panelGap
	noteLines := wrap(failureNote(rep), int(plotW/5.6))
	noteH := 0.0
	if len(panels) > 0 {
		noteH = float64(len(noteLines))*lineH + 24 + 20 // the legend, and the note on below 1.00x
	}
	attackH := 0.0
	if len(attack) > 0 {
		attackH = 50 + float64(len(attack))*attackRow + 50
	}
	width, height := left+plotW+right, head+float64(len(panels))*panelH+noteH+attackH+12
	esc := func(s string) string {
		var b strings.Builder
		_ = xml.EscapeText(&b, []byte(s))
		return b.String()
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	text := func(x, y float64, attrs, s string) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f"%s>%s</text>`+"\n", x, y, attrs, esc(s))
	}
	text(left, 20, ` font-size="15" font-weight="bold"`, "Login overhead of lockout versus no protection")
	text(left, 38, ` fill="#555555"`, command(rep.Opts))
	text(left, 54, ` fill="#555555"`, fmt.Sprintf("%d clients, PBKDF2 %d iterations (~%s), %d CPUs (%s), load %s at the start, %s at the end",
		rep.Opts.clients, rep.Iterations, rep.Opts.cost, rep.Machine.CPUs, rep.Machine.Model, rep.LoadBefore, rep.LoadAfter))
	text(left, 74, "", fmt.Sprintf("Bar: the median of the ratios of %d %s of runs (baseline and configuration back to back, %s each); whisker: their interquartile range.",
		rep.Opts.rounds, plural(rep.Opts.rounds, "pair", "pairs"), rep.Opts.duration/time.Duration(rep.Opts.rounds)))
	text(left, 90, "", fmt.Sprintf(`Quoted only from at least %d pairs of runs of at least %s, with an interquartile range of at most %.0f%% of the median; otherwise a grey "too short" or "too noisy".`,
		minPairs, minRunTime, 100*maxSpread))
	for pi, p := range panels {
		top := head + float64(pi)*panelH
		hi := 1.2
		for _, r := range rep.Results {
			if st, why := p.stats(r); st.N > 0 && why == "" {
				hi = max(hi, st.P75*1.1, st.Median*1.15)
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
		y := func(v float64) float64 { return y0 - min(v, hi)/hi*plotH }
		text(left, top+panelTop-10, ` font-weight="bold"`, p.title)
		for v := 0.0; v <= hi+1e-9; v += step {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd"/>`+"\n", left, y(v), left+plotW, y(v))
			text(left-6, y(v)+4, ` text-anchor="end"`, fmt.Sprintf("%.2fx", v))
		}
		rows := map[[2]string]*result{}
		for _, r := range rep.Results {
			rows[[2]string{r.System, r.Workload}] = r
		}
		for gi, s := range systems {
			x0 := left + spread + float64(gi)*(groupW+spread)
			for wi, wl := range workloads {
				r := rows[[2]string{s, wl}]
				if r == nil {
					continue
				}
				st, why := p.stats(r)
				x := x0 + float64(wi)*(barW+barGap)
				cx := x + barW/2
				if st.N == 0 || why != "" {
					if why == "" {
						why = "no pairs"
					}
					// No number: a grey mark saying why.
					// A band over the whole plot's height, so that it
					// cannot be read as a value.
					fmt.Fprintf(&b, `<rect class="unquoted" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#eeeeee"><title>%s</title></rect>`+"\n",
						x, y0-plotH, barW, plotH, esc(fmt.Sprintf("%s, %s: not quoted, %s", labels[s], wl, why)))
					// The workload's colour, as a strip on the axis.
					fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="4" fill="%s"/>`+"\n", x, y0-4, barW, workloadColor(wl))
					fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" transform="rotate(-90 %.1f %.1f)" fill="#888888" font-size="11">%s</text>`+"\n",
						cx+4, y0-8, cx+4, y0-8, esc(chartVerdict(st, why)))
					continue
				}
				fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n",
					x, y(st.Median), barW, y0-y(st.Median), workloadColor(wl),
					esc(fmt.Sprintf("%s, %s: median %.2fx of %d pairs, IQR %.2f–%.2f, min %.2f, max %.2f", labels[s], wl, st.Median, st.N, st.P25, st.P75, st.Min, st.Max)))
				fmt.Fprintf(&b, `<path d="M%.1f %.1fH%.1fM%.1f %.1fV%.1fM%.1f %.1fH%.1f" stroke="#222222" fill="none"/>`+"\n",
					cx-5, y(st.P75), cx+5, cx, y(st.P75), y(st.P25), cx-5, y(st.P25), cx+5)
				text(cx, min(y(st.P75), y(st.Median))-4, ` text-anchor="middle" font-size="11"`, fmt.Sprintf("%.2f", st.Median))
			}
			text(x0+groupW/2, y0+16, ` text-anchor="middle"`, shortLabel(s))
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d62728" stroke-dasharray="6 4"/>`+"\n", left, y(1), left+plotW, y(1))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333333"/>`+"\n", left, y0, left+plotW, y0)
	}
	yy := head + float64(len(panels))*panelH - panelGap + 44
	if len(panels) > 0 {
		lx := left
		for _, wl := range workloads {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/>`+"\n", lx, yy-10, workloadColor(wl))
			text(lx+16, yy, "", wl)
			lx += 100
		}
		text(lx, yy, ` fill="#d62728"`, "- - - baseline (1.00x)")
		yy += 24
		for i, line := range noteLines {
			text(left, yy+float64(i)*lineH, "", line)
		}
		yy += noteH - 24
	}
	if len(attack) > 0 {
		writeAttack(&b, attack, left, yy+14, plotW, attackLabelW, attackRow, rep.Opts, esc)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// writeAttack draws the attack's result: per configuration, the password
// checks admitted on the attacked account, on a logarithmic axis, against
// the limit.
func writeAttack(b *strings.Builder, attack []*result, left, top, plotW, labelW, rowH float64, o options, esc func(string) string) {
	hiV := float64(limit)
	for _, r := range attack {
		hiV = max(hiV, float64(r.Admitted))
	}
	decades := max(1, math.Ceil(math.Log10(hiV*1.5)))
	x0, w := left+labelW, plotW-labelW-40
	// log10(1+v): 0 at the axis, and 1 apart from it.
	x := func(v float64) float64 {
		return x0 + math.Log10(1+max(v, 0))/math.Log10(1+math.Pow(10, decades))*w
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-weight="bold">%s</text>`+"\n", left, top+12,
		esc(fmt.Sprintf("Attack: password checks admitted on one account, %d guessers for %s (limit %d; logarithmic scale from 0)", o.guessers, o.attackDuration, limit)))
	y0 := top + 36
	for d := -1.0; d <= decades; d++ {
		v := 0.0
		if d >= 0 {
			v = math.Pow(10, d)
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd"/>`+"\n", x(v), y0, x(v), y0+float64(len(attack))*rowH)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(v), y0+float64(len(attack))*rowH+14, strconv.FormatFloat(v, 'f', 0, 64))
	}
	for i, r := range attack {
		y := y0 + float64(i)*rowH
		color := "#59a14f"
		if r.Admitted > limit {
			color = "#e15759"
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", left, y+rowH/2+4, esc(labels[r.System]))
		fmt.Fprintf(b, `<rect class="attack" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n",
			x0, y+3, max(x(float64(r.Admitted))-x0, 1), rowH-6, color, esc(fmt.Sprintf("%s: %d admitted", labels[r.System], r.Admitted)))
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-weight="bold">%d</text>`+"\n", max(x(float64(r.Admitted)), x0+1)+5, y+rowH/2+4, r.Admitted)
	}
	lx := x(limit)
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d62728" stroke-dasharray="6 4"/>`+"\n", lx, y0-4, lx, y0+float64(len(attack))*rowH)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="#d62728" font-size="11">limit %d</text>`+"\n", lx+4, y0-4, limit)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="#555555">%s</text>`+"\n", left, y0+float64(len(attack))*rowH+32,
		esc(fmt.Sprintf("green: at most the limit reached the password check; red: more. Lockout's promise: at most %d per key, however many guess at once.", limit)))
}

// wrap breaks s into lines of at most n bytes, at spaces.
func wrap(s string, n int) []string {
	var lines []string
	line := ""
	for f := range strings.FieldsSeq(s) {
		if line != "" && len(line)+1+len(f) > n {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += f
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// shortLabel is a system's name under its bars.
func shortLabel(s string) string {
	if s == sysCheckCount {
		return "check-then-count"
	}
	return labels[s]
}
