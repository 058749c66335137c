package lockoutotel_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRootModulePullsNoTelemetry lists the modules the root module's
// packages and their tests depend on (go list -deps -test ./... in the
// parent directory, which needs no network once the root's modules are in
// the module cache) and checks that none is OpenTelemetry or Prometheus:
// importing the lockout library must not pull them in.
func TestRootModulePullsNoTelemetry(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// go test puts its own go first in PATH.
	cmd := exec.Command("go", "list", "-deps", "-test",
		"-f", "{{with .Module}}{{.Path}}{{end}}", "./...")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list in %s: %v\n%s", root, err, out)
	}
	var modules []string
	for m := range strings.FieldsSeq(string(out)) {
		if !slices.Contains(modules, m) {
			modules = append(modules, m)
		}
	}
	if !slices.Contains(modules, "github.com/go-lockout/lockout") {
		t.Fatalf("go list found no package of the root module: %q", modules)
	}
	for _, m := range modules {
		for _, banned := range []string{"go.opentelemetry.io/", "github.com/prometheus/"} {
			if strings.HasPrefix(m, banned) {
				t.Errorf("the root module depends on %s", m)
			}
		}
	}
	t.Logf("root module depends on %d modules: %s", len(modules), strings.Join(modules, " "))
}
