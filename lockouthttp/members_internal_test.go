package lockouthttp

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
)

// FuzzExactMembers: exactMembers accepts a JSON object only if every
// member is one of the names, spelled exactly, each once; then
// encoding/json reads the same members from it.
func FuzzExactMembers(f *testing.F) {
	for _, s := range []string{
		`{"ip":"192.0.2.1"}`, `{"ip":"x","IP":""}`, `{"ip":"x","ip":""}`, `{"username":"a","fields":{"ip":"b"}}`,
		`{}`, `[]`, `{"ip":1`, `{"\u0069p":"x"}`, `{"ip":"x"} {}`,
	} {
		f.Add([]byte(s))
	}
	names := []string{"username", "ip", "fields"}
	f.Fuzz(func(t *testing.T, body []byte) {
		if exactMembers(body, names...) != nil {
			return
		}
		var m map[string]json.RawMessage
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&m); err != nil {
			return // e.g. a value exactMembers skipped as raw JSON but trailing bytes; params refuses those
		}
		n := 0
		for tok := json.NewDecoder(bytes.NewReader(body)); ; {
			t0, err := tok.Token()
			if err != nil || t0 == json.Delim('}') {
				break
			}
			if t0 == json.Delim('{') {
				continue
			}
			n++
			var skip json.RawMessage
			if tok.Decode(&skip) != nil {
				break
			}
		}
		if n != len(m) {
			t.Errorf("%q accepted with %d members, encoding/json reads %d", body, n, len(m))
		}
		for k := range m {
			if !slices.Contains(names, k) {
				t.Errorf("%q accepted with member %q", body, k)
			}
		}
	})
}
