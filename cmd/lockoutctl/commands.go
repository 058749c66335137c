package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend"
)

// session is an open store and the policy over it.
type session struct {
	store  *opened
	policy *lockout.Policy
	rules  []toolRule
	// hashedNoKey is set when the journal keeps keyed hashes of usernames
	// and addresses (JournalConfig.HashKey) and the tool was not given
	// the key: the policy then journals under a random key of its own.
	hashedNoKey bool
}

// open opens the store, learns the rules and builds the policy. ctx
// carries the operator.
func (a *app) open(ctx context.Context) (*session, error) {
	st, err := a.openStore(ctx, a.store)
	if err != nil {
		return nil, err
	}
	rules, err := a.resolveRules(ctx, st.Backend)
	if err != nil {
		st.Close()
		return nil, err
	}
	level := slog.LevelWarn
	if a.verbose {
		level = slog.LevelInfo
	}
	cfg := lockout.Config{
		Prefix: a.prefix,
		// The tool decides no attempt: no fallback, no lock cache.
		Outage:       lockout.FailClosed,
		LockCacheTTL: lockout.NoLockCache,
		Logger:       slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level})),
	}
	var devices []string
	for _, r := range rules {
		if !r.device {
			cfg.Rules = append(cfg.Rules, r.Rule)
			continue
		}
		if devices = append(devices, r.Name); len(devices) > 1 {
			// A policy has one rule of known devices: the service renamed
			// it (DeviceConfig.Rule.Name). The last found is the one.
			fmt.Fprintf(a.stderr, "lockoutctl: the store holds keys of several rules of known devices (%s): this run acts on %s only; lift the others' locks with unlock -key\n", strings.Join(devices, ", "), r.Name)
		}
		// The tool issues and verifies no device token: any key will do.
		key := make([]byte, lockout.MinSecretLen)
		rand.Read(key)
		cfg.Devices = &lockout.DeviceConfig{Keys: [][]byte{key}, Rule: lockout.Rule{Name: r.Name}}
	}
	// Unlocks and resets are journaled, with the operator, where the store
	// keeps a journal; the attempts command reads it.
	if _, ok := st.Backend.(backend.Journal); ok {
		jc := &lockout.JournalConfig{}
		if k := os.Getenv("LOCKOUT_JOURNAL_HASH_KEY"); k != "" {
			if jc.HashKey, err = hex.DecodeString(k); err != nil {
				st.Close()
				return nil, usageErr("LOCKOUT_JOURNAL_HASH_KEY: want the service's JournalConfig.HashKey in hex: %v", err)
			}
		}
		cfg.Journal = jc
	}
	p, err := lockout.New(st.Backend, cfg)
	if err != nil {
		st.Close()
		return nil, usageErr("%v", err)
	}
	sess := &session{store: st, policy: p, rules: rules}
	if cfg.Journal != nil && cfg.Journal.HashKey == nil && journalHashed(ctx, p) {
		// The service's journal keeps hashes: an unlock journaled here
		// must not write a username or an address in the clear. A random
		// key keeps this run's records hashed, matching nothing.
		p.Close()
		cfg.Journal.HashKey = make([]byte, 32)
		rand.Read(cfg.Journal.HashKey)
		if sess.policy, err = lockout.New(st.Backend, cfg); err != nil {
			st.Close()
			return nil, usageErr("%v", err)
		}
		sess.hashedNoKey = true
		fmt.Fprintln(a.stderr, "lockoutctl: the journal keeps keyed hashes of usernames and addresses (JournalConfig.HashKey), and LOCKOUT_JOURNAL_HASH_KEY is not set: this run's records hold hashes that match no one, and attempts cannot filter by -username or -ip")
	}
	return sess, nil
}

// journalHashed reports whether p's journal holds keyed hashes
// (JournalConfig.HashKey) among its newest records: an address of 32
// lower-case hex digits, which no address is (IPv4 has dots, IPv6 colons).
// Usernames are not looked at: a real one may be 32 hex digits (a review),
// and the records this tool hashes under a random key hold one.
func journalHashed(ctx context.Context, p *lockout.Policy) bool {
	recs, _, err := p.Attempts(ctx, lockout.AttemptQuery{Limit: 100})
	if err != nil {
		return false
	}
	isHash := func(v string) bool {
		return len(v) == 32 && !strings.ContainsFunc(v, func(r rune) bool { return (r < '0' || r > '9') && (r < 'a' || r > 'f') })
	}
	for _, r := range recs {
		if isHash(r.IP) {
			return true
		}
	}
	return false
}

