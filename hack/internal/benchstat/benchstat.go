// Package benchstat is what the bench programs share: percentiles of measured
// durations, the ratio of two medians, waiting for a condition, and exiting on an
// error.
package benchstat

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// P is the q-th percentile of d (q 100: the largest).
func P(d []time.Duration, q int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*q/100)]
}

// Pct is P rounded to round, printed.
func Pct(d []time.Duration, q int, round time.Duration) string { return P(d, q).Round(round).String() }

// Ratio is a's median over b's.
func Ratio(a, b []time.Duration) float64 { return float64(P(a, 50)) / float64(P(b, 50)) }

// Until polls cond every 10 ms and exits the program if it is not true within limit.
func Until(limit time.Duration, cond func() bool) {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			Check(fmt.Errorf("not within %s", limit))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Check exits the program, naming it, on an error.
func Check(err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
		os.Exit(1)
	}
}
