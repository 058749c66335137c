// Package statuswriter records the status code an http.Handler writes. It is
// shared by package lockouthttp and cmd/lockbench.
package statuswriter

import "net/http"

// Writer wraps an http.ResponseWriter and records the final status written
// through it. It implements http.Flusher and Unwrap, so
// http.NewResponseController reaches the writer underneath for everything
// else.
type Writer struct {
	http.ResponseWriter
	status int // the final status written; 0 if none yet
}

// New returns a Writer over w.
func New(w http.ResponseWriter) *Writer { return &Writer{ResponseWriter: w} }

// Status returns the final status written so far: 0 when none was, and
// never an informational (1xx) one; a Write or Flush without WriteHeader
// counts as 200.
func (w *Writer) Status() int { return w.status }

// WriteHeader records code, unless it is informational or a final status
// was already written, and passes it on.
func (w *Writer) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write passes b on; the status is 200 if none was written.
func (w *Writer) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher.
func (w *Writer) Flush() { _ = w.FlushError() }

// FlushError flushes the response, as http.ResponseController.Flush does.
func (w *Writer) FlushError() error {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the writer underneath, for http.ResponseController.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
