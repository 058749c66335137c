package lockouthttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/go-lockout/lockout"
)

func TestJSONField(t *testing.T) {
	tests := []struct {
		body string
		want string
		ok   bool
	}{
		{`{"username":"alice","password":"x"}`, "alice", true},
		{` {"password":"x", "username" : "alice"} `, "alice", true},
		{`{"Username":"alice"}`, "alice", true},
		{`{"password":"x"}`, "", true},
		{`{"username":null}`, "", true},
		{``, "", true},
		{`   `, "", true},
		{`{"nested":{"username":"bob"},"username":"alice"}`, "alice", true},
		{`{"nested":{"username":"bob"}}`, "", true},
		{`{"username":"alice","username":"bob"}`, "", false},
		{`{"username":"alice","USERNAME":"bob"}`, "", false},
		{`{"username":"alice","uſername":"bob"}`, "", false}, // ſ folds to s, as encoding/json matches it
		{`{"username":42}`, "", false},
		{`{"username":["a"]}`, "", false},
		{`["username","alice"]`, "", false},
		{`"alice"`, "", false},
		{`null`, "", false},
		{`{"username":"alice"} trailing`, "", false},
		{`{"username":"alice"`, "", false},
		{`username=alice`, "", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(tt.body))
		got, err := JSONField("username")(r)
		if tt.ok && (err != nil || got != tt.want) {
			t.Errorf("body %s: %q, %v; want %q", tt.body, got, err, tt.want)
		}
		if !tt.ok && !errors.Is(err, lockout.ErrInvalidSubject) {
			t.Errorf("body %s: %q, %v; want an ErrInvalidSubject", tt.body, got, err)
		}
		if rest, _ := io.ReadAll(r.Body); string(rest) != tt.body {
			t.Errorf("body %s: the handler reads %q", tt.body, rest)
		}
	}
}

type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }

func TestBodyLimit(t *testing.T) {
	big := `{"username":"alice","pad":"` + strings.Repeat("x", MaxBodyBytes) + `"}`
	// Known length: refused before reading.
	r := httptest.NewRequest("POST", "/login", strings.NewReader(big))
	if _, err := JSONField("username")(r); !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("err = %v, want ErrBodyTooLarge", err)
	}
	// Unknown length: read up to the limit, and everything put back.
	body := &closeTracker{Reader: strings.NewReader(big)}
	r = httptest.NewRequest("POST", "/login", nil)
	r.Body, r.ContentLength = body, -1
	if _, err := FormField("username")(r); !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("err = %v, want ErrBodyTooLarge", err)
	}
	if rest, _ := io.ReadAll(r.Body); string(rest) != big {
		t.Errorf("the body was not put back whole: %d bytes of %d", len(rest), len(big))
	}
	r.Body.Close()
	if !body.closed {
		t.Error("closing the restored body does not close the original")
	}
	// Exactly at the limit is fine.
	exact := `{"username":"alice","pad":"` + strings.Repeat("x", MaxBodyBytes-len(`{"username":"alice","pad":""}`)) + `"}`
	r = httptest.NewRequest("POST", "/login", strings.NewReader(exact))
	if got, err := JSONField("username")(r); err != nil || got != "alice" {
		t.Fatalf("a body of exactly MaxBodyBytes: %q, %v", got, err)
	}
}

// TestBodyMemoryFollowsBytesRead: the memory a body takes while it is read
// follows the bytes that arrived, not the Content-Length the client
// claims. Reserving the claimed length up front let a client hold 1 MiB
// of the server's memory per connection with a hundred bytes of headers
// and a body it never sends (500 such connections to the example server:
// 54 KB sent, its RSS from 12 MB to 540 MB).
func TestBodyMemoryFollowsBytesRead(t *testing.T) {
	const sent = "username=alice"
	tests := []struct {
		name    string
		field   UsernameFunc
		ct      string
		claimed int64
	}{
		{"form, claims the limit", FormField("username"), "application/x-www-form-urlencoded", MaxBodyBytes},
		{"form, claims half", FormField("username"), "application/x-www-form-urlencoded", MaxBodyBytes / 2},
		{"JSON, claims the limit", JSONField("username"), "application/json", MaxBodyBytes},
		{"multipart, claims the limit", FormField("username"), "multipart/form-data; boundary=x", MaxBodyBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			const runs = 20
			for range runs {
				r := httptest.NewRequest("POST", "/login", nil)
				r.Header.Set("Content-Type", tt.ct)
				// The client sent a few bytes, then went quiet: the
				// server's read fails once its read timeout passes.
				r.Body = io.NopCloser(io.MultiReader(strings.NewReader(sent), iotest.ErrReader(io.ErrUnexpectedEOF)))
				r.ContentLength = tt.claimed
				if _, err := tt.field(r); !errors.Is(err, lockout.ErrInvalidSubject) {
					t.Fatalf("err = %v, want an ErrInvalidSubject for the body's read error", err)
				}
			}
			runtime.ReadMemStats(&after)
			if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 64<<10 {
				t.Errorf("reading a body of %d bytes that claims %d allocated %d bytes; want at most 64 KiB", len(sent), tt.claimed, per)
			}
		})
	}
}