func (s *session) Close() error {
	return errors.Join(s.policy.Close(), s.store.Close())
}

// withSession runs f with an open session, the operator in its context,
// and -timeout.
func (a *app) withSession(ctx context.Context, f func(context.Context, *session) error) (err error) {
	if a.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
		defer cancel()
	}
	ctx = lockout.WithOperator(ctx, a.operator, "cli")
	s, err := a.open(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.Close()) }()
	return f(ctx, s)
}

// seconds formats a duration for JSON: seconds, -1 for forever.
func seconds(d time.Duration) float64 {
	if d == lockout.Forever {
		return -1
	}
	return d.Seconds()
}

// human formats a remaining time for the table.
func human(d time.Duration) string {
	if d == lockout.Forever {
		return "forever"
	}
	if d >= time.Second {
		d = d.Round(time.Second)
	}
	return d.String()
}

func (a *app) writeJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) table() *tabwriter.Writer {
	return tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
}

// statusRow is one rule key of a subject.
type statusRow struct {
	Rule     string `json:"rule"`
	Key      string `json:"key"`
	Attempts *int64 `json:"attempts,omitempty"`
	// Limit is absent when the tool does not know it (-rules name:limit).
	Limit           *int    `json:"limit,omitempty"`
	WindowRemaining float64 `json:"window_remaining_s"`
	Locked          bool    `json:"locked"`
	LockRemaining   float64 `json:"lock_remaining_s"`
	Lockouts        *int64  `json:"lockouts,omitempty"`
	// StoreKey is the lock's key, for unlock -key.
	StoreKey string `json:"store_key,omitempty"`

	window, lock time.Duration
}

func (s *session) limit(rule string) *int {
	for _, r := range s.rules {
		if r.Name == rule && r.limitKnown {
			n := r.Limit
			return &n
		}
	}
	return nil
}

func (s *session) row(st lockout.RuleStatus) statusRow {
	r := statusRow{
		Rule: st.Rule, Key: st.Key, Attempts: &st.Attempts, Limit: s.limit(st.Rule),
		WindowRemaining: seconds(st.WindowRemaining), Locked: st.Locked, Lockouts: &st.Lockouts,
		window: st.WindowRemaining,
	}
	if st.Locked {
		r.LockRemaining, r.lock = seconds(st.LockRemaining), st.LockRemaining
	}
	return r
}

// touches reports whether rule r is keyed by some field sub gives.
func (s *session) touches(r toolRule, sub lockout.Subject) bool {
	for _, f := range r.Fields {
		if fieldGiven(sub, f) {
			return true
		}
	}
	return false
}

// subjectJSON is a subject, for JSON.
type subjectJSON struct {
	Username  string            `json:"username,omitempty"`
	IP        string            `json:"ip,omitempty"`
	UserAgent string            `json:"user_agent,omitempty"`
	Fields    map[string]string `json:"fields,omitempty"`
}

func jsonSubject(s lockout.Subject) subjectJSON {
	return subjectJSON{s.Username, s.IP, s.UserAgent, s.Fields}
}

// partial lists, for each rule keyed by some of the subject's fields and
// by others it lacks, the flags that would reach its keys.
func (s *session) partial(sub lockout.Subject) map[string][]string {
	out := map[string][]string{}
	for _, r := range s.rules {
		var has, missing int
		var flags []string
		for _, f := range r.Fields {
			if fieldGiven(sub, f) {
				has++
			} else {
				missing++
				flags = append(flags, flagOf(f))
			}
		}
		if has > 0 && missing > 0 {
			out[r.Name] = flags
		}
	}
	return out
}

func fieldGiven(s lockout.Subject, f lockout.Field) bool {
	switch f {
	case lockout.Username:
		return s.Username != ""
	case lockout.IP:
		return s.IP != ""
	case lockout.UserAgent:
		return s.UserAgent != ""
	}
	return s.Fields[string(f)] != ""
}

func flagOf(f lockout.Field) string {
	switch f {
	case lockout.Username:
		return "-username NAME"
	case lockout.IP:
		return "-ip ADDR"
	case lockout.UserAgent:
		return "-user-agent UA"
	}
	return "-field " + string(f) + "=VALUE"
}

