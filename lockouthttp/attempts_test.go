package lockouthttp_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/lockouthttp"
)

const clientB = "203.0.113.9"

// newJournalEnv is an operator environment whose policy keeps a journal in
// its memory store.
func newJournalEnv(t *testing.T) *operatorEnv {
	t.Helper()
	return newOperatorEnvWith(t, nil, &lockout.JournalConfig{}, lockouthttp.OperatorConfig{Authorize: isAdmin})
}

// waitRecords polls the journal until q selects at least n records (the
// journal writes in the background), and returns them.
func waitRecords(t *testing.T, p *lockout.Policy, q lockout.AttemptQuery, n int) []backend.Record {
	t.Helper()
	if q.Limit == 0 {
		q.Limit = backend.MaxQueryLimit
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, _, err := p.Attempts(bg, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal: %d records for %+v after 10 s, want %d: %+v", len(recs), q, n, recs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// attempt makes one attempt of s and reports its outcome.
func attempt(t *testing.T, p *lockout.Policy, s lockout.Subject, ok bool) {
	t.Helper()
	a, err := p.Allow(bg, s)
	if err != nil {
		return // refused: journaled as such
	}
	if ok {
		a.Success(bg)
	} else {
		a.Failure(bg)
	}
}

func (e *operatorEnv) attempts(query string) lockouthttp.AttemptList {
	e.t.Helper()
	var list lockouthttp.AttemptList
	e.api("GET", "/admin/lockout/api/attempts"+query, "", "", 200, &list)
	return list
}

func outcomesOf(recs []lockouthttp.AttemptRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Outcome)
	}
	return out
}

func TestOperatorAttemptsAPI(t *testing.T) {
	e := newJournalEnv(t)
	alice := lockout.Subject{Username: "alice", IP: clientA, UserAgent: "curl/8.5"}
	bob := lockout.Subject{Username: "bob", IP: clientB, UserAgent: "Firefox"}
	attempt(t, e.p, bob, true)    // success
	attempt(t, e.p, alice, false) // failure
	attempt(t, e.p, alice, false) // failure, lockout
	attempt(t, e.p, alice, true)  // refused
	attempt(t, e.p, bob, false)   // failure
	const total = 6
	waitRecords(t, e.p, lockout.AttemptQuery{}, total)

	all := e.attempts("")
	if want := []string{"failure", "refused", "lockout", "failure", "failure", "success"}; !slices.Equal(outcomesOf(all.Records), want) || all.Next != "" {
		t.Fatalf("all: %v next %q, want %v newest first", outcomesOf(all.Records), all.Next, want)
	}
	for i := 1; i < len(all.Records); i++ {
		if all.Records[i].Time.After(all.Records[i-1].Time) {
			t.Errorf("record %d is newer than record %d", i, i-1)
		}
	}
	lk := all.Records[2]
	if lk.Rule != "username" || lk.Key != "u=alice" || lk.LockoutSeconds != 60 || lk.IP != clientA || lk.UserAgent != "curl/8.5" || lk.Username != "alice" {
		t.Errorf("lockout record %+v", lk)
	}
	if r := all.Records[1]; r.Reason != "locked" || r.Rule != "username" {
		t.Errorf("refused record %+v", r)
	}

	for _, tt := range []struct {
		name, query string
		want        []string
	}{
		{"username", "?username=alice", []string{"refused", "lockout", "failure", "failure"}},
		{"username, another case", "?username=ALICE", []string{"refused", "lockout", "failure", "failure"}},
		{"ip", "?ip=" + clientB, []string{"failure", "success"}},
		{"outcome", "?outcome=failure", []string{"failure", "failure", "failure"}},
		{"username and outcome", "?username=bob&outcome=failure", []string{"failure"}},
		{"ip and outcome", "?ip=" + clientA + "&outcome=lockout", []string{"lockout"}},
		{"no match", "?username=carol", nil},
		{"limit", "?limit=2", []string{"failure", "refused"}},
		{"limit above the maximum", "?limit=5000", []string{"failure", "refused", "lockout", "failure", "failure", "success"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := e.attempts(tt.query)
			if !slices.Equal(outcomesOf(got.Records), tt.want) {
				t.Errorf("%s: %v, want %v", tt.query, outcomesOf(got.Records), tt.want)
			}
			if got.Records == nil {
				t.Error("records is null, want []")
			}
		})
	}

	// Paging: pages of two, following next, give every record once.
	for _, limit := range []int{1, 2, 4, 6} {
		var ids []string
		next := ""
		for pages := 0; ; pages++ {
			if pages > total {
				t.Fatalf("limit %d: more pages than records", limit)
			}
			got := e.attempts(fmt.Sprintf("?limit=%d&before=%s", limit, url.QueryEscape(next)))
			if len(got.Records) > limit {
				t.Fatalf("limit %d: a page of %d", limit, len(got.Records))
			}
			for _, r := range got.Records {
				ids = append(ids, r.ID)
			}
			if next = got.Next; next == "" {
				break
			}
		}
		var want []string
		for _, r := range all.Records {
			want = append(want, r.ID)
		}
		if !slices.Equal(ids, want) {
			t.Errorf("limit %d: paged %v, want %v", limit, ids, want)
		}
	}
	// Paging with a filter.
	first := e.attempts("?username=alice&limit=3")
	if len(first.Records) != 3 || first.Next == "" {
		t.Fatalf("first page %+v", first)
	}
	rest := e.attempts("?username=alice&limit=3&before=" + url.QueryEscape(first.Next))
	if !slices.Equal(outcomesOf(rest.Records), []string{"failure"}) || rest.Next != "" {
		t.Errorf("second page %+v", rest)
	}
}

func TestOperatorAttemptsErrors(t *testing.T) {
	e := newJournalEnv(t)
	for _, tt := range []struct {
		method, query string
		status        int
		code          string
	}{
		{"GET", "?limit=abc", 400, "bad_request"},
		{"GET", "?limit=0", 400, "bad_request"},
		{"GET", "?limit=-3", 400, "bad_request"},
		{"GET", "?limit=1e3", 400, "bad_request"},
		{"GET", "?ip=garbage", 400, "bad_request"},
		{"GET", "?ip=198.51.100.7:80", 400, "bad_request"},
		{"GET", "?username=a%20b", 400, "bad_request"},
		{"GET", "?outcome=admitted", 400, "bad_request"},
		{"GET", "?outcome=%3Cb%3E", 400, "bad_request"},
		{"GET", "?before=not-a-cursor", 400, "bad_request"},
		{"POST", "", 405, "method_not_allowed"},
	} {
		t.Run(tt.method+tt.query, func(t *testing.T) {
			var apiErr struct{ Error, Message string }
			e.api(tt.method, "/admin/lockout/api/attempts"+tt.query, "", "", tt.status, &apiErr)
			if apiErr.Error != tt.code || apiErr.Message == "" {
				t.Errorf("%+v, want error %q with a message", apiErr, tt.code)
			}
		})
	}
	// Unauthorized: 403, whatever the query.
	if resp, body := e.do("GET", "/admin/lockout/api/attempts", "", ""); resp.StatusCode != 403 {
		t.Errorf("without authorization: %d %s", resp.StatusCode, body)
	}
}

func TestOperatorNoJournal(t *testing.T) {
	e := newOperatorEnv(t, nil, lockouthttp.OperatorConfig{Authorize: isAdmin})
	e.lock("alice", clientA)
	var apiErr struct{ Error, Message string }
	e.api("GET", "/admin/lockout/api/attempts?username=alice", "", "", http.StatusNotImplemented, &apiErr)
	if apiErr.Error != "no_journal" || !strings.Contains(apiErr.Message, "journal") {
		t.Errorf("%+v", apiErr)
	}
	// Bad input is still bad input.
	e.api("GET", "/admin/lockout/api/attempts?limit=x", "", "", http.StatusBadRequest, &apiErr)

	if u := ruleState(t, e.status("alice", ""), "username"); !u.Locked || u.LockedBy != nil || u.LockedSince != nil {
		t.Errorf("status without a journal %+v", u)
	}
	resp, body := e.do("GET", "/admin/lockout/?username=alice", "", "", adminHeader, "yes")
	if resp.StatusCode != 200 || !strings.Contains(body, "keeps no journal") || strings.Contains(body, "Locked by the attempt of") || !strings.Contains(body, "u=alice") {
		t.Errorf("page: %d\n%s", resp.StatusCode, body)
	}
	// Actions work, and say who made them in the log only.
	e.api("POST", "/admin/lockout/api/unlock", "application/json", `{"username":"alice"}`, 200, nil)
}

// TestOperatorActionsJournal checks that every unlock and reset, through the
// page and through the API, is journaled with the operator the authorizer
// named and the interface used.
func TestOperatorActionsJournal(t *testing.T) {
	e := newJournalEnv(t)
	for _, tt := range []struct {
		name     string
		path     string // under /admin/lockout/
		byKey    bool
		operator string
		outcome  string
		via      string
	}{
		{"page unlock", "unlock", false, "olga", "unlock", "http"},
		{"page reset", "reset", false, "pat", "reset", "http"},
		{"page unlock-key", "unlock-key", true, "quinn", "unlock", "http"},
		{"api unlock", "api/unlock", false, "rosa", "unlock", "api"},
		{"api reset", "api/reset", false, "sam", "reset", "api"},
		{"api unlock-key", "api/unlock-key", true, "tess", "unlock", "api"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			user := "user-" + tt.operator
			lock(t, e.p, user, "")
			form := url.Values{"username": {user}}
			if tt.byKey {
				var locks lockouthttp.LockList
				e.api("GET", "/admin/lockout/api/locks", "", "", 200, &locks)
				i := slices.IndexFunc(locks.Locks, func(l lockouthttp.LockState) bool { return l.Subject == "u="+user })
				if i < 0 {
					t.Fatalf("%s not among the locks %+v", user, locks)
				}
				form = url.Values{"key": {locks.Locks[i].Key}}
			}
			if tt.path == "reset" {
				form.Set("confirm", "yes") // the page asks first
			}
			resp, body := e.do("POST", "/admin/lockout/"+tt.path, "application/x-www-form-urlencoded", form.Encode(),
				adminHeader, "yes", operatorHeader, tt.operator, "Sec-Fetch-Site", "same-origin")
			if resp.StatusCode != 200 && resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if ruleState(t, e.status(user, ""), "username").Locked {
				t.Fatal("still locked")
			}
			recs := waitRecords(t, e.p, lockout.AttemptQuery{Username: user, Outcome: tt.outcome}, 1)
			r := recs[0]
			if r.Operator != tt.operator || r.Via != tt.via || r.Username != user {
				t.Errorf("record %+v, want operator %q via %q for %s", r, tt.operator, tt.via, user)
			}
			if tt.byKey && (r.Rule != "username" || r.Key != "u="+user) {
				t.Errorf("unlock-key record %+v", r)
			}
			// The page lists it, naming the operator.
			_, page := e.do("GET", "/admin/lockout/?outcome="+tt.outcome, "", "", adminHeader, "yes")
			if !strings.Contains(page, ">"+tt.operator+" <span class=\"dim\">("+tt.via+")</span>") {
				t.Errorf("the page does not show %s (%s):\n%s", tt.operator, tt.via, page)
			}
		})
	}
}

