package memcache

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/internal/testserver"
)

// TestEvictionCheck runs a store made by NewServers over servers started
// with and without -M: a server that may evict keys is refused (its calls
// fail with ErrEvicting, so the policy decides in its fallback) unless
// Options.AllowEviction, and one with -M is used as usual.
func TestEvictionCheck(t *testing.T) {
	parallel(t)
	tests := []struct {
		name  string
		args  []string
		allow bool
		want  error
	}{
		{"-M", []string{"-M"}, false, nil},
		{"evicting", []string{"-m", "64"}, false, ErrEvicting},
		{"evicting, allowed", []string{"-m", "64"}, true, nil},
		// -C: no CAS, which Expire, the removal at zero and the restart
		// of an expired counter need (every cas fails: each call spent
		// 100 rounds of gets and cas, then failed).
		{"-M -C (no CAS)", []string{"-M", "-C"}, false, errNoCAS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := testserver.Memcached(t, tt.args...)
			s := newStore(t, []string{srv.Addr}, &Options{Timeout: testTimeout, AllowEviction: tt.allow})
			defer s.Close()
			for range 2 { // the second call answers from what the first learned
				_, err := backend.Do1(t.Context(), s, backend.IncrOp("k", 1, time.Minute))
				if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
					t.Fatalf("Incr: %v, want %v", err, tt.want)
				}
			}
		})
	}
}

func TestParseEvictions(t *testing.T) {
	tests := []struct {
		in      string
		on, err bool
	}{
		{"STAT maxbytes 67108864\r\nSTAT evictions on\r\nSTAT growth_factor 1.25\r\nEND\r\n", true, false},
		{"STAT evictions off\r\nEND\r\n", false, false},
		{"STAT maxbytes 1\r\nEND\r\n", false, true}, // no evictions line: a proxy
		{"ERROR\r\n", false, true},
		{"SERVER_ERROR busy\r\n", false, true},
		{"STAT evictions off\r\n", false, true},                               // cut short
		{"STAT evictions off\r\nSTAT cas_enabled no\r\nEND\r\n", false, true}, // -C
		{"STAT evictions off\r\nSTAT cas_enabled yes\r\nEND\r\n", false, false},
	}
	for _, tt := range tests {
		on, err := parseEvictions(bufio.NewReader(strings.NewReader(tt.in)))
		if on != tt.on || (err != nil) != tt.err {
			t.Errorf("parseEvictions(%q) = %v, %v; want %v, error %v", tt.in, on, err, tt.on, tt.err)
		}
	}
}

// FuzzParseEvictions feeds parseEvictions any answer: it never panics, and
// says "on" only for an answer that has an evictions line other than
// "off" and ends with END.
func FuzzParseEvictions(f *testing.F) {
	f.Add("STAT evictions on\r\nEND\r\n")
	f.Add("STAT evictions off\r\nEND\r\n")
	f.Add("END\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		on, err := parseEvictions(bufio.NewReader(strings.NewReader(in)))
		if on && (err != nil || !strings.Contains(in, "STAT evictions ") || !strings.Contains(in, "END")) {
			t.Errorf("parseEvictions(%q) = on, %v", in, err)
		}
	})
}

// TestEvictionRecheck: a server found not to evict is asked again after a
// connection to it broke (it may have restarted without -M), and a
// restart to an evicting server is then refused.
func TestEvictionRecheck(t *testing.T) {
	parallel(t)
	srv := testserver.Memcached(t)
	s := newStore(t, []string{srv.Addr}, &Options{Timeout: testTimeout})
	defer s.Close()
	do(t, s, backend.IncrOp("k", 1, time.Minute))
	e := s.evict.checks[0]
	if !e.ok.Load() {
		t.Fatal("the server with -M is not known to be checked")
	}
	s.dropIdle(io.EOF) // as a call that found its connection broken
	if e.ok.Load() {
		t.Error("after a broken connection, the server is not asked again")
	}
	do(t, s, backend.IncrOp("k", 1, time.Minute)) // asked again: still -M
	if !e.ok.Load() {
		t.Error("asked again, the server with -M is not known to be checked")
	}
}
