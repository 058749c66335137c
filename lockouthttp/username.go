package lockouthttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/go-lockout/lockout"
)

// A UsernameFunc returns the username a login request claims, or "" when it
// claims none (username rules then do not apply to the attempt). An error
// wrapping lockout.ErrInvalidSubject makes the middleware answer 400, one
// wrapping ErrBodyTooLarge 413, any other 500; the handler does not run.
//
// The middleware counts attempts under the username this function returns,
// so it must read the same value the login handler verifies: a handler that
// reads another field (the query string where this reads the body, say)
// lets a client be counted under one name while guessing the password of
// another. SubjectFromContext hands the handler the exact username counted.
type UsernameFunc func(r *http.Request) (string, error)

// MaxBodyBytes bounds the request bodies FormField and JSONField read.
// A larger body is refused with ErrBodyTooLarge (the middleware answers 413)
// before the handler runs.
const MaxBodyBytes = 1 << 20

// ErrBodyTooLarge is returned by FormField and JSONField for a body over
// MaxBodyBytes.
var ErrBodyTooLarge = errors.New("lockouthttp: request body too large")

// BasicAuth is a UsernameFunc that returns the username of the request's
// HTTP Basic credentials, or "" when it has no Authorization header, or
// one of another scheme. Basic credentials that net/http cannot read
// (unpadded or URL-safe base64, no colon, ...) are an error wrapping
// lockout.ErrInvalidSubject (400): a handler, or a server behind it, that
// reads them more leniently would check a password the username rules
// never counted.
//
// The attempt is admitted, and holds its reservation, before the handler
// runs: a handler that then reads the request's body (a one-time code, a
// form) waits for a client that may never send it, and a client that
// stalls its body holds a slot of the username until the server gives up
// on it, refusing the owner for capacity meanwhile with no failure nor lock
// on record (a review: 3 stalled requests, limit 3). Bound that with the
// http.Server's ReadTimeout, or read the body before the middleware (as
// FormField and JSONField do).
func BasicAuth(r *http.Request) (string, error) {
	u, _, ok := r.BasicAuth()
	if ok {
		return u, nil
	}
	for _, h := range r.Header.Values("Authorization") {
		// "Basic", whatever follows: a space, a tab, nothing.
		if h = strings.TrimSpace(h); len(h) >= 5 && strings.EqualFold(h[:5], "Basic") {
			return "", fmt.Errorf("%w: malformed Basic credentials", lockout.ErrInvalidSubject)
		}
	}
	return "", nil
}

// FormField returns a UsernameFunc that reads the form field name as
// r.FormValue(name) does (an urlencoded body, the query string, a
// multipart body) without consuming the body: it reads at most
// MaxBodyBytes of it and puts the bytes back into r.Body for the handler.
// If the form was parsed already (r.Form is set), it uses r.Form, unless
// the body is a multipart form that was not parsed with it: r.ParseForm
// (a handler in front calling it, a CSRF check, ...) leaves a multipart
// body unread, and r.Form without its fields, which the handler's
// r.FormValue would add later.
//
// A field given different values in different places (the query string
// and the body, or twice in one) is an error wrapping
// lockout.ErrInvalidSubject (400): r.FormValue, r.PostFormValue and
// r.URL.Query().Get would each see another username, and the client, who
// chooses the content type, would choose which one is counted. Repeats of
// one value are that value.
func FormField(name string) UsernameFunc {
	return func(r *http.Request) (string, error) {
		if r.Form != nil && (r.MultipartForm != nil || !multipartBody(r)) {
			return oneValue(r.Form, name)
		}
		body, err := readBody(r)
		if err != nil {
			return "", err
		}
		if urlencoded(r) {
			// The values of name alone, as ParseForm would find them:
			// the body's, then the query string's. ParseForm builds
			// every field (25 to 40 ms for a body of 9,000, for
			// refused requests too).
			vs := formValues(nil, string(body), name)
			return oneValue(url.Values{name: formValues(vs, r.URL.RawQuery, name)}, name)
		}
		return oneValue(parsedForm(r, body), name)
	}
}