func TestOperatorStatusLockOrigin(t *testing.T) {
	e := newJournalEnv(t)
	alice := lockout.Subject{Username: "alice", IP: clientA, UserAgent: "Mozilla/5.0 (first)"}
	before := time.Now()
	attempt(t, e.p, alice, false)
	alice.UserAgent = "Mozilla/5.0 (second)"
	alice.IP = clientB
	attempt(t, e.p, alice, false) // locks alice: from clientB, the second agent
	waitRecords(t, e.p, lockout.AttemptQuery{Outcome: "lockout"}, 1)

	u := ruleState(t, e.status("alice", ""), "username")
	if !u.Locked || u.LockedBy == nil || u.LockedSince == nil {
		t.Fatalf("status %+v, want the lock's origin", u)
	}
	if by := u.LockedBy; by.IP != clientB || by.UserAgent != "Mozilla/5.0 (second)" || by.Outcome != "lockout" || by.Rule != "username" {
		t.Errorf("locked by %+v", by)
	}
	if s := *u.LockedSince; s.Before(before.Add(-time.Millisecond)) || s.After(time.Now()) {
		t.Errorf("locked since %v, want after %v", s, before)
	}
	// Unlocked rules have none.
	if ip := ruleState(t, e.status("", clientB), "ip"); ip.Locked || ip.LockedBy != nil {
		t.Errorf("ip rule %+v", ip)
	}

	_, page := e.do("GET", "/admin/lockout/?username=alice", "", "", adminHeader, "yes")
	// Values a client chose are cut to a width on the page, whole in a
	// title: a long username or user agent cannot push the table aside.
	for _, want := range []string{"Locked by the attempt of", `<span class="cut" title="alice">alice</span> from ` + clientB,
		`<span class="dim cut" title="Mozilla/5.0 (second)">Mozilla/5.0 (second)</span>`, "Recent attempts of this subject",
		`<td class="cut" title="alice">alice</td>`, "<td class=\"o-lockout\">lockout</td>"} {
		if !strings.Contains(page, want) {
			t.Errorf("subject view lacks %q:\n%s", want, page)
		}
	}
	// After an unlock and a new lock from clientA, the origin is the new one.
	e.api("POST", "/admin/lockout/api/unlock", "application/json", `{"username":"alice"}`, 200, nil)
	alice.IP, alice.UserAgent = clientA, "third"
	attempt(t, e.p, alice, false)
	attempt(t, e.p, alice, false)
	waitRecords(t, e.p, lockout.AttemptQuery{Outcome: "lockout"}, 2)
	if by := ruleState(t, e.status("alice", ""), "username").LockedBy; by == nil || by.IP != clientA || by.UserAgent != "third" {
		t.Errorf("after a new lock: locked by %+v", by)
	}
}

