package lockouthttp

import (
	"cmp"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/go-lockout/lockout"
)

// Subject parameters. A subject is given by any of: username, ip,
// user_agent, and field.NAME for the custom field NAME, as a form, a
// query, or a JSON object ({"username": ..., "ip": ..., "user_agent": ...,
// "fields": {"NAME": ...}}).
const (
	paramUsername  = "username"
	paramIP        = "ip"
	paramUserAgent = "user_agent"
	paramField     = "field."
)

// subjectFrom reads a subject from form or query values.
func subjectFrom(v url.Values) lockout.Subject {
	s := lockout.Subject{
		Username:  v.Get(paramUsername),
		IP:        v.Get(paramIP),
		UserAgent: v.Get(paramUserAgent),
	}
	for k := range v {
		if name, ok := strings.CutPrefix(k, paramField); ok && name != "" {
			if val := v.Get(k); val != "" {
				if s.Fields == nil {
					s.Fields = map[string]string{}
				}
				s.Fields[name] = val
			}
		}
	}
	return s
}

// subjectValues is the inverse of subjectFrom: the subject's non-empty
// fields as values.
func subjectValues(s lockout.Subject) url.Values {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set(paramUsername, s.Username)
	set(paramIP, s.IP)
	set(paramUserAgent, s.UserAgent)
	for name, val := range s.Fields {
		set(paramField+name, val)
	}
	return v
}

func emptySubject(s lockout.Subject) bool {
	if s.Username != "" || s.IP != "" || s.UserAgent != "" {
		return false
	}
	for _, v := range s.Fields {
		if v != "" {
			return false
		}
	}
	return true
}

// lookupField is one input of the page's subject lookup.
type lookupField struct {
	Param, Label, Value string
}

// lookupFields returns the inputs of the subject lookup, filled with s:
// the fields the policy's rules use (username and IP without rules),
// then any other field a listed lock's key holds, then any other field s
// gives.
func (o *Operator) lookupFields(s lockout.Subject, locks []LockState) []lookupField {
	var params []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			params = append(params, p)
		}
	}
	rules := o.p.Rules()
	if len(rules) == 0 {
		add(paramUsername)
		add(paramIP)
	}
	for _, r := range rules {
		for _, f := range r.Fields {
			add(fieldParam(f))
		}
	}
	for _, lk := range locks {
		for _, f := range lk.fields {
			add(tagParam(f.Tag))
		}
	}
	for p := range subjectValues(s) {
		add(p)
	}
	// A stable order: username, IP, user agent, then custom fields.
	rank := func(p string) int {
		switch p {
		case paramUsername:
			return 0
		case paramIP:
			return 1
		case paramUserAgent:
			return 2
		}
		return 3
	}
	slices.SortStableFunc(params, func(a, b string) int { return cmp.Compare(rank(a), rank(b)) })
	v := subjectValues(s)
	out := make([]lookupField, len(params))
	for i, p := range params {
		out[i] = lookupField{Param: p, Label: paramLabel(p), Value: v.Get(p)}
	}
	return out
}

func fieldParam(f lockout.Field) string {
	switch f {
	case lockout.Username:
		return paramUsername
	case lockout.IP:
		return paramIP
	case lockout.UserAgent:
		return paramUserAgent
	}
	return paramField + string(f)
}

// tagParam maps a key's field tag ("u", "ip", "ua", "f.NAME") to its
// parameter.
func tagParam(tag string) string {
	switch tag {
	case "u":
		return paramUsername
	case "ip":
		return paramIP
	case "ua":
		return paramUserAgent
	}
	return paramField + strings.TrimPrefix(tag, "f.")
}

func paramLabel(p string) string {
	switch p {
	case paramUsername:
		return "Username"
	case paramIP:
		return "IP address"
	case paramUserAgent:
		return "User agent"
	}
	return strings.TrimPrefix(p, paramField)
}

// LockGroup is the locks of one subject, as the page shows them: every
// lock whose key holds one username; without a username, every lock of
// one IP address (or prefix); without either, the locks of the same
// other fields.
type LockGroup struct {
	// Kind is "user", "ip" or "other"; Label names the subject.
	Kind, Label string
	// Subject is what an unlock of the whole group gives
	// Policy.Unlock. Keys is set instead when the group's value is the
	// hash of a long value, which Unlock cannot match: then each key is
	// unlocked by itself.
	Subject lockout.Subject
	Keys    []string
	Locks   []LockState
	// Longest is the longest remaining lock, in whole seconds, -1 until
	// unlocked.
	Longest int64
}

