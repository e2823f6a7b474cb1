// Command benchup measures `pullgate up`: time from exec to ready (cold: empty data
// directory; warm: existing one), time from SIGTERM to exit, and peak RSS, and
// prints them beside the goals of issue #2 and the reference figures for a bare
// kube-apiserver on this kind of machine.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"pullgate.dev/pullgate/internal/harness"
)

type sample struct {
	ready, stop time.Duration
	rssMB       float64
}

func main() {
	bin := flag.String("bin", "bin/pullgate", "pullgate binary")
	runs := flag.Int("runs", 3, "warm starts to measure")
	flag.Parse()

	dir, err := os.MkdirTemp("", "pullgate-bench-")
	check(err)
	defer os.RemoveAll(dir)

	cold := measure(*bin, dir)
	var warm []sample
	for range *runs {
		warm = append(warm, measure(*bin, dir))
	}
	sort.Slice(warm, func(i, j int) bool { return warm[i].ready < warm[j].ready })
	median := warm[len(warm)/2]
	maxRSS := cold.rssMB
	for _, s := range warm {
		maxRSS = max(maxRSS, s.rssMB)
	}

	fmt.Printf("%-28s %12s %12s %28s\n", "pullgate up (2 cores)", "measured", "goal", "anchor (brief, not re-run)")
	fmt.Printf("%-28s %12s %12s %28s\n", "cold start to ready", round(cold.ready), "-", "bare kube-apiserver ~3 s")
	fmt.Printf("%-28s %12s %12s %28s\n", fmt.Sprintf("warm start to ready (p50/%d)", *runs), round(median.ready), "< 10 s", "bare kube-apiserver ~3 s")
	fmt.Printf("%-28s %12s %12s %28s\n", "SIGTERM to exit (p50)", round(median.stop), "< 10 s", "-")
	fmt.Printf("%-28s %9.0f MB %12s %28s\n", "peak RSS", maxRSS, "-", "bare kube-apiserver ~270 MB")
}

// measure starts pullgate on dir, waits for its ready line, reads its peak RSS, then
// stops it with SIGTERM.
func measure(bin, dir string) sample {
	port, err := harness.FreePort()
	check(err)
	cmd := exec.Command(bin, "up", "--data-dir", dir, "--api-port", strconv.Itoa(port))
	stdout, err := cmd.StdoutPipe()
	check(err)
	cmd.Stderr = io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	begin := time.Now()
	check(cmd.Start())
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), harness.ReadyLine) {
	}
	s := sample{ready: time.Since(begin)}
	go io.Copy(io.Discard, stdout)
	s.rssMB = peakRSS(cmd.Process.Pid)
	stopBegin := time.Now()
	check(cmd.Process.Signal(syscall.SIGTERM))
	check(cmd.Wait())
	s.stop = time.Since(stopBegin)
	return s
}

func peakRSS(pid int) float64 {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	check(err)
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}

func round(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchup:", err)
		os.Exit(1)
	}
}
