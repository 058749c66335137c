package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// The rule that decides whether an overhead may be quoted. A configuration
// is measured in pairs: a run of the baseline and a run of the
// configuration, back to back under the same workload (A B, then B A in the
// next round, so that neither always goes first). Each pair gives one
// ratio; the overhead is the median of the ratios, and its spread their
// interquartile range (IQR, from the 25th to the 75th percentile). The
// median is quoted only when
//
//   - there are at least minPairs pairs, each of whose runs was measured for
//     at least minRunTime ("too short" otherwise), and
//   - the IQR is at most maxSpread of the median ("too noisy" otherwise).
//
// With minPairs pairs and an IQR of maxSpread, the median itself is known
// to within about a third of the IQR (for roughly normal ratios, the
// median's standard error is 1.25 σ/√n and the IQR is 1.35 σ): about ±3%.
const (
	minPairs   = 5
	minRunTime = time.Second
	maxSpread  = 0.10
)

// ratioStats summarises the ratios of a configuration's pairs.
type ratioStats struct {
	N                          int
	Median, P25, P75, Min, Max float64
	// Ratios are the pairs' ratios, in the order they were measured.
	Ratios []float64
}

// summarize returns the statistics of ratios; the zero value when there
// are none. Non-positive ratios (a run without a measurement) are left out.
func summarize(ratios []float64) ratioStats {
	var v []float64
	for _, r := range ratios {
		if r > 0 && !math.IsInf(r, 0) && !math.IsNaN(r) {
			v = append(v, r)
		}
	}
	if len(v) == 0 {
		return ratioStats{}
	}
	st := ratioStats{N: len(v), Ratios: slices.Clone(v)}
	slices.Sort(v)
	st.Min, st.Max = v[0], v[len(v)-1]
	st.Median, st.P25, st.P75 = quantile(v, 0.5), quantile(v, 0.25), quantile(v, 0.75)
	return st
}

// quantile returns the q-quantile (0 <= q <= 1) of the sorted, non-empty
// v, interpolating linearly between the closest ranks (the method of R's
// default type 7, and of NumPy's default).
func quantile(v []float64, q float64) float64 {
	h := q * float64(len(v)-1)
	lo := int(math.Floor(h))
	hi := min(lo+1, len(v)-1)
	return v[lo] + (h-float64(lo))*(v[hi]-v[lo])
}

// Spread returns the IQR relative to the median, 0 without ratios.
func (s ratioStats) Spread() float64 {
	if s.N == 0 || s.Median <= 0 {
		return 0
	}
	return (s.P75 - s.P25) / s.Median
}

// verdict says whether a ratio may be quoted: the empty string when it
// may, and otherwise why not, starting with "too short" or "too noisy".
// runTime is the measured time of the shortest run of the pairs.
func verdict(s ratioStats, runTime time.Duration) string {
	switch {
	case s.N < minPairs:
		return fmt.Sprintf("too short: %d %s (quoted from %d)", s.N, plural(s.N, "pair", "pairs"), minPairs)
	case runTime < minRunTime:
		return fmt.Sprintf("too short: %s runs (quoted from %s)", runTime.Round(10*time.Millisecond), minRunTime)
	case s.Spread() > maxSpread:
		return fmt.Sprintf("too noisy: IQR %.0f%% of the median (quoted up to %.0f%%)", 100*s.Spread(), 100*maxSpread)
	}
	return ""
}

// shortVerdict is the first words of a verdict: "too short" or "too noisy".
func shortVerdict(v string) string {
	if len(v) > 9 {
		return v[:9]
	}
	return v
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// ruleText states the quoting rule, for the outputs.
func ruleText() string {
	return fmt.Sprintf("An overhead is quoted only from at least %d pairs of runs of at least %s each, "+
		"and when the interquartile range of the pairs' ratios is at most %.0f%% of their median; "+
		"otherwise the table says \"too short\" or \"too noisy\" instead of a number.",
		minPairs, minRunTime, 100*maxSpread)
}
