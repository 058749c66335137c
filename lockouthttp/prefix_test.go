package lockouthttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/backend/bolt"
	redisstore "github.com/go-lockout/lockout/backend/redis"
	"github.com/go-lockout/lockout/internal/testserver"
	"github.com/go-lockout/lockout/lockouthttp"
)

// listerStores are the stores that can list keys, each made fresh for a
// test: the operator's api/locks works on them.
var listerStores = []struct {
	name string
	new  func(t *testing.T) backend.Backend
}{
	{"memory", func(t *testing.T) backend.Backend { return newStore(t) }},
	{"bolt", func(t *testing.T) backend.Backend {
		s, err := bolt.Open(filepath.Join(t.TempDir(), "lockout.db"), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
	{"redis", func(t *testing.T) backend.Backend {
		srv := testserver.Redis(t)
		c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
		t.Cleanup(func() { c.Close() })
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		s, err := redisstore.New(ctx, c, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

// TestOperatorPrefixIsolation mounts the operator handlers of two policies
// over one store, where one policy's prefix begins the other's ("p" and
// "p:l", "q" and "q:l:x"): each lists only its own locks, and an
// unlock-key of the other's lock is a 400 that leaves that lock in place.
func TestOperatorPrefixIsolation(t *testing.T) {
	for _, st := range listerStores {
		t.Run(st.name, func(t *testing.T) {
			for _, pair := range [][2]string{{"p", "p:l"}, {"q", "q:l:x"}} {
				store := st.new(t)
				envs := make([]*operatorEnv, 2)
				for i, prefix := range pair {
					r := lockout.ByUsername(2)
					r.Schedule = lockout.Fixed(time.Minute)
					p := newPolicy(t, store, lockout.Config{Rules: []lockout.Rule{r, lockout.ByIP(10)}, Prefix: prefix, LockCacheTTL: lockout.NoLockCache})
					srv := httptest.NewServer(http.StripPrefix("/admin/lockout", lockouthttp.NewOperator(p, lockouthttp.OperatorConfig{Authorize: isAdmin})))
					t.Cleanup(srv.Close)
					envs[i] = &operatorEnv{t, p, srv}
					envs[i].lock("alice", clientA) // the same subject in both
				}
				keys := make([]string, 2)
				for i, e := range envs {
					var locks lockouthttp.LockList
					e.api("GET", "/admin/lockout/api/locks", "", "", 200, &locks)
					if len(locks.Locks) != 1 || !strings.HasPrefix(locks.Locks[0].Key, pair[i]+":l:username:{") {
						t.Fatalf("policy %q lists %+v, want its own lock only", pair[i], locks)
					}
					keys[i] = locks.Locks[0].Key
				}
				for i, e := range envs {
					other := keys[1-i]
					var ae struct{ Error string }
					e.api("POST", "/admin/lockout/api/unlock-key?"+url.Values{"key": {other}}.Encode(), "", "", 400, &ae)
					if ae.Error != "bad_request" {
						t.Errorf("policy %q: unlock-key of %q: %+v, want bad_request", pair[i], other, ae)
					}
					if !ruleState(t, envs[1-i].status("alice", ""), "username").Locked {
						t.Fatalf("policy %q lifted policy %q's lock %q", pair[i], pair[1-i], other)
					}
				}
				// Each lifts its own, and only its own.
				envs[0].api("POST", "/admin/lockout/api/unlock-key?"+url.Values{"key": {keys[0]}}.Encode(), "", "", 200, nil)
				if ruleState(t, envs[0].status("alice", ""), "username").Locked || !ruleState(t, envs[1].status("alice", ""), "username").Locked {
					t.Errorf("after policy %q lifted its own lock: %+v, %+v", pair[0], envs[0].status("alice", ""), envs[1].status("alice", ""))
				}
			}
		})
	}
}