// UnlockValues is the form of the group's Unlock button.
func (g LockGroup) UnlockValues() []lookupField {
	var out []lookupField
	if g.Keys != nil {
		for _, k := range g.Keys {
			out = append(out, lookupField{Param: "key", Value: k})
		}
		return out
	}
	v := subjectValues(g.Subject)
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		out = append(out, lookupField{Param: k, Value: v.Get(k)})
	}
	return out
}

// UnlockAction is the route of the group's Unlock button.
func (g LockGroup) UnlockAction() string {
	if g.Keys != nil {
		return "unlock-key"
	}
	return "unlock"
}

// StatusLink is the page's link to the status of the group's subject.
func (g LockGroup) StatusLink() string {
	if g.Keys != nil {
		return ""
	}
	return "./?" + subjectValues(g.Subject).Encode()
}

// groupLocks groups locks by subject: users first, by username, then IP
// addresses, then the rest; within a group, by rule and key.
func groupLocks(locks []LockState) []LockGroup {
	byID := map[string]int{}
	var groups []LockGroup
	for _, lk := range locks {
		g := groupOf(lk)
		id := g.Kind + "\x00" + g.Label
		i, ok := byID[id]
		if !ok {
			i = len(groups)
			byID[id] = i
			groups = append(groups, g)
		}
		groups[i].Locks = append(groups[i].Locks, lk)
	}
	rank := map[string]int{"user": 0, "ip": 1, "other": 2}
	slices.SortFunc(groups, func(a, b LockGroup) int {
		return cmp.Or(cmp.Compare(rank[a.Kind], rank[b.Kind]), cmp.Compare(a.Label, b.Label))
	})
	for i := range groups {
		g := &groups[i]
		slices.SortFunc(g.Locks, func(a, b LockState) int {
			return cmp.Or(cmp.Compare(len(a.fields), len(b.fields)), cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Subject, b.Subject))
		})
		for _, lk := range g.Locks {
			if g.Longest >= 0 && (lk.Remaining < 0 || lk.Remaining > g.Longest) {
				g.Longest = lk.Remaining
			}
		}
		if g.Keys != nil {
			g.Keys = g.Keys[:0]
			for _, lk := range g.Locks {
				g.Keys = append(g.Keys, lk.Key)
			}
		}
	}
	return groups
}

// groupOf returns the (empty) group of a lock.
func groupOf(lk LockState) LockGroup {
	var (
		user, ip   string
		userHashed bool
	)
	for _, f := range lk.fields {
		switch f.Tag {
		case "u":
			user, userHashed = f.Value, f.Hashed
		case "ip":
			ip = f.Value
		}
	}
	switch {
	case user != "":
		label := user
		if !userHashed {
			label = lockout.QuoteValue(user) // "admin,ip=…" or a look-alike must not pass for admin
		}
		g := LockGroup{Kind: "user", Label: label, Subject: lockout.Subject{Username: user}}
		if userHashed {
			g.Keys = []string{}
		}
		return g
	case ip != "":
		g := LockGroup{Kind: "ip", Label: ip}
		// A rule keyed by an IPv6 (or IPv4) prefix holds the prefix: any
		// address in it reaches the key.
		if p, err := netip.ParsePrefix(ip); err == nil {
			g.Subject.IP = p.Addr().String()
		} else {
			g.Subject.IP = ip
		}
		return g
	}
	g := LockGroup{Kind: "other", Label: lk.Subject}
	for _, f := range lk.fields {
		if f.Hashed {
			g.Keys = []string{}
		}
		switch {
		case f.Tag == "ua":
			g.Subject.UserAgent = f.Value
		case strings.HasPrefix(f.Tag, "f."):
			if g.Subject.Fields == nil {
				g.Subject.Fields = map[string]string{}
			}
			g.Subject.Fields[f.Tag[2:]] = f.Value
		}
	}
	return g
}

// paramTag is the inverse of tagParam.
func paramTag(p string) string {
	switch p {
	case paramUsername:
		return "u"
	case paramIP:
		return "ip"
	case paramUserAgent:
		return "ua"
	}
	return "f." + strings.TrimPrefix(p, paramField)
}