// parsedForm returns the form r.FormValue would parse from r with the body
// body, leaving r unparsed.
func parsedForm(r *http.Request, body []byte) url.Values {
	c := *r
	c.Body = io.NopCloser(bytes.NewReader(body))
	c.Form, c.PostForm, c.MultipartForm = nil, nil, nil
	c.FormValue("") // parses the query and either kind of body into c.Form
	if c.MultipartForm != nil {
		c.MultipartForm.RemoveAll()
	}
	return c.Form
}

// urlencoded reports whether ParseForm would read r's body as an
// urlencoded form.
func urlencoded(r *http.Request) bool {
	if r.Method != http.MethodPost && r.Method != http.MethodPut && r.Method != http.MethodPatch {
		return false
	}
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && ct == "application/x-www-form-urlencoded"
}

// multipartBody reports whether r.FormValue would read r's body as a
// multipart form (ParseMultipartForm, whatever the method), which
// ParseForm leaves unread.
func multipartBody(r *http.Request) bool {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && ct == "multipart/form-data"
}

// formValues appends to vs the values of the field name in the
// urlencoded form q, as url.ParseQuery finds them (a pair whose key holds
// ';', or whose key or value is badly escaped, is skipped), unescaping only
// the keys that need it and the values of name.
func formValues(vs []string, q, name string) []string {
	// ParseQuery refuses a form of more pairs than its bound (10,000 by
	// default in Go 1.26, GODEBUG urlmaxqueryparams): ask it, with a form
	// of as many empty pairs.
	if _, err := url.ParseQuery(strings.Repeat("&", strings.Count(q, "&"))); err != nil {
		return vs
	}
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		key, value, _ := strings.Cut(pair, "=")
		if strings.ContainsAny(key, "%+") {
			var err error
			if key, err = url.QueryUnescape(key); err != nil {
				continue
			}
		}
		if key != name {
			continue
		}
		value, err := url.QueryUnescape(value)
		if err != nil {
			continue
		}
		vs = append(vs, value)
	}
	return vs
}

// oneValue returns the value of the field name of form, "" when it has
// none, or an error wrapping lockout.ErrInvalidSubject when it holds
// different values.
func oneValue(form url.Values, name string) (string, error) {
	vs := form[name]
	if len(vs) == 0 {
		return "", nil
	}
	for _, v := range vs[1:] {
		if v != vs[0] {
			return "", fmt.Errorf("%w: form field %q given %d values, not all the same (in the query string and the body?)", lockout.ErrInvalidSubject, name, len(vs))
		}
	}
	return vs[0], nil
}

// JSONField returns a UsernameFunc that reads the string field name of the
// JSON object in the request body, without consuming the body: it reads at
// most MaxBodyBytes of it and puts the bytes back into r.Body for the
// handler. The Content-Type is not checked.
//
// A body that is not one JSON object, or whose field is neither a string
// nor null, is an error wrapping lockout.ErrInvalidSubject (400), and so is
// an object holding the field more than once, counting names that differ
// only in case: encoding/json matches names case-insensitively and keeps the
// last, other decoders keep the first or match exactly, and the handler
// must not verify a name other than the one counted. An absent or null
// field, or an empty body, is "".
func JSONField(name string) UsernameFunc {
	return func(r *http.Request) (string, error) {
		body, err := readBody(r)
		if err != nil {
			return "", err
		}
		return jsonField(body, name)
	}
}

func jsonField(body []byte, name string) (string, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return "", nil
	}
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: JSON body: %s", lockout.ErrInvalidSubject, why)
	}
	if !json.Valid(body) {
		return bad("not valid JSON")
	}
	// The body is valid JSON: walk the top-level object's members by
	// hand, skipping each value without decoding it (decoding a body of
	// a hundred thousand members token by token took 100 to 200 ms, for
	// every request, refused ones included).
	i := skipSpace(body, 0)
	if body[i] != '{' {
		return bad("not an object")
	}
	var val string
	var found bool
	for i = skipSpace(body, i+1); body[i] != '}'; {
		end := skipString(body, i)
		match := nameIs(body[i:end], name)
		i = skipSpace(body, skipSpace(body, end)+1) // past the ':'
		start := i
		i = skipValue(body, i)
		if match {
			if found {
				return bad(fmt.Sprintf("field %q named more than once", name))
			}
			found = true
			var p *string
			if err := json.Unmarshal(body[start:i], &p); err != nil {
				return bad(fmt.Sprintf("field %q is not a string", name))
			}
			if p != nil {
				val = *p
			}
		}
		if i = skipSpace(body, i); body[i] == ',' {
			i = skipSpace(body, i+1)
		}
	}
	return val, nil
}

