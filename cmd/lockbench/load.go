package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// The workloads, as -workloads takes them.
const (
	wlSuccess  = "success"
	wlMixed    = "mixed"
	wlFailures = "failures"
	wlAttack   = "attack"
)

var allWorkloads = []string{wlSuccess, wlMixed, wlFailures, wlAttack}

// failureNames is how many usernames failures are spread over: so many
// that no username nears the limit within a cell.
const failureNames = 1_000_000

// credentials is one login request.
type credentials struct {
	user, password, ip string
}

// generator makes the requests of one client.
type generator struct {
	workload string
	accounts int
	client   int // the client's (guesser's) number
	rng      *rand.Rand
	n        int
}

func newGenerator(workload string, accounts, client int, seed uint64) *generator {
	return &generator{workload: workload, accounts: accounts, client: client, rng: rand.New(rand.NewPCG(seed, uint64(client)))}
}

// randomIP returns an address of 10.0.0.0/8: clients from everywhere, so
// that no IP nears the limit.
func (g *generator) randomIP() string {
	v := g.rng.Uint32()
	return netip.AddrFrom4([4]byte{10, byte(v >> 16), byte(v >> 8), byte(v)}).String()
}

func (g *generator) next() credentials {
	g.n++
	switch g.workload {
	case wlAttack:
		// Guesser g, from an address of its own (198.18.0.0/15, the
		// benchmarking range), guessing the victim's password.
		ip := netip.AddrFrom4([4]byte{198, 18, byte(g.client >> 8), byte(g.client)})
		return credentials{victim, fmt.Sprintf("guess-%d-%d", g.client, g.n), ip.String()}
	case wlSuccess:
		return g.success()
	case wlMixed:
		if g.rng.IntN(10) == 0 {
			return g.failure()
		}
		return g.success()
	default:
		return g.failure()
	}
}

func (g *generator) success() credentials {
	i := g.rng.IntN(g.accounts)
	return credentials{userName(i), password(i), g.randomIP()}
}

func (g *generator) failure() credentials {
	i := g.rng.IntN(failureNames)
	return credentials{userName(i), fmt.Sprintf("wrong-%d", g.rng.Uint32()), g.randomIP()}
}

// sample is what the clients of one cell saw.
type sample struct {
	elapsed   time.Duration
	latencies []time.Duration // sorted
	// Responses by kind: 200, 401, refused (429 or 403), anything else
	// (including transport errors).
	ok, failed, refused, errors int64
	firstError                  string
}

func (s *sample) logins() int64 { return s.ok + s.failed + s.refused + s.errors }

// merge adds o's requests to s.
func (s *sample) merge(o *sample) {
	s.add(o)
	slices.Sort(s.latencies)
}

// add adds o's requests to s, leaving s.latencies unsorted.
func (s *sample) add(o *sample) {
	s.elapsed += o.elapsed
	s.latencies = append(s.latencies, o.latencies...)
	s.ok += o.ok
	s.failed += o.failed
	s.refused += o.refused
	s.errors += o.errors
	if s.firstError == "" {
		s.firstError = o.firstError
	}
}

// percentile returns the p-th percentile (0 < p <= 100) of the sorted
// latencies, by the nearest-rank method.
func (s *sample) percentile(p float64) time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	rank := int(float64(len(s.latencies))*p/100+0.999999) - 1
	return s.latencies[min(max(rank, 0), len(s.latencies)-1)]
}

// newHTTPClient returns a client that keeps a connection per concurrent
// request open.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     2 * time.Minute,
			DisableCompression:  true,
		},
		Timeout: 30 * time.Second,
	}
}

// drive runs clients concurrent clients against url for d, each sending
// its generator's requests one after the other, and returns what they saw.
// All clients start together; requests under way at the end are finished
// and counted.
func drive(ctx context.Context, hc *http.Client, target string, workload string, clients, accounts int, d time.Duration, seed uint64) *sample {
	results := make([]sample, clients) // per client; elapsed unused
	start := make(chan struct{})
	var wg sync.WaitGroup
	var deadline time.Time
	for c := range clients {
		wg.Go(func() {
			r := &results[c]
			g := newGenerator(workload, accounts, c, seed)
			r.latencies = make([]time.Duration, 0, 1024)
			<-start
			for ctx.Err() == nil && time.Now().Before(deadline) {
				cr := g.next()
				body := url.Values{"username": {cr.user}, "password": {cr.password}}.Encode()
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(body))
				if err != nil {
					r.errors++
					r.firstError = err.Error()
					return
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("X-Forwarded-For", cr.ip)
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				r.latencies = append(r.latencies, time.Since(t0))
				switch {
				case err != nil:
					r.errors++
					if r.firstError == "" {
						r.firstError = err.Error()
					}
				case resp.StatusCode == http.StatusOK:
					r.ok++
				case resp.StatusCode == http.StatusUnauthorized:
					r.failed++
				case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusForbidden:
					r.refused++
				default:
					r.errors++
					if r.firstError == "" {
						r.firstError = resp.Status
					}
				}
			}
		})
	}
	begin := time.Now()
	deadline = begin.Add(d)
	close(start)
	wg.Wait()
	s := &sample{elapsed: time.Since(begin)}
	for i := range results {
		s.add(&results[i])
	}
	slices.Sort(s.latencies)
	return s
}
