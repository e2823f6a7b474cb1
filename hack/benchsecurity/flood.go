package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// loginsDuringFlood measures a good client's logins, each with a fresh service
// account token (never seen by the token service: the worst case, a TokenReview
// each), paced at 5 a second, with and without 8 clients flooding /token with bad
// passwords from the same address (127.0.0.1), and prints both side by side.
func loginsDuringFlood(ctx context.Context, env *harness.Env, logins int) {
	fmt.Printf("\n%-44s %10s %10s %10s %s\n", "a good client's logins (fresh token each)", "p50", "p99", "refused", "bad logins/s from its address")
	for _, flood := range []bool{false, true} {
		tokens := make([]string, logins)
		for i := range tokens {
			var err error
			tokens[i], err = env.ServiceAccountToken(ctx, "reader", "app")
			check(err)
		}
		stop := make(chan struct{})
		var bad atomic.Int64
		var wg sync.WaitGroup
		if flood {
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						login(env, rand.Text())
						bad.Add(1)
					}
				}()
			}
			time.Sleep(2 * time.Second) // the address's allowance is spent
			bad.Store(0)
		}
		began := time.Now()
		var took []time.Duration
		refused := 0
		tick := time.NewTicker(200 * time.Millisecond)
		for _, tok := range tokens {
			<-tick.C
			start := time.Now()
			if login(env, tok) != http.StatusOK {
				refused++
			}
			took = append(took, time.Since(start))
		}
		tick.Stop()
		rate := float64(bad.Load()) / time.Since(began).Seconds()
		close(stop)
		wg.Wait()
		slices.Sort(took)
		label := "without a flood"
		if flood {
			label = "during a bad-login flood, same address"
		}
		fmt.Printf("%-44s %10s %10s %10d %.0f\n", fmt.Sprintf("%s (%d)", label, len(took)),
			took[len(took)/2].Round(time.Microsecond*100), took[len(took)*99/100].Round(time.Microsecond*100), refused, rate)
	}
}

// login asks the token service for a pull token with password, and returns the status.
func login(env *harness.Env, password string) int {
	q := url.Values{"service": {tokenauth.Service}, "scope": {"repository:owner/app:pull"}}
	req, _ := http.NewRequest(http.MethodGet, "http://"+env.RegistryHost+"/token?"+q.Encode(), nil)
	req.SetBasicAuth("bench", password)
	resp, err := http.DefaultClient.Do(req)
	check(err)
	resp.Body.Close()
	return resp.StatusCode
}
