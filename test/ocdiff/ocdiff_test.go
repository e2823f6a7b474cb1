package ocdiff

import (
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"

	"pullgate.dev/pullgate/internal/harness"
)

var env *harness.Env

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, &env, harness.Options{}))
}

func golden(t *testing.T) Golden {
	t.Helper()
	data, err := os.ReadFile("testdata/oc-golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g Golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Cases) != len(Cases) {
		t.Fatalf("the recording has %d cases, the test %d: record again with go run ./hack/ocgolden -oc OC", len(g.Cases), len(Cases))
	}
	return g
}

func compare(t *testing.T, who string, want, got []Result) {
	t.Helper()
	for i := range want {
		w, g := want[i], got[i]
		t.Run(w.Name, func(t *testing.T) {
			if w.Name != g.Name {
				t.Fatalf("case %q recorded as %q: record again", g.Name, w.Name)
			}
			if w.ExitCode != g.ExitCode || w.Stdout != g.Stdout || w.Stderr != g.Stderr {
				t.Errorf("%s\n%s: exit %d\nstdout %q\nstderr %q\noc:  exit %d\nstdout %q\nstderr %q", w.Command, who, g.ExitCode, g.Stdout, g.Stderr, w.ExitCode, w.Stdout, w.Stderr)
			}
			if w.Objects != g.Objects {
				t.Errorf("%s\nobjects after %s:\n%s\nafter oc:\n%s", w.Command, who, g.Objects, w.Objects)
			}
		})
	}
}

// pullgate prints, exits with and leaves in the API what oc did, for every case.
func TestPullgateDoesWhatOcDid(t *testing.T) {
	ctx := harness.Context(t, 5*time.Minute)
	g := golden(t)
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	runner, err := NewRunner(env, bin, "pullgate", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	got, err := runner.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded from %s", g.OC)
	compare(t, "pullgate", g.Cases, got)
}

// With OC set to a real oc binary, it does against pullgate's API what it did when
// recorded.
func TestRealOcAgainstPullgate(t *testing.T) {
	oc := os.Getenv("OC")
	if oc == "" {
		t.Skip("OC is not set: give a real oc binary (see hack/ocgolden) to run it against pullgate")
	}
	if _, err := exec.LookPath(oc); err != nil {
		t.Fatalf("OC=%s: %v", oc, err)
	}
	ctx := harness.Context(t, 5*time.Minute)
	runner, err := NewRunner(env, oc, "realoc", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	got, err := runner.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	compare(t, "oc now", golden(t).Cases, got)
}
