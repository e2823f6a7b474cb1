package manifests

import (
	"bytes"
	"os"
	"testing"
)

// deploy/generated.yaml is what the code makes now.
func TestGeneratedIsCurrent(t *testing.T) {
	want, err := Generated()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../deploy/generated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("deploy/generated.yaml is stale: run go run ./hack/gendeploy")
	}
	if bytes.Contains(want, []byte("creationTimestamp: null")) || bytes.Contains(want, []byte("\nstatus:")) {
		t.Error("generated.yaml holds fields a user would not write (creationTimestamp, status)")
	}
}