// TestOperatorAttemptsPage checks the recent attempts section: filters,
// the Older link, and escaping.
func TestOperatorAttemptsPage(t *testing.T) {
	e := newJournalEnv(t)
	const n = 60
	for i := range n {
		attempt(t, e.p, lockout.Subject{Username: fmt.Sprintf("user%02d", i), IP: fmt.Sprintf("192.0.2.%d", i+1)}, false)
	}
	waitRecords(t, e.p, lockout.AttemptQuery{}, n)

	get := func(path string) string {
		t.Helper()
		resp, body := e.do("GET", "/admin/lockout/"+strings.TrimPrefix(path, "./"), "", "", adminHeader, "yes", operatorHeader, "<b>op</b>")
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		return body
	}
	rows := regexp.MustCompile(`<td class="o-failure">`)
	older := regexp.MustCompile(`<a href="(\./\?[^"]*before=[^"]*)">Older</a>`)

	page := get("")
	if got := len(rows.FindAllString(page, -1)); got != 50 {
		t.Errorf("first page: %d rows, want 50", got)
	}
	if !strings.Contains(page, "user59") || strings.Contains(page, "user09<") {
		t.Error("first page: want the newest 50")
	}
	if !strings.Contains(page, "Operator: <b>&lt;b&gt;op&lt;/b&gt;</b>") {
		t.Error("the page does not name the operator, escaped")
	}
	m := older.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no Older link:\n%s", page)
	}
	link := strings.ReplaceAll(m[1], "&amp;", "&")
	page = get(link)
	if got := len(rows.FindAllString(page, -1)); got != 10 || !strings.Contains(page, "user00") || strings.Contains(page, "user10<") {
		t.Errorf("second page: %d rows", got)
	}
	if older.MatchString(page) || !strings.Contains(page, ">Newest</a>") {
		t.Error("second page: want a Newest link and no Older one")
	}

	for _, tt := range []struct {
		name, query string
		rows        int
		want        string
	}{
		{"username", "?attempts_username=user07", 1, "192.0.2.8"},
		{"ip", "?attempts_ip=192.0.2.8", 1, "user07"},
		{"outcome", "?outcome=lockout", 0, "No attempts found."},
		{"bad outcome", "?outcome=nope", 0, "Unknown outcome."},
		{"bad ip", "?attempts_ip=nope", 0, "cannot be looked up"},
		{"bad cursor", "?before=nope", 0, "no longer exists"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			page := get(tt.query)
			if got := len(rows.FindAllString(page, -1)); got != tt.rows || !strings.Contains(page, tt.want) {
				t.Errorf("%s: %d rows, want %d and %q:\n%s", tt.query, got, tt.rows, tt.want, page)
			}
		})
	}
	// The outcome select keeps its choice.
	if page := get("?outcome=failure"); !strings.Contains(page, "<option selected>failure</option>") {
		t.Error("the outcome select lost its choice")
	}
}

