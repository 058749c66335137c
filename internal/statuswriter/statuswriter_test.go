package statuswriter

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestStatus(t *testing.T) {
	tests := []struct {
		name  string
		write func(w http.ResponseWriter)
		want  int
	}{
		{"nothing written", func(http.ResponseWriter) {}, 0},
		{"WriteHeader", func(w http.ResponseWriter) { w.WriteHeader(http.StatusUnauthorized) }, 401},
		{"Write alone", func(w http.ResponseWriter) { w.Write([]byte("hi")) }, 200},
		{"informational, then final", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusForbidden)
		}, 403},
		{"second WriteHeader ignored", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusFound)
			w.WriteHeader(http.StatusInternalServerError)
		}, 302},
		{"Flush through a ResponseController", func(w http.ResponseWriter) {
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("Flush: %v", err)
			}
		}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			w := New(rec)
			tc.write(w)
			if got := w.Status(); got != tc.want {
				t.Errorf("Status() = %d, want %d", got, tc.want)
			}
			if w.Unwrap() != rec {
				t.Error("Unwrap does not return the writer underneath")
			}
		})
	}
}
