package lockouthttp

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
)

// AttemptList is the answer of GET api/attempts: journal records, newest
// first.
type AttemptList struct {
	Records []AttemptRecord `json:"records"`
	// Next is the cursor of the next, older page: pass it as before=. It
	// is empty after the oldest record.
	Next string `json:"next"`
}

// AttemptRecord is one journal record, in JSON: an attempt's outcome, a
// lockout, or an operator's unlock or reset.
type AttemptRecord struct {
	// ID is the record's ID in the journal, opaque: a cursor for the
	// next page (before=).
	ID string `json:"id"`
	// Time is when the attempt, lockout or operator action happened.
	Time time.Time `json:"time"`
	// Outcome is "success", "failure", "refused", "lockout", "unlock" or
	// "reset"; Reason says why an attempt was refused ("locked",
	// "capacity", "denylisted", "unavailable").
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
	// Rule and Key name the rule key that refused, locked or was
	// unlocked, e.g. "username" and "u=alice".
	Rule string `json:"rule,omitempty"`
	Key  string `json:"key,omitempty"`
	// Username (canonical), IP and UserAgent describe the attempt, or the
	// subject an operator unlocked; keyed hashes when the journal keeps
	// no plain values (lockout.JournalConfig.HashKey).
	Username  string            `json:"username,omitempty"`
	IP        string            `json:"ip,omitempty"`
	UserAgent string            `json:"user_agent,omitempty"`
	Fields    map[string]string `json:"fields,omitempty"`
	// Fallback is set when the in-process fallback decided, because the
	// store was failing.
	Fallback bool `json:"fallback,omitempty"`
	// LockoutSeconds is a lockout's length in whole seconds, rounded up;
	// -1 until unlocked.
	LockoutSeconds int64 `json:"lockout_seconds,omitempty"`
	// Operator and Via say who made an unlock or reset, as the
	// authorizer named them, and through which interface ("http" for
	// the page, "api" for the JSON API).
	Operator string `json:"operator,omitempty"`
	Via      string `json:"via,omitempty"`
}

func attemptRecord(r backend.Record) AttemptRecord {
	a := AttemptRecord{
		ID: r.ID, Time: r.Time, Outcome: r.Outcome, Reason: r.Reason,
		Rule: r.Rule, Key: r.Key, Username: r.Username, IP: r.IP, UserAgent: r.UserAgent,
		Fields: r.Fields, Fallback: r.Fallback, Operator: r.Operator, Via: r.Via,
	}
	if r.Outcome == "lockout" {
		if r.Duration < 0 {
			a.LockoutSeconds = -1
		} else {
			a.LockoutSeconds = seconds(r.Duration)
		}
	}
	return a
}

// outcomes are the journal's outcomes, as api/attempts filters them.
var outcomes = []string{"success", "failure", "refused", "lockout", "unlock", "reset"}

// badQuery is the error of parseAttemptQuery: the message for the client.
type badQuery string

func (e badQuery) Error() string { return string(e) }

// parseAttemptQuery checks an attempts query's parameters. limit may be
// empty (the default page size).
func parseAttemptQuery(username, ip, outcome, before, limit string) (lockout.AttemptQuery, error) {
	q := lockout.AttemptQuery{Username: username, IP: ip, Outcome: outcome, Before: before}
	if outcome != "" && !slices.Contains(outcomes, outcome) {
		return q, badQuery("outcome: want one of " + strings.Join(outcomes, ", "))
	}
	if limit != "" {
		n, err := strconv.Atoi(limit)
		if err != nil || n <= 0 {
			return q, badQuery("limit: want a positive integer")
		}
		q.Limit = min(n, backend.MaxQueryLimit)
	}
	return q, nil
}

// attempts reads one page of the journal.
func (o *Operator) attempts(ctx context.Context, q lockout.AttemptQuery) (AttemptList, error) {
	recs, next, err := o.p.Attempts(ctx, q)
	if err != nil {
		return AttemptList{}, err
	}
	list := AttemptList{Records: make([]AttemptRecord, len(recs)), Next: next}
	for i, r := range recs {
		list.Records[i] = attemptRecord(r)
	}
	return list, nil
}

// pageReads bounds the journal reads of one attempts table of the page,
// as lockOriginPages does a lock's origin: each read scans up to a
// store's bound (10,000 records on memory and Redis, where a record cut
// to 2 KiB is up to about 2.8 KB read), so that a page view reads at most
// a few tens of megabytes of journal per table.
const pageReads = 4

// pageOfAttempts is attempts for the page: a read that finds no record
// but has more to read goes on, up to pageReads reads, so that a table
// is not empty while matching records lie a little further back (a
// store's read scans a bounded number of records).
func (o *Operator) pageOfAttempts(ctx context.Context, q lockout.AttemptQuery) (AttemptList, error) {
	for range pageReads - 1 {
		list, err := o.attempts(ctx, q)
		if err != nil || len(list.Records) > 0 || list.Next == "" {
			return list, err
		}
		q.Before = list.Next
	}
	return o.attempts(ctx, q)
}

func (o *Operator) apiAttempts(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	q, err := parseAttemptQuery(v.Get("username"), v.Get("ip"), v.Get("outcome"), v.Get("before"), v.Get("limit"))
	if err != nil {
		apiError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	list, err := o.attempts(r.Context(), q)
	switch {
	case errors.Is(err, lockout.ErrNoJournal):
		apiError(w, http.StatusNotImplemented, "no_journal", "this policy keeps no journal of attempts (lockout.Config.Journal)")
	case errors.Is(err, lockout.ErrInvalidSubject):
		apiError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, backend.ErrInvalid):
		apiError(w, http.StatusBadRequest, "bad_request", "before: not a cursor of this journal")
	case err != nil:
		apiError(w, http.StatusServiceUnavailable, "backend", err.Error())
	default:
		writeJSON(w, http.StatusOK, list)
	}
}