func TestFormField(t *testing.T) {
	form := func(body, query string) *http.Request {
		r := httptest.NewRequest("POST", "/login?"+query, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return r
	}
	multi := func(query string) *http.Request {
		var mp bytes.Buffer
		mw := multipart.NewWriter(&mp)
		mw.WriteField("username", "carol")
		mw.WriteField("password", "x")
		mw.Close()
		r := httptest.NewRequest("POST", "/login?"+query, bytes.NewReader(mp.Bytes()))
		r.Header.Set("Content-Type", mw.FormDataContentType())
		return r
	}

	tests := []struct {
		name string
		r    *http.Request
		want string
		ok   bool
	}{
		{"body", form("username=alice&password=x", ""), "alice", true},
		{"query when body lacks it", form("password=x", "username=bob"), "bob", true},
		{"body and query agree", form("username=alice", "username=alice"), "alice", true},
		{"twice the same", form("username=alice&username=alice", ""), "alice", true},
		{"absent", form("password=x", ""), "", true},
		{"multipart", multi(""), "carol", true},
		// The handler may read any one of them (FormValue, PostFormValue,
		// the query): refused, whichever it is.
		{"body and query differ", form("username=alice", "username=bob"), "", false},
		{"two in the body", form("username=alice&username=bob", ""), "", false},
		{"multipart body and query differ", multi("username=decoy"), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := io.ReadAll(tt.r.Body)
			tt.r.Body = io.NopCloser(bytes.NewReader(before))
			got, err := FormField("username")(tt.r)
			if !tt.ok {
				if !errors.Is(err, lockout.ErrInvalidSubject) {
					t.Fatalf("FormField = %q, %v; want an ErrInvalidSubject", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("FormField = %q, %v; want %q", got, err, tt.want)
			}
			if tt.r.Form != nil {
				t.Error("FormField parsed the request's form")
			}
			// The handler sees the same value, whichever way it reads it,
			// and the same body.
			if v := tt.r.FormValue("username"); v != got {
				t.Errorf("the handler's FormValue = %q, want %q", v, got)
			}
			if v := tt.r.PostFormValue("username"); v != got && v != "" {
				t.Errorf("the handler's PostFormValue = %q, want %q", v, got)
			}
			tt.r.Body = nil
		})
	}
	// A form parsed already is used as is.
	r := form("username=alice", "")
	r.ParseForm()
	if got, _ := FormField("username")(r); got != "alice" {
		t.Errorf("parsed form: %q", got)
	}
	r = form("username=alice", "username=bob")
	r.ParseForm()
	if got, err := FormField("username")(r); !errors.Is(err, lockout.ErrInvalidSubject) {
		t.Errorf("parsed form, body and query differ: %q, %v; want an ErrInvalidSubject", got, err)
	}
}

func TestFormFieldKeepsBody(t *testing.T) {
	r := httptest.NewRequest("POST", "/login", strings.NewReader("username=alice&password=x"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if got, err := FormField("username")(r); err != nil || got != "alice" {
		t.Fatalf("%q, %v", got, err)
	}
	if b, _ := io.ReadAll(r.Body); string(b) != "username=alice&password=x" {
		t.Errorf("the handler reads %q", b)
	}
}

func TestBasicAuth(t *testing.T) {
	r := httptest.NewRequest("POST", "/login", nil)
	if u, err := BasicAuth(r); u != "" || err != nil {
		t.Errorf("no credentials: %q, %v", u, err)
	}
	r.SetBasicAuth("Alice", "pw:with:colons")
	if u, err := BasicAuth(r); u != "Alice" || err != nil {
		t.Errorf("BasicAuth = %q, %v", u, err)
	}
	r.Header.Set("Authorization", "Basic !!!")
	if u, err := BasicAuth(r); u != "" || !errors.Is(err, lockout.ErrInvalidSubject) {
		t.Errorf("malformed credentials: %q, %v; want ErrInvalidSubject (TestBasicAuthMalformed)", u, err)
	}
}

// FuzzJSONField checks that JSONField never panics, always puts the body
// back, and never extracts a username other than the one encoding/json
// gives a handler decoding the body into a struct.
func FuzzJSONField(f *testing.F) {
	for _, s := range []string{
		`{"username":"alice","password":"x"}`, `{"username":"a","USERNAME":"b"}`, `{"username":1}`,
		`{"a":{"username":"b"}}`, `[]`, ``, `{"username":"\u00e9\ud800"}`, `{"uſername":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/login", bytes.NewReader(body))
		got, err := JSONField("username")(r)
		if rest, _ := io.ReadAll(r.Body); !bytes.Equal(rest, body) {
			t.Fatalf("body %q put back as %q", body, rest)
		}
		if err != nil {
			if !errors.Is(err, lockout.ErrInvalidSubject) {
				t.Fatalf("error %v does not wrap ErrInvalidSubject", err)
			}
			return
		}
		var v struct {
			Username string `json:"username"`
		}
		if len(bytes.TrimSpace(body)) == 0 {
			if got != "" {
				t.Fatalf("empty body: %q", got)
			}
			return
		}
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("JSONField accepted %q (%q), encoding/json does not: %v", body, got, err)
		}
		if v.Username != got {
			t.Fatalf("body %q: JSONField %q, encoding/json %q", body, got, v.Username)
		}
	})
}

// FuzzNameIs checks nameIs against encoding/json's decoding of a name and
// strings.EqualFold.
func FuzzNameIs(f *testing.F) {
	for _, s := range []string{
		`"username"`, `"\u0075sername"`, `"USERNAME"`, `"uſername"`, `"\ud800"`, `"\ud83d\ude00"`,
		`"\ud800\u0041"`, "\"\xff\"", `"\/\b\f\n\r\t\"\\"`, `"\u212a"`, `"\uDBFF\uDFFF"`, `""`,
	} {
		f.Add([]byte(s), "username")
	}
	f.Add([]byte(`"\u212a"`), "k")
	f.Add([]byte(`"\ud83d\ude00"`), "\U0001F600")
	f.Fuzz(func(t *testing.T, q []byte, name string) {
		if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' || !json.Valid(q) {
			return
		}
		var s string
		if err := json.Unmarshal(q, &s); err != nil {
			t.Fatal(err)
		}
		if got, want := nameIs(q, name), strings.EqualFold(s, name); got != want {
			t.Fatalf("nameIs(%q, %q) = %v; encoding/json decodes %q, EqualFold %v", q, name, got, s, want)
		}
	})
}

// BenchmarkJSONFieldLarge reads the username of a body of MaxBodyBytes
// made of short members, what a client that wants the server to spend
// time on its refused attempts sends; the baseline is json.Valid over the
// same body, which every decoder pays.
func BenchmarkJSONFieldLarge(b *testing.B) {
	var body bytes.Buffer
	body.WriteString(`{"username":"alice"`)
	for i := 0; body.Len() < MaxBodyBytes-32; i++ {
		fmt.Fprintf(&body, `,"k%d":[%d]`, i, i)
	}
	body.WriteString(`}`)
	b.Run("JSONField", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(body.Len()))
		for b.Loop() {
			if u, err := jsonField(body.Bytes(), "username"); u != "alice" || err != nil {
				b.Fatal(u, err)
			}
		}
	})
	// Member names escaped, each as long as "username": encoding/json
	// unquoted such names, 35 ms per MiB (a review).
	var escaped bytes.Buffer
	escaped.WriteString(`{"username":"alice"`)
	for i := 0; escaped.Len() < MaxBodyBytes-64; i++ {
		fmt.Fprintf(&escaped, `,"\u0075\u0073\u0065\u0072\u006e\u0061\u006d%c":%d`, 'a'+i%4, i) // usernama to usernamd
	}
	escaped.WriteString(`}`)
	b.Run("JSONFieldEscaped", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(escaped.Len()))
		for b.Loop() {
			if u, err := jsonField(escaped.Bytes(), "username"); u != "alice" || err != nil {
				b.Fatal(u, err)
			}
		}
	})
	b.Run("Valid", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(body.Len()))
		for b.Loop() {
			if !json.Valid(body.Bytes()) {
				b.Fatal("invalid")
			}
		}
	})
}

// FuzzFormField checks FormField's reading of an urlencoded body against
// what ParseForm (and so r.FormValue in the handler) finds in the same
// request: the same username, or an error where the values differ.
func FuzzFormField(f *testing.F) {
	for _, s := range [][2]string{
		{"username=alice&password=x", ""}, {"username=a&username=b", ""}, {"username=a", "username=a"},
		{"username=a", "username=b"}, {"user%6Eame=alice", ""}, {"username=al%ZZice&username=bob", ""},
		{"username=a;b", ""}, {"x=1;username=bob&username=alice", ""}, {"username=a+b&=&&", "q=1"},
		{"username", ""}, {"username=%41", "username=A"}, {"usern+ame=x", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, body, query string) {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.URL.RawQuery = query
		got, err := FormField("username")(r)
		want, wantErr := oneValue(parsedForm(r, []byte(body)), "username")
		if got != want || (err == nil) != (wantErr == nil) {
			t.Fatalf("body %q, query %q: FormField %q, %v; ParseForm %q, %v", body, query, got, err, want, wantErr)
		}
		if rest, _ := io.ReadAll(r.Body); string(rest) != body {
			t.Fatalf("body %q put back as %q", body, rest)
		}
	})
}

// TestFormFieldManyPairs: a form of more pairs than url.ParseQuery takes
// is read as ParseForm reads it (not at all, by default), whatever the
// bound (GODEBUG urlmaxqueryparams, lowered to 100 here).
func TestFormFieldManyPairs(t *testing.T) {
	t.Run("urlmaxqueryparams=100", func(t *testing.T) {
		t.Setenv("GODEBUG", "urlmaxqueryparams=100")
		body := "username=alice" + strings.Repeat("&k=v", 150)
		r := httptest.NewRequest("POST", "/login", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		got, err := FormField("username")(r)
		want, _ := oneValue(parsedForm(r, []byte(body)), "username")
		if got != want || err != nil {
			t.Errorf("FormField %q, %v; ParseForm %q", got, err, want)
		}
	})
	for _, n := range []int{9_998, 9_999, 10_000, 20_000} {
		body := "username=alice" + strings.Repeat("&k=v", n)
		r := httptest.NewRequest("POST", "/login", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		got, err := FormField("username")(r)
		want, _ := oneValue(parsedForm(r, []byte(body)), "username")
		if got != want || err != nil {
			t.Errorf("%d pairs more: FormField %q, %v; ParseForm %q", n, got, err, want)
		}
	}
}

// BenchmarkFormFieldLarge reads the username of an urlencoded body of
// 9,999 pairs (ParseQuery takes up to 10,000) and about MaxBodyBytes; the
// baseline, ParseForm, is what FormField did before it read the field
// alone.
func BenchmarkFormFieldLarge(b *testing.B) {
	var body strings.Builder
	body.WriteString("username=alice")
	for i := 0; i < 9_999; i++ {
		fmt.Fprintf(&body, "&k%d=%s", i, strings.Repeat("v", MaxBodyBytes/10_000-10))
	}
	bs := []byte(body.String())
	req := func() *http.Request {
		r := httptest.NewRequest("POST", "/login", bytes.NewReader(bs))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return r
	}
	b.Run("FormField", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(bs)))
		for b.Loop() {
			if u, err := FormField("username")(req()); u != "alice" || err != nil {
				b.Fatal(u, err)
			}
		}
	})
	b.Run("ParseForm", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(bs)))
		for b.Loop() {
			if u, err := oneValue(parsedForm(req(), bs), "username"); u != "alice" || err != nil {
				b.Fatal(u, err)
			}
		}
	})
}

// FuzzBasicAuth checks BasicAuth against net/http's Request.BasicAuth,
// which a handler reads the password with: the same username when
// net/http reads the credentials; an error (ErrInvalidSubject) for any
// other Authorization header that says Basic, so that no lenient reader
// behind it checks a password for an uncounted username; no username
// and no error for another scheme or none.
func FuzzBasicAuth(f *testing.F) {
	for _, h := range []string{"Basic YWxpY2U6cHc=", "basic YWxpY2U6cHc=", "Basic YWxpY2U6cHc", "Basic\tYWxpY2U6cHc=", "Basic", "Bearer x", "", "Basic Og==", " Basic YWxpY2U6cHc="} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", h)
		got, err := BasicAuth(r)
		u, _, ok := r.BasicAuth()
		basic := len(strings.TrimSpace(h)) >= 5 && strings.EqualFold(strings.TrimSpace(h)[:5], "basic")
		switch {
		case ok:
			if err != nil || got != u {
				t.Fatalf("BasicAuth(%q) = %q, %v; net/http reads %q", h, got, err, u)
			}
		case basic:
			if !errors.Is(err, lockout.ErrInvalidSubject) {
				t.Fatalf("BasicAuth(%q) = %q, %v; want ErrInvalidSubject: net/http cannot read it", h, got, err)
			}
		default:
			if got != "" || err != nil {
				t.Fatalf("BasicAuth(%q) = %q, %v; want nothing for another scheme", h, got, err)
			}
		}
	})
}
