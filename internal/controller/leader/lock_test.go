package leader

import (
	"context"
	"errors"
	"testing"

	"k8s.io/client-go/kubernetes/fake"
)

// A Lock runs one piece of work at a time: while a holder works, Held says so and
// another Hold that will not wait is refused naming the holder; once the work
// returns, the Lease is released and the next Hold runs at once.
func TestLockHoldsForOneWorkAtATime(t *testing.T) {
	client := fake.NewClientset()
	a := Lock{Client: client, Namespace: "pullgate-system", Name: PruneLease, Identity: "a"}
	b := Lock{Client: client, Namespace: "pullgate-system", Name: PruneLease, Identity: "b"}
	ctx := context.Background()
	if held, err := a.Held(ctx); err != nil || held {
		t.Fatalf("a Lease never taken: held %v, %v", held, err)
	}
	ran := false
	err := a.Hold(ctx, false, func(ctx context.Context) error {
		ran = true
		if held, err := b.Held(ctx); err != nil || !held {
			t.Errorf("while a holds the Lease, b sees held %v (%v)", held, err)
		}
		err := b.Hold(ctx, false, func(context.Context) error {
			t.Error("b worked while a held the Lease")
			return nil
		})
		if !errors.Is(err, ErrHeld) || err.Error() == ErrHeld.Error() {
			t.Errorf("b's Hold while a holds the Lease: %v; want ErrHeld naming the holder", err)
		}
		return nil
	})
	if err != nil || !ran {
		t.Fatalf("a's Hold: ran %v, %v", ran, err)
	}
	if held, err := b.Held(ctx); err != nil || held {
		t.Errorf("after a's work the Lease is still held: %v %v", held, err)
	}
	want := errors.New("the work's own error")
	if err := b.Hold(ctx, false, func(context.Context) error { return want }); !errors.Is(err, want) {
		t.Errorf("b's Hold once the Lease was released: %v, want the work's error", err)
	}
}
