// Package listen binds the TCP ports pullgate serves on, before anything else
// starts, and when a port is taken says which process holds it (when this user may
// see it, from /proc).
package listen

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// TCP listens on address; a failure names the address, the process holding it when
// known, and flag, the option that chooses another.
func TCP(address, flag string) (net.Listener, error) {
	l, err := net.Listen("tcp", address)
	if err == nil {
		return l, nil
	}
	var sys *os.SyscallError
	cause := err
	if errors.As(err, &sys) {
		cause = sys.Err
	}
	held := ""
	if _, portStr, perr := net.SplitHostPort(address); perr == nil {
		if port, perr := strconv.Atoi(portStr); perr == nil {
			if h := Holder(port); h != "" {
				held = ", held by " + h
			}
		}
	}
	return nil, fmt.Errorf("%s is not available (%v%s): stop what holds it or choose another port with %s", address, cause, held, flag)
}

// Holder names the process listening on TCP port, e.g. `pid 812 (docker-registry
// serve /etc/docker/registry/config.yml)`, or "" when it cannot be found (another
// user's process, or no /proc).
func Holder(port int) string {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		for _, inode := range listeningInodes(table, port) {
			inodes[inode] = true
		}
	}
	if len(inodes) == 0 {
		return ""
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		link, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
			pid := strings.Split(fd, "/")[2]
			return fmt.Sprintf("pid %s (%s)", pid, command(pid))
		}
	}
	return ""
}

// listeningInodes are the socket inodes listening on port in a /proc/net/tcp table.
func listeningInodes(table string, port int) []string {
	f, err := os.Open(table)
	if err != nil {
		return nil
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		if len(fields) < 10 || fields[3] != "0A" || !strings.HasSuffix(fields[1], want) {
			continue
		}
		out = append(out, fields[9])
	}
	return out
}

// command is the process's command line, shortened.
func command(pid string) string {
	data, err := os.ReadFile("/proc/" + pid + "/cmdline")
	if err != nil || len(data) == 0 {
		name, _ := os.ReadFile("/proc/" + pid + "/comm")
		return strings.TrimSpace(string(name))
	}
	cmd := strings.TrimSpace(strings.ReplaceAll(string(data), "\x00", " "))
	if len(cmd) > 120 {
		cmd = cmd[:117] + "..."
	}
	return cmd
}

// FreePorts returns n loopback ports that were free a moment ago, for components
// that bind their own ports (health, metrics, peers).
func FreePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free loopback port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