// hashed is the form a long value takes in a key (keys.go).
func hashed(v string) string {
	sum := sha256.Sum256([]byte(v))
	return "~" + base64.RawURLEncoding.EncodeToString(sum[:])[:23]
}

// holds reports whether a key's subject holds every field sub gives that
// the key's rule is keyed by, and at least one of them.
func holds(info lockout.KeyInfo, sub lockout.Subject, canonUser string, ip netip.Addr) bool {
	matched := 0
	for _, f := range info.Subject {
		var want string
		switch {
		case f.Tag == "u":
			want = canonUser
		case f.Tag == "ip":
			if !ip.IsValid() {
				continue
			}
			p, err := netip.ParsePrefix(f.Value)
			if err != nil {
				a, err := netip.ParseAddr(f.Value)
				if err != nil {
					return false
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			if !p.Contains(ip) {
				return false
			}
			matched++
			continue
		case f.Tag == "ua":
			want = sub.UserAgent
		case strings.HasPrefix(f.Tag, "f."):
			want = sub.Fields[f.Tag[2:]]
		}
		if want == "" {
			continue
		}
		if f.Hashed && f.Value != hashed(want) || !f.Hashed && f.Value != want {
			return false
		}
		matched++
	}
	return matched > 0
}

// subjectOf rebuilds the subject of a key, when no value of it is hashed.
func subjectOf(info lockout.KeyInfo) (lockout.Subject, bool) {
	var s lockout.Subject
	for _, f := range info.Subject {
		if f.Hashed {
			return s, false
		}
		switch {
		case f.Tag == "u":
			s.Username = f.Value
		case f.Tag == "ip":
			if p, err := netip.ParsePrefix(f.Value); err == nil {
				s.IP = p.Addr().String() // the prefix's first address keys the same
			} else {
				s.IP = f.Value
			}
		case f.Tag == "ua":
			s.UserAgent = f.Value
		case strings.HasPrefix(f.Tag, "f."):
			if s.Fields == nil {
				s.Fields = map[string]string{}
			}
			s.Fields[f.Tag[2:]] = f.Value
		}
	}
	return s, true
}

// status shows every rule key of the subject: those of the rules keyed by
// the fields given, from Policy.Status, and, where the store can list, the
// locked keys of rules keyed by more fields that hold the subject (alice's
// username+ip locks from every address).
func (a *app) status(ctx context.Context) error {
	sub, err := a.subject()
	if err != nil {
		return err
	}
	return a.withSession(ctx, func(ctx context.Context, s *session) error {
		sts, err := s.policy.Status(ctx, sub)
		if err != nil {
			if errors.Is(err, lockout.ErrInvalidSubject) {
				return usageErr("%v", err)
			}
			return err
		}
		var rows []statusRow
		seen := map[string]bool{}
		for _, st := range sts {
			rows = append(rows, s.row(st))
			seen[st.Rule+":"+st.Key] = true
		}
		var notes []string
		partial := s.partial(sub)
		if len(partial) > 0 {
			if _, ok := s.store.Backend.(backend.Lister); ok {
				more, err := a.moreLocks(ctx, s, sub, partial, seen)
				if err != nil {
					return err
				}
				rows = append(rows, more...)
			} else {
				for _, name := range sortedKeys(partial) {
					notes = append(notes, fmt.Sprintf("rule %s: not shown: %s cannot list keys; add %s to see it", name, s.store.kind, strings.Join(partial[name], " ")))
				}
			}
		}
		if a.json {
			if rows == nil {
				rows = []statusRow{}
			}
			return a.writeJSON(struct {
				Store   string      `json:"store"`
				Prefix  string      `json:"prefix"`
				Subject subjectJSON `json:"subject"`
				Rules   []statusRow `json:"rules"`
				Notes   []string    `json:"notes,omitempty"`
			}{s.store.about, a.prefix, jsonSubject(sub), rows, notes})
		}
		tw := a.table()
		fmt.Fprintln(tw, "RULE\tKEY\tATTEMPTS\tWINDOW LEFT\tLOCKED\tLOCKOUTS")
		for _, r := range rows {
			attempts, lockouts := "?", "?"
			if r.Attempts != nil {
				attempts = fmt.Sprint(*r.Attempts)
				if r.Limit != nil {
					attempts += fmt.Sprintf("/%d", *r.Limit)
				}
			}
			if r.Lockouts != nil {
				lockouts = fmt.Sprint(*r.Lockouts)
			}
			window := "-"
			if r.Attempts != nil && *r.Attempts > 0 {
				window = human(r.window)
			}
			locked := "no"
			if r.Locked {
				locked = human(r.lock) + " left"
				if r.lock == lockout.Forever {
					locked = "until unlocked"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Rule, r.Key, attempts, window, locked, lockouts)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, n := range notes {
			fmt.Fprintln(a.stdout, "note:", n)
		}
		return nil
	})
}

// moreLocks finds the locks of the partial rules that hold sub, with
// their counters where the key's subject can be rebuilt.
func (a *app) moreLocks(ctx context.Context, s *session, sub lockout.Subject, partial map[string][]string, seen map[string]bool) ([]statusRow, error) {
	var canonUser string
	if sub.Username != "" {
		var err error
		if canonUser, err = lockout.CanonicalizeUsername(sub.Username); err != nil {
			return nil, usageErr("-username %q: %v", sub.Username, err)
		}
	}
	var ip netip.Addr
	if sub.IP != "" {
		ip, _ = lockout.ParseIP(sub.IP) // checked by subject()
	}
	var rows []statusRow
	for lk, err := range s.policy.Locks(ctx) {
		if err != nil {
			return nil, err
		}
		if _, ok := partial[lk.Rule]; !ok || !holds(lk.KeyInfo, sub, canonUser, ip) {
			continue
		}
		key := lk.SubjectString()
		if seen[lk.Rule+":"+key] {
			continue
		}
		seen[lk.Rule+":"+key] = true
		row := statusRow{Rule: lk.Rule, Key: key, Limit: s.limit(lk.Rule), Locked: true,
			LockRemaining: seconds(lk.Remaining), lock: lk.Remaining, StoreKey: lk.Key}
		if full, ok := subjectOf(lk.KeyInfo); ok {
			sts, err := s.policy.Status(ctx, full)
			if err != nil {
				return nil, err
			}
			for _, st := range sts {
				if st.Rule == lk.Rule {
					row = s.row(st)
					row.StoreKey = lk.Key
				}
			}
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(x, y statusRow) int {
		return strings.Compare(x.Rule+":"+x.Key, y.Rule+":"+y.Key)
	})
	return rows, nil
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func describe(s lockout.Subject) string {
	var parts []string
	if s.Username != "" {
		parts = append(parts, "username "+s.Username)
	}
	if s.IP != "" {
		parts = append(parts, "ip "+s.IP)
	}
	if s.UserAgent != "" {
		parts = append(parts, fmt.Sprintf("user agent %q", s.UserAgent))
	}
	for _, k := range sortedKeys(s.Fields) {
		parts = append(parts, k+" "+s.Fields[k])
	}
	return strings.Join(parts, ", ")
}

// checkOperator refuses an action without an operator's name: the log
// and the journal of unlocks and resets would not say who acted.
func (a *app) checkOperator() error {
	if strings.TrimSpace(a.operator) == "" {
		return usageErr("-operator: give who acts (the log and the journal name them); $USER when not given")
	}
	return nil
}

func (a *app) unlock(ctx context.Context) error {
	if a.key != "" {
		if a.username != "" || a.ip != "" || a.userAgent != "" || len(a.fields) > 0 {
			return usageErr("unlock: give -key or a subject, not both")
		}
		if err := a.checkOperator(); err != nil {
			return err
		}
		return a.withSession(ctx, func(ctx context.Context, s *session) error {
			// Whether the key is locked, so as not to report a lift that
			// did not happen (a lock that expired, a mistyped key).
			res, err := backend.Do1(ctx, s.store.Backend, backend.ExistsOp(a.key))
			if err != nil {
				return err
			}
			if err := s.policy.UnlockKey(ctx, a.key); err != nil {
				if errors.Is(err, lockout.ErrNotLockKey) {
					return usageErr("%v", err)
				}
				return err
			}
			text := "unlocked " + a.key
			if !res.Found {
				text = a.key + " was not locked (its lock expired or was lifted): nothing to lift"
			}
			return a.done("unlock", text, map[string]any{"key": a.key, "locks_lifted": btoi(res.Found)})
		})
	}
	return a.clear(ctx, "unlock", (*lockout.Policy).UnlockCount)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (a *app) reset(ctx context.Context) error {
	return a.clear(ctx, "reset", func(p *lockout.Policy, ctx context.Context, s lockout.Subject) (int, error) {
		return 0, p.Reset(ctx, s)
	})
}

// done reports a finished action.
func (a *app) done(action, text string, fields map[string]any) error {
	if a.json {
		out := map[string]any{"action": action, "operator": a.operator, "partial": false}
		for k, v := range fields {
			out[k] = v
		}
		return a.writeJSON(out)
	}
	_, err := fmt.Fprintln(a.stdout, text)
	return err
}

// clear runs Unlock or Reset for the subject; f returns how many locks it
// lifted (an unlock's count).
func (a *app) clear(ctx context.Context, action string, f func(*lockout.Policy, context.Context, lockout.Subject) (int, error)) error {
	if err := a.checkOperator(); err != nil {
		return err
	}
	sub, err := a.subject()
	if err != nil {
		return err
	}
	return a.withSession(ctx, func(ctx context.Context, s *session) error {
		what := "lifted every lock that holds " + describe(sub)
		if action == "reset" {
			what = "forgot everything about " + describe(sub) + " (counters, locks, lockout history)"
		}
		partial := s.partial(sub)
		var reached, unreached []string
		for _, r := range s.rules {
			if _, ok := partial[r.Name]; ok {
				unreached = append(unreached, r.Name)
			} else if s.touches(r, sub) {
				reached = append(reached, r.Name)
			}
		}
		if len(reached)+len(unreached) == 0 {
			// Unlock and Reset would do nothing, and succeed: a typo in
			// -rules, or a field no rule counts by, must not read as done.
			return usageErr("%s: no rule is keyed by %s (rules: %s, from -rules and, where the store lists them, its keys under prefix %q): nothing to %s",
				action, describe(sub), ruleNames(s.rules), a.prefix, action)
		}
		fields := map[string]any{"subject": jsonSubject(sub)}
		n, err := f(s.policy, ctx, sub)
		if action == "unlock" {
			// An unlock of a subject that no lock held (a mistyped
			// username) must not read as one that lifted some.
			fields["locks_lifted"] = n
			if n == 0 {
				what = "no lock held " + describe(sub) + ": nothing to lift (its counters were cleared)"
			} else {
				what += fmt.Sprintf(", %d in all", n)
			}
		}
		switch {
		case err == nil:
			return a.done(action, what+" (rules "+strings.Join(append(reached, unreached...), ", ")+")", fields)
		case errors.Is(err, lockout.ErrPartial):
			var b strings.Builder
			fmt.Fprintf(&b, "%s: partial: %s cannot list keys, so the keys of the rules keyed by more fields than given were not reached:\n", action, s.store.kind)
			for _, name := range unreached {
				fmt.Fprintf(&b, "  rule %s: add %s\n", name, strings.Join(partial[name], " "))
			}
			if len(reached) > 0 {
				fmt.Fprintf(&b, "Done for rules %s. ", strings.Join(reached, ", "))
			}
			b.WriteString("Run it again with the missing fields, once for each value the subject was locked with (the service's log names them)")
			if a.json {
				if err := a.writeJSON(map[string]any{"action": action, "operator": a.operator, "subject": jsonSubject(sub), "partial": true,
					"reached_rules": reached, "unreached_rules": unreached, "hint": b.String()}); err != nil {
					return err
				}
			}
			return partialErr(errors.New(b.String()))
		case errors.Is(err, lockout.ErrInvalidSubject):
			return usageErr("%v", err)
		}
		return err
	})
}

func (a *app) resetAll(ctx context.Context) error {
	if err := a.checkOperator(); err != nil {
		return err
	}
	if !a.yes {
		// Asked with the store closed: a bbolt file stays free for its
		// service while the operator thinks, -timeout counts from the
		// answer, and a signal ends the wait. But what can be refused
		// without asking is refused first: the store is opened, looked at
		// and let go.
		st, err := a.openStore(ctx, a.store)
		if err != nil {
			return err
		}
		_, canList := st.Backend.(backend.Lister)
		kind, about := st.kind, st.about
		st.Close()
		if !canList {
			return errCannotList(kind)
		}
		fmt.Fprintf(a.stderr, "This removes every counter, lock and lockout history of the policy with prefix %q in %s; other prefixes are left alone.\nType yes to go on: ",
			a.prefix, about)
		ok, err := a.confirm(ctx)
		if err != nil {
			return fmt.Errorf("reset-all: nothing removed: %w", err)
		}
		if !ok {
			return errors.New("reset-all: not confirmed: nothing removed (-yes skips the question)")
		}
	}
	return a.withSession(ctx, func(ctx context.Context, s *session) error {
		if _, ok := s.store.Backend.(backend.Lister); !ok {
			return errCannotList(s.store.kind)
		}
		n, err := s.policy.ResetAll(ctx)
		if err != nil {
			return err
		}
		return a.done("reset-all", fmt.Sprintf("removed %d keys of prefix %q", n, a.prefix), map[string]any{"prefix": a.prefix, "keys": n})
	})
}

// errCannotList is reset-all's refusal on a store of kind that cannot
// list its keys.
func errCannotList(kind string) error {
	return partialErr(fmt.Errorf("reset-all: %s cannot list keys, so the policy's keys cannot be found: unlock or reset subjects one by one (or flush the server if it holds nothing else)", kind))
}

// confirm reads the operator's answer: whether it is yes. It returns ctx's
// error when ctx ends first (a signal).
func (a *app) confirm(ctx context.Context) (bool, error) {
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(a.stdin).ReadString('\n')
		answer <- line
	}()
	select {
	case line := <-answer:
		ans := strings.ToLower(strings.TrimSpace(line))
		return ans == "yes" || ans == "y", nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// lockRow is one lock, as locks prints it.
type lockRow struct {
	Rule      string            `json:"rule"`
	Subject   map[string]string `json:"subject"`
	Key       string            `json:"key"`
	Remaining float64           `json:"remaining_s"`
	StoreKey  string            `json:"store_key"`

	remaining time.Duration
}

func (a *app) locks(ctx context.Context) error {
	return a.withSession(ctx, func(ctx context.Context, s *session) error {
		if _, ok := s.store.Backend.(backend.Lister); !ok {
			return partialErr(fmt.Errorf("locks: %s cannot list keys: look subjects up with status (every field of a rule: -username and -ip for username+ip)", s.store.kind))
		}
		rows := []lockRow{}
		for lk, err := range s.policy.Locks(ctx) {
			if err != nil {
				return err
			}
			sub := map[string]string{}
			for _, f := range lk.Subject {
				sub[f.Tag] = f.Value
			}
			rows = append(rows, lockRow{Rule: lk.Rule, Subject: sub, Key: lk.SubjectString(), Remaining: seconds(lk.Remaining), StoreKey: lk.Key, remaining: lk.Remaining})
		}
		slices.SortFunc(rows, func(x, y lockRow) int {
			if c := strings.Compare(x.Rule, y.Rule); c != 0 {
				return c
			}
			return strings.Compare(x.Key, y.Key)
		})
		if a.json {
			return a.writeJSON(struct {
				Store  string    `json:"store"`
				Prefix string    `json:"prefix"`
				Locks  []lockRow `json:"locks"`
			}{s.store.about, a.prefix, rows})
		}
		tw := a.table()
		fmt.Fprintln(tw, "RULE\tSUBJECT\tLOCKED FOR\tSTORE KEY")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Rule, r.Key, human(r.remaining), r.StoreKey)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(rows) == 0 {
			fmt.Fprintf(a.stdout, "(no locks under prefix %q)\n", a.prefix)
		}
		return nil
	})
}

// recordRow is a journal record, as attempts prints it.
type recordRow struct {
	ID        string            `json:"id"`
	Time      time.Time         `json:"time"`
	Outcome   string            `json:"outcome"`
	Reason    string            `json:"reason,omitempty"`
	Rule      string            `json:"rule,omitempty"`
	Key       string            `json:"key,omitempty"`
	Username  string            `json:"username,omitempty"`
	IP        string            `json:"ip,omitempty"`
	UserAgent string            `json:"user_agent,omitempty"`
	Fields    map[string]string `json:"fields,omitempty"`
	Fallback  bool              `json:"fallback,omitempty"`
	Duration  *float64          `json:"duration_s,omitempty"`
	Operator  string            `json:"operator,omitempty"`
	Via       string            `json:"via,omitempty"`
}

func (a *app) attempts(ctx context.Context) error {
	switch a.outcome {
	case "", "success", "failure", "refused", "lockout", "unlock", "reset":
	default:
		return usageErr("-outcome %q: want success, failure, refused, lockout, unlock or reset", a.outcome)
	}
	if a.limit < 1 || a.limit > backend.MaxQueryLimit {
		return usageErr("-limit %d: want 1 to %d", a.limit, backend.MaxQueryLimit)
	}
	return a.withSession(ctx, func(ctx context.Context, s *session) error {
		if _, ok := s.store.Backend.(backend.Journal); !ok {
			why := "it keeps no journal of attempts"
			if s.store.kind == "memcached" {
				why = "memcached keeps no journal of attempts (a service on memcached may journal into another store: read that one)"
			}
			return partialErr(fmt.Errorf("attempts: %s: %s", s.store.about, why))
		}
		if s.hashedNoKey && (a.username != "" || a.ip != "") {
			return usageErr("attempts: the journal keeps keyed hashes of usernames and addresses: set LOCKOUT_JOURNAL_HASH_KEY to the service's JournalConfig.HashKey in hex to filter by -username or -ip")
		}
		recs, next, err := s.policy.Attempts(ctx, lockout.AttemptQuery{Username: a.username, IP: a.ip, Outcome: a.outcome, Before: a.before, Limit: a.limit})
		if err != nil {
			if errors.Is(err, lockout.ErrInvalidSubject) || errors.Is(err, backend.ErrInvalid) {
				return usageErr("%v", err)
			}
			return err
		}
		rows := make([]recordRow, len(recs))
		for i, r := range recs {
			rows[i] = recordRow{ID: r.ID, Time: r.Time, Outcome: r.Outcome, Reason: r.Reason, Rule: r.Rule, Key: r.Key,
				Username: r.Username, IP: r.IP, UserAgent: r.UserAgent, Fields: r.Fields, Fallback: r.Fallback, Operator: r.Operator, Via: r.Via}
			if r.Outcome == "lockout" {
				d := seconds(r.Duration)
				if r.Duration == backend.NoExpiry {
					d = -1
				}
				rows[i].Duration = &d
			}
		}
		if a.json {
			return a.writeJSON(struct {
				Records []recordRow `json:"records"`
				Next    string      `json:"next"`
			}{rows, next})
		}
		tw := a.table()
		fmt.Fprintln(tw, "TIME\tOUTCOME\tUSERNAME\tIP\tRULE\tKEY\tDETAIL")
		for i, r := range rows {
			var detail []string
			if r.Reason != "" {
				detail = append(detail, "reason "+printable(r.Reason))
			}
			if r.Duration != nil {
				detail = append(detail, "for "+human(recs[i].Duration))
			}
			if r.Operator != "" || r.Via != "" {
				detail = append(detail, "by "+printable(r.Operator)+" via "+printable(r.Via))
			}
			if r.Fallback {
				detail = append(detail, "fallback")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.Local().Format(time.DateTime), plain(r.Outcome), cell(r.Username), cell(r.IP), dash(plain(r.Rule)), dash(plain(r.Key)), strings.Join(detail, ", "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if next != "" {
			fmt.Fprintf(a.stdout, "more: -before %s\n", next)
		}
		return nil
	})
}

// maxCell is the most runes a table cell shows of a value: one long
// username must not push every row's other columns off the screen.
const maxCell = 40

// cell returns a value a client chose (a username, an address) for a
// table: "-" when empty, else as lockout.QuoteValue shows it (no raw
// control byte reaches the terminal, a look-alike shows its escapes), cut
// to maxCell runes. -json prints the values whole.
func cell(v string) string {
	if v == "" {
		return "-"
	}
	return cut(lockout.QuoteValue(v))
}

// plain returns printable(v) cut to maxCell runes.
func plain(v string) string { return cut(printable(v)) }

// printable returns v as it is, or quoted when it holds a byte that is not
// printable UTF-8: a newline would forge a row, an escape sequence would
// drive the terminal.
func printable(v string) string {
	if !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return !strconv.IsPrint(r) }) {
		return strconv.Quote(v)
	}
	return v
}

func cut(v string) string {
	if utf8.RuneCountInString(v) <= maxCell {
		return v
	}
	r := []rune(v)
	return string(r[:maxCell-1]) + "…"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