// The scanners below walk JSON that json.Valid accepted: each returns the
// index just past what it skips.

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString skips the string whose opening quote is at b[i].
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue skips the value that starts at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	// A number, true, false or null.
	for i < len(b) && !strings.ContainsRune(",}] \t\n\r", rune(b[i])) {
		i++
	}
	return i
}

// nameIs reports whether the JSON string q (quotes included, in a body
// json.Valid accepted) is name, as encoding/json matches names: ignoring
// case (strings.EqualFold), once decoded. It decodes q a rune at a time as
// encoding/json does (escapes, UTF-16 surrogate pairs, U+FFFD for a lone
// surrogate or a byte that is not UTF-8), without allocating: a body of
// escaped names decoded by json.Unmarshal cost 35 ms per MiB against 9
// for plain ones (a review).
func nameIs(q []byte, name string) bool {
	q = q[1 : len(q)-1]
	for len(q) > 0 {
		var r rune
		n := 1
		switch c := q[0]; {
		case c == '\\':
			r, n = unescape(q)
		case c < utf8.RuneSelf:
			r = rune(c)
		default:
			r, n = utf8.DecodeRune(q)
		}
		q = q[n:]
		nr, size := utf8.DecodeRuneInString(name)
		if size == 0 || !foldEqual(r, nr) {
			return false
		}
		name = name[size:]
	}
	return name == ""
}

// unescape decodes the escape at the start of q (valid JSON), and returns
// its rune and length.
func unescape(q []byte) (rune, int) {
	switch q[1] {
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'u':
		r := hex4(q[2:6])
		if !utf16.IsSurrogate(r) {
			return r, 6
		}
		if len(q) >= 12 && q[6] == '\\' && q[7] == 'u' {
			if d := utf16.DecodeRune(r, hex4(q[8:12])); d != unicode.ReplacementChar {
				return d, 12
			}
		}
		return unicode.ReplacementChar, 6
	}
	return rune(q[1]), 2 // '"', '\\' or '/'
}

// hex4 returns the value of four hex digits (valid JSON).
func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		switch {
		case c <= '9':
			c -= '0'
		case c <= 'F':
			c -= 'A' - 10
		default:
			c -= 'a' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// foldEqual reports whether a and b are equal under simple Unicode case
// folding, as strings.EqualFold compares runes.
func foldEqual(a, b rune) bool {
	if a == b {
		return true
	}
	if b < a {
		a, b = b, a
	}
	if b < utf8.RuneSelf {
		return 'A' <= a && a <= 'Z' && b == a+'a'-'A'
	}
	r := unicode.SimpleFold(a)
	for r != a && r < b {
		r = unicode.SimpleFold(r)
	}
	return r == b
}

// restoredBody is a request body read ahead and put back.
type restoredBody struct {
	io.Reader
	io.Closer
}

// preReadBytes bounds the buffer readBody reserves for a body before its
// bytes arrive.
const preReadBytes = 8 << 10

// readBody reads at most MaxBodyBytes of r's body and puts back what it
// read, so that the handler reads the whole body as sent.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > MaxBodyBytes {
		return nil, ErrBodyTooLarge
	}
	orig := r.Body
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		// One allocation for a login's body (ReadFrom keeps MinRead
		// free), but not more than preReadBytes on the client's word: a
		// claimed length reserved whole let a client hold 1 MiB per
		// connection with headers alone and a body it never sends. Past
		// that, the buffer grows with the bytes that arrive.
		buf.Grow(int(min(r.ContentLength, preReadBytes)) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(io.LimitReader(orig, MaxBodyBytes+1))
	body := buf.Bytes()
	// Put back what was read, followed by whatever was not.
	r.Body = restoredBody{io.MultiReader(bytes.NewReader(body), orig), orig}
	if err != nil {
		return nil, fmt.Errorf("%w: reading the body: %w", lockout.ErrInvalidSubject, err)
	}
	if len(body) > MaxBodyBytes {
		return nil, ErrBodyTooLarge
	}
	return body, nil
}