// TestOperatorAttemptsEscaping checks that hostile usernames and user agents
// are escaped in the attempt tables and the lock's origin.
func TestOperatorAttemptsEscaping(t *testing.T) {
	e := newJournalEnv(t)
	const (
		user = `<script>alert(1)</script>`
		ua   = `"><img src=x onerror=alert(2)>`
	)
	s := lockout.Subject{Username: user, IP: clientA, UserAgent: ua}
	attempt(t, e.p, s, false)
	attempt(t, e.p, s, false) // lockout
	waitRecords(t, e.p, lockout.AttemptQuery{Outcome: "lockout"}, 1)

	for _, path := range []string{
		"",
		"?" + url.Values{"username": {user}}.Encode(),
		"?" + url.Values{"attempts_username": {user}, "attempts_ip": {clientA}}.Encode(),
	} {
		_, page := e.do("GET", "/admin/lockout/"+path, "", "", adminHeader, "yes")
		for _, bad := range []string{"<script>", "<img", `"><img`} {
			if strings.Contains(page, bad) {
				t.Errorf("GET %s: the page holds %q unescaped", path, bad)
			}
		}
		if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") || !strings.Contains(page, "&lt;img src=x onerror=alert(2)&gt;") {
			t.Errorf("GET %s: the hostile values are not shown escaped:\n%s", path, page)
		}
	}
	// And the JSON API gives them back as they were.
	list := e.attempts("?outcome=lockout")
	if len(list.Records) != 1 || list.Records[0].Username != user || list.Records[0].UserAgent != ua {
		t.Errorf("api %+v", list)
	}
}