// lockOriginPages and lockOriginPage bound the journal records read to find
// the lockout record of one lock.
const (
	lockOriginPages = 4
	lockOriginPage  = 250
)

// lockOrigin returns the lockout record that started the lock of rule
// status s, found in the journal among the lockouts of the subject
// (username, ip) the status was asked for; nil when there is no journal,
// or the record is gone or was dropped.
func (o *Operator) lockOrigin(ctx context.Context, username, ip string, s lockout.RuleStatus) *AttemptRecord {
	// Filter by the fields the rule key holds, as the subject gave them:
	// the lockout's attempt had the same. An IP keyed by prefix (IPv6 /64)
	// may have been another address of the prefix: match the key only.
	q := lockout.AttemptQuery{Outcome: "lockout", Limit: lockOriginPage}
	filtered := true // the filters select the key's records only
	for part := range strings.SplitSeq(s.Key, ",") {
		tag, value, _ := strings.Cut(part, "=")
		switch {
		case tag == "u":
			q.Username = username
		case tag == "ip" && !strings.Contains(value, "/"):
			q.IP = ip
		default:
			filtered = false
		}
	}
	now := time.Now()
	for range lockOriginPages {
		recs, next, err := o.p.Attempts(ctx, q)
		if err != nil {
			return nil
		}
		for _, r := range recs {
			// A journal that keeps hashes keeps no key: the filters
			// stand for it when they select the key's records only;
			// otherwise (an IPv6 prefix, a user agent, a custom field)
			// the lockout may be another key's of the rule, and the
			// origin is unknown.
			if r.Key == "" && r.Rule == s.Rule && !filtered {
				return nil
			}
			if r.Rule != s.Rule || (r.Key != s.Key && r.Key != "") {
				continue
			}
			// The newest lockout of the key is the lock's, unless its
			// record was dropped: then it is an older lock's, over.
			if r.Duration > 0 && r.Time.Add(r.Duration).Before(now.Add(-time.Second)) {
				return nil
			}
			a := attemptRecord(r)
			return &a
		}
		if next == "" {
			return nil
		}
		q.Before = next
	}
	return nil
}

// Page sizes of the page's attempt tables.
const (
	pageAttempts    = 50
	subjectAttempts = 20
)

// The page's query parameters for its attempts table. The subject's
// (username, ip) are the status lookup's.
const (
	paramAttemptsUser = "attempts_username"
	paramAttemptsIP   = "attempts_ip"
	paramOutcome      = "outcome"
	paramBefore       = "before"
)

// attemptsView is the page's recent attempts section.
type attemptsView struct {
	User, IP, Outcome string
	Outcomes          []string
	Records           []AttemptRecord
	Err               string
	// Older and Newest link to the next page and back to the first.
	Older, Newest string
	// Clear links to the unfiltered attempts, when filtered.
	Clear string
	// Stats are the journal's counts (lockout.Policy.JournalStats), shown
	// when records were dropped or refusals not recorded: the table is
	// then not every attempt.
	Stats lockout.JournalStats
}

// pageAttemptsView reads the attempts the page's query asks for.
func (o *Operator) pageAttemptsView(ctx context.Context, v url.Values) (attemptsView, bool) {
	av := attemptsView{
		Stats:    o.p.JournalStats(),
		User:     v.Get(paramAttemptsUser),
		IP:       v.Get(paramAttemptsIP),
		Outcome:  v.Get(paramOutcome),
		Outcomes: outcomes,
	}
	before := v.Get(paramBefore)
	q, err := parseAttemptQuery(av.User, av.IP, av.Outcome, before, strconv.Itoa(pageAttempts))
	var list AttemptList
	if err == nil {
		list, err = o.pageOfAttempts(ctx, q)
	}
	switch {
	case errors.Is(err, lockout.ErrNoJournal):
		return av, false
	case errors.As(err, new(badQuery)):
		av.Err = "Unknown outcome."
	case errors.Is(err, lockout.ErrInvalidSubject):
		av.Err = "That username or IP address cannot be looked up: " + err.Error()
	case errors.Is(err, backend.ErrInvalid):
		av.Err = "That page of the journal no longer exists."
	case err != nil:
		av.Err = "The journal's store failed: " + err.Error()
	}
	av.Records = list.Records
	link := func(before string, keys ...string) string {
		l := url.Values{}
		for _, k := range keys {
			if s := v.Get(k); s != "" {
				l.Set(k, s)
			}
		}
		if before != "" {
			l.Set(paramBefore, before)
		}
		return "./?" + l.Encode() + "#attempts"
	}
	all := []string{"username", "ip", paramAttemptsUser, paramAttemptsIP, paramOutcome}
	if list.Next != "" {
		av.Older = link(list.Next, all...)
	}
	if before != "" {
		av.Newest = link("", all...)
	}
	if av.User != "" || av.IP != "" || av.Outcome != "" {
		av.Clear = link("", "username", "ip")
	}
	return av, true
}

// subjectAttemptsLink is the page's link to all the attempts of a subject.
func subjectAttemptsLink(username, ip string) string {
	l := url.Values{}
	if username != "" {
		l.Set("username", username)
		l.Set(paramAttemptsUser, username)
	}
	if ip != "" {
		l.Set("ip", ip)
		l.Set(paramAttemptsIP, ip)
	}
	return "./?" + l.Encode() + "#attempts"
}
