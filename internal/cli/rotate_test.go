package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"

	"pullgate.dev/pullgate/internal/registry/keys"
)

func TestRotateRegistryKey(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	var out bytes.Buffer
	o := &RotateKeyOptions{Propagation: keys.Propagation, Client: client, IOStreams: genericiooptions.IOStreams{Out: &out}}
	if err := o.Run(ctx); err == nil || !strings.Contains(err.Error(), "no registry has run yet") {
		t.Fatalf("rotating before any registry ran: %v", err)
	}
	before, err := keys.Ensure(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Run(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := keys.Ensure(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Keys) != 2 || after.Keys[0].ID != before.Keys[0].ID || after.HTTPSecret != before.HTTPSecret {
		t.Fatalf("after a rotation: %d keys; old key kept: %v", len(after.Keys), after.Keys[0].ID == before.Keys[0].ID)
	}
	if want := "registry key " + after.Keys[1].ID + " added"; !strings.HasPrefix(out.String(), want) {
		t.Errorf("printed %q, want it to start with %q", out.String(), want)
	}
	if err := (&RotateKeyOptions{Propagation: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "--propagation") {
		t.Errorf("a negative propagation: %v", err)
	}
}