// TestOperatorLockOriginHashed: a journal that keeps hashes keeps no rule
// key. A lock's origin is found by the username and the address where
// they make the key; for an IPv6 prefix, whose lockout another address of
// another key may have made, it is unknown rather than another's.
func TestOperatorLockOriginHashed(t *testing.T) {
	e := newOperatorEnvWith(t, nil, &lockout.JournalConfig{HashKey: []byte("0123456789abcdef")}, lockouthttp.OperatorConfig{Authorize: isAdmin})
	for i := range 10 { // locks the /64
		attempt(t, e.p, lockout.Subject{Username: fmt.Sprint("v6-", i), IP: "2001:db8:1::5"}, false)
	}
	for i := range 10 { // locks 192.0.2.77, later
		attempt(t, e.p, lockout.Subject{Username: fmt.Sprint("v4-", i), IP: "192.0.2.77"}, false)
	}
	attempt(t, e.p, lockout.Subject{Username: "alice", IP: "192.0.2.1"}, false)
	attempt(t, e.p, lockout.Subject{Username: "alice", IP: "192.0.2.2"}, false) // locks alice
	waitRecords(t, e.p, lockout.AttemptQuery{Outcome: "lockout"}, 3)

	for _, tc := range []struct {
		username, ip, rule string
		wantIP             string // the origin's, hashed; "": unknown
	}{
		{"", "2001:db8:1::5", "ip", ""},
		{"", "192.0.2.77", "ip", "192.0.2.77"},
		{"alice", "", "username", "192.0.2.2"},
	} {
		st := ruleState(t, e.status(tc.username, tc.ip), tc.rule)
		if !st.Locked {
			t.Fatalf("%s %s: %+v, want locked", tc.username, tc.ip, st)
		}
		switch {
		case tc.wantIP == "" && st.LockedBy != nil:
			t.Errorf("%s %s: locked by %+v, want unknown", tc.username, tc.ip, st.LockedBy)
		case tc.wantIP != "" && st.LockedBy == nil:
			t.Errorf("%s %s: origin unknown", tc.username, tc.ip)
		case tc.wantIP != "" && st.LockedBy.IP == tc.wantIP:
			t.Errorf("%s %s: the origin's IP is %q, in clear, want its hash", tc.username, tc.ip, st.LockedBy.IP)
		}
	}
	// The hashed origin is the lock's own attempt.
	recs := waitRecords(t, e.p, lockout.AttemptQuery{IP: "192.0.2.77", Outcome: "lockout"}, 1)
	if by := ruleState(t, e.status("", "192.0.2.77"), "ip").LockedBy; by == nil || by.IP != recs[0].IP {
		t.Errorf("192.0.2.77 locked by %+v, want the record %+v", by, recs[0])
	}
}

