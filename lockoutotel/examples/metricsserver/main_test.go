package main

import (
	"bufio"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestLockoutCounted runs the server, locks alice out with wrong
// passwords, scrapes /metrics and finds the lockout and the decisions
// counted.
func TestLockoutCounted(t *testing.T) {
	srv, err := newServer(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()

	login := func(password string) int {
		t.Helper()
		resp, err := http.PostForm(ts.URL+"/login", url.Values{"username": {"alice"}, "password": {password}})
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for i, tc := range []struct {
		password string
		status   int
	}{
		{"wonderland", http.StatusOK},
		{"guess1", http.StatusUnauthorized},
		{"guess2", http.StatusUnauthorized},
		{"guess3", http.StatusUnauthorized}, // locks alice out
		{"wonderland", http.StatusTooManyRequests},
	} {
		if got := login(tc.password); got != tc.status {
			t.Fatalf("login %d: status %d, want %d", i, got, tc.status)
		}
	}

	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	samples := map[string]string{} // the series, without the scope labels: the value
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		line := sc.Text()
		if !strings.HasPrefix(line, "lockout_") {
			continue
		}
		series, value, _ := strings.Cut(line, " ")
		samples[withoutScope(series)] = value
	}
	for _, want := range []struct{ series, value string }{
		{`lockout_lockouts_total{lockout_fallback="false",lockout_rule="username"}`, "1"},
		{`lockout_decisions_total{lockout_fallback="false",lockout_outcome="admitted"}`, "4"},
		{`lockout_decisions_total{lockout_fallback="false",lockout_outcome="success"}`, "1"},
		{`lockout_decisions_total{lockout_fallback="false",lockout_outcome="failure"}`, "3"},
		{`lockout_decisions_total{lockout_fallback="false",lockout_outcome="refused",lockout_reason="locked",lockout_rule="username"}`, "1"},
		{`lockout_decision_duration_seconds_count{lockout_outcome="admitted"}`, "4"},
	} {
		if got, ok := samples[want.series]; got != want.value {
			t.Errorf("%s = %q (found: %v), want %s", want.series, got, ok, want.value)
		}
	}
	if t.Failed() {
		t.Logf("scraped: %v", samples)
	}
}

// withoutScope removes the otel_scope_* labels from a series.
func withoutScope(series string) string {
	name, labels, ok := strings.Cut(series, "{")
	if !ok {
		return series
	}
	var kept []string
	for l := range strings.SplitSeq(strings.TrimSuffix(labels, "}"), ",") {
		if !strings.HasPrefix(l, "otel_scope_") {
			kept = append(kept, l)
		}
	}
	if len(kept) == 0 {
		return name
	}
	return name + "{" + strings.Join(kept, ",") + "}"
}
