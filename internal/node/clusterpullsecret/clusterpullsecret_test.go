package clusterpullsecret

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/kubernetes/fake"
)

// Set stores a parsed file; a broken one changes nothing; Get reads it back, and
// none is no credentials.
func TestSetAndGet(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	if cfgs, err := Get(ctx, client); err != nil || len(cfgs) != 0 {
		t.Fatalf("nothing set: %v %v", cfgs, err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	broken := filepath.Join(dir, "broken.json")
	_ = os.WriteFile(good, []byte(`{"auths":{"quay.io":{"auth":"dTpw"}}}`), 0o600)
	_ = os.WriteFile(broken, []byte(`{"auths":`), 0o600)
	if err := Set(ctx, client, good); err != nil {
		t.Fatal(err)
	}
	if err := Set(ctx, client, broken); err == nil {
		t.Error("a broken file was stored")
	}
	cfgs, err := Get(ctx, client)
	if err != nil || len(cfgs) != 1 || len(cfgs[0].Entries) != 1 || cfgs[0].Entries[0].Key != "quay.io" {
		t.Errorf("after Set: %+v %v", cfgs, err)
	}
}