// TestOperatorAttemptsFarBack: the memory store's read of the journal
// scans at most 10,000 records. With 25,000 records of others after
// alice's, the page still finds hers, and her lock's origin.
func TestOperatorAttemptsFarBack(t *testing.T) {
	e := newJournalEnv(t)
	alice := lockout.Subject{Username: "alice", IP: clientA, UserAgent: "alice's browser"}
	attempt(t, e.p, alice, false)
	attempt(t, e.p, alice, false) // locks alice
	for i := range 25_000 {
		attempt(t, e.p, lockout.Subject{Username: fmt.Sprint("other", i), IP: fmt.Sprintf("10.0.%d.%d", i>>8, i&255)}, false)
	}
	if err := e.p.SyncJournal(bg); err != nil {
		t.Fatal(err)
	}
	// A read of the store alone finds nothing of alice's: the bound this
	// test is about.
	if recs, next, err := e.p.Attempts(bg, lockout.AttemptQuery{Username: "alice"}); err != nil || len(recs) != 0 || next == "" {
		t.Fatalf("one read: %d records, next %q, %v; want none and a cursor (the store's scan bound)", len(recs), next, err)
	}
	_, page := e.do("GET", "/admin/lockout/?username=alice", "", "", adminHeader, "yes")
	if n := strings.Count(page, "alice&#39;s browser"); n < 3 { // her two failures' rows and the lock's origin
		t.Errorf("the subject view shows alice's browser %d times, want her 2 attempts and the lock's origin:\n%s", n, page)
	}
	if strings.Contains(page, "not found in the journal") || strings.Contains(page, "No attempts found.") {
		t.Errorf("the subject view misses alice's records:\n%s", page)
	}
	_, page = e.do("GET", "/admin/lockout/?attempts_username=alice", "", "", adminHeader, "yes")
	if strings.Contains(page, "No attempts found.") {
		t.Errorf("the recent attempts section misses alice's records:\n%s", page)
	}
}

// TestOperatorJournalIncomplete: when records were dropped or refusals
// not recorded, the attempts section says the table is not every
// attempt, with the counts; otherwise it says nothing.
func TestOperatorJournalIncomplete(t *testing.T) {
	e := newOperatorEnvWith(t, nil, &lockout.JournalConfig{RefusedPerSecond: 0.001, RefusedBurst: 1}, lockouthttp.OperatorConfig{Authorize: isAdmin})
	alice := lockout.Subject{Username: "alice", IP: clientA}
	attempt(t, e.p, alice, false)
	attempt(t, e.p, alice, false) // locks alice
	if err := e.p.SyncJournal(bg); err != nil {
		t.Fatal(err)
	}
	if _, page := e.do("GET", "/admin/lockout/", "", "", adminHeader, "yes"); strings.Contains(page, "Not every attempt is here") {
		t.Errorf("the page says attempts are missing before any is:\n%s", page)
	}
	for range 5 {
		if _, err := e.p.Allow(bg, alice); !errors.Is(err, lockout.ErrLocked) {
			t.Fatalf("alice: %v, want locked", err)
		}
	}
	if err := e.p.SyncJournal(bg); err != nil {
		t.Fatal(err)
	}
	_, page := e.do("GET", "/admin/lockout/", "", "", adminHeader, "yes")
	if want := "0 records were dropped (the journal's queue was full, its store failed, or the policy was closed) and 4 refused attempts were not recorded"; !strings.Contains(page, want) {
		t.Errorf("the page lacks %q:\n%s", want, page)
	}
}
