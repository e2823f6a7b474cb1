package kubelet

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"pullgate.dev/pullgate/internal/platform/atomicfile"
)

// What the kubelet, kube-proxy, containerd and the CNI plugins change on a host, and
// that a stop puts back.
var (
	// trackedSysctls are set by the kubelet (kernel.panic, kernel.panic_on_oops,
	// vm.overcommit_memory), the bridge plugin and kube-proxy.
	trackedSysctls = []string{
		"kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory",
		"net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet",
		"net/ipv6/conf/all/forwarding", "net/bridge/bridge-nf-call-iptables",
		"net/bridge/bridge-nf-call-ip6tables",
	}
	// trackedPaths are created by the kubelet, containerd and CNI whatever their
	// configuration says; those that did not exist before are removed.
	trackedPaths = []string{
		"/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni",
		"/opt/containerd", "/run/containerd", "/var/lib/containerd", "/etc/cni",
		"/run/netns", "/var/run/netns",
	}
	iptablesTables = []string{"filter", "nat", "mangle"}
)

// hostState is the host before the node started, kept in the node's directory so that
// a start after a SIGKILLed one can still put it back.
type hostState struct {
	Sysctls map[string]string `json:"sysctls"`
	// Created are tracked paths that did not exist.
	Created []string `json:"created"`
	// Chains are the KUBE-* iptables chains that existed, per "iptables/table".
	Chains map[string][]string `json:"chains"`
	// Tables are the nftables tables that existed ("family name"): iptables-nft
	// makes its tables on first use, and empty ones are removed again.
	Tables []string `json:"tables"`
	// BridgeExisted says the pod bridge was there before.
	BridgeExisted bool `json:"bridgeExisted"`
	// PIDs are the node's processes, by name.
	PIDs map[string]int `json:"pids"`
}

// snapshotHost reads what the node may change.
func snapshotHost() hostState {
	s := hostState{Sysctls: map[string]string{}, Chains: map[string][]string{}, PIDs: map[string]int{}}
	for _, k := range trackedSysctls {
		if v, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			s.Sysctls[k] = strings.TrimSpace(string(v))
		}
	}
	for _, p := range trackedPaths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			s.Created = append(s.Created, p)
		}
	}
	for _, cmd := range iptablesCommands() {
		for _, table := range iptablesTables {
			s.Chains[cmd+"/"+table] = kubeChains(cmd, table)
		}
	}
	s.Tables = nftTables()
	_, err := os.Stat(filepath.Join("/sys/class/net", Bridge))
	s.BridgeExisted = err == nil
	return s
}

func (s hostState) save(path string) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Replace(path, data, 0o600)
}

func loadHostState(path string) (hostState, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return hostState{}, false, nil
	}
	if err != nil {
		return hostState{}, false, err
	}
	var s hostState
	if err := json.Unmarshal(data, &s); err != nil {
		return hostState{}, false, fmt.Errorf("%s: %w", path, err)
	}
	return s, true, nil
}

// restoreHost puts the host back as s found it: the node's processes and every
// process in the kubepods cgroups killed, its mounts undone, cgroups, the bridge,
// iptables chains, sysctls and paths it created removed. It goes on after an error
// and returns them all.
func restoreHost(f Files, s hostState, log *slog.Logger) error {
	var errs []error
	for name, pid := range s.PIDs {
		killOwned(pid, f.Dir, name, log)
	}
	for range 3 { // processes may fork while being killed
		killCgroupProcesses()
	}
	killShims(f.ContainerdSocket())
	errs = append(errs, unmountUnder(f.RunDir, f.Dir)...)
	errs = append(errs, removeCgroups()...)
	if !s.BridgeExisted {
		if _, err := os.Stat(filepath.Join("/sys/class/net", Bridge)); err == nil {
			if out, err := exec.Command("ip", "link", "delete", Bridge).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("ip link delete %s: %v: %s", Bridge, err, out))
			}
		}
	}
	for _, cmd := range iptablesCommands() {
		for _, table := range iptablesTables {
			errs = append(errs, removeKubeChains(cmd, table, s.Chains[cmd+"/"+table])...)
		}
	}
	errs = append(errs, removeEmptyTables(s.Tables)...)
	for k, v := range s.Sysctls {
		path := filepath.Join("/proc/sys", k)
		if now, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(now)) != v {
			if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(k, "/", "."), v, err))
			}
		}
	}
	for _, p := range slices.Backward(s.Created) {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range []string{f.RunDir, f.CNIIPAMDir()} {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killOwned kills pid if it is still a process of this node (its command line names
// the node's directory): a pid may have been reused since.
func killOwned(pid int, dir, name string, log *slog.Logger) {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
		return
	}
	log.Info("stopping a process left by an earlier run", "process", name, "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	waitGone(pid, 5*time.Second)
}

func waitGone(pid int, timeout time.Duration) {
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		// A zombie child of ours counts as gone.
		if syscall.Kill(pid, 0) != nil || zombie(pid) {
			return
		}
	}
}

// cgroupRoots are the kubelet's pod cgroups in every hierarchy (cgroup v1: one per
// controller; v2: one).
func cgroupRoots() []string {
	var roots []string
	if _, err := os.Stat("/sys/fs/cgroup/kubepods"); err == nil {
		roots = append(roots, "/sys/fs/cgroup/kubepods")
	}
	matches, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	return append(roots, matches...)
}

// killCgroupProcesses SIGKILLs every process in the kubepods cgroups: the pods'
// containers and sandboxes, whoever their parent is now.
func killCgroupProcesses() {
	for _, root := range cgroupRoots() {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			data, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			for _, field := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(field); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
}

// killShims kills the containerd shims serving this node's containerd (they outlive
// it by design).
func killShims(socket string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmdline, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(cmdline, []byte("containerd-shim")) || !bytes.Contains(cmdline, []byte(socket)) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitGone(pid, 5*time.Second)
		}
	}
}

// unmountUnder detaches every mount under the given directories, deepest first.
func unmountUnder(dirs ...string) []error {
	var errs []error
	for range 3 { // mounts may be stacked
		points := mountsUnder(dirs...)
		if len(points) == 0 {
			return nil
		}
		errs = nil
		for _, p := range points {
			if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
			}
		}
	}
	return errs
}

func mountsUnder(dirs ...string) []string {
	file, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer file.Close()
	var points []string
	scan := bufio.NewScanner(file)
	scan.Buffer(make([]byte, 64<<10), 1<<20)
	for scan.Scan() {
		fields := strings.Fields(scan.Text())
		if len(fields) < 5 {
			continue
		}
		point := unescapeMount(fields[4])
		for _, d := range dirs {
			if point == d || strings.HasPrefix(point, d+"/") {
				points = append(points, point)
				break
			}
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	return points
}

// unescapeMount reads mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeCgroups removes the kubepods cgroups, leaves first, waiting for killed
// processes to leave them.
func removeCgroups() []error {
	var errs []error
	for _, root := range cgroupRoots() {
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			var err error
			for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) || time.Now().After(end) {
					break
				}
			}
			if err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("cgroup %s: %w", d, err))
			}
		}
	}
	return errs
}

// iptablesCommands are the iptables front ends on this host.
func iptablesCommands() []string {
	var cmds []string
	for _, c := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(c); err == nil {
			cmds = append(cmds, c)
		}
	}
	return cmds
}

// kubeChains lists the KUBE-* chains of table.
func kubeChains(cmd, table string) []string {
	out, err := exec.Command(cmd, "-w", "5", "-t", table, "-S").Output()
	if err != nil {
		return nil
	}
	var chains []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "-N" && strings.HasPrefix(f[1], "KUBE-") {
			chains = append(chains, f[1])
		}
	}
	return chains
}

// removeKubeChains deletes the KUBE-* chains of table that were not there before,
// and every rule that jumps to them.
func removeKubeChains(cmd, table string, before []string) []error {
	var made []string
	for _, c := range kubeChains(cmd, table) {
		if !slices.Contains(before, c) {
			made = append(made, c)
		}
	}
	if len(made) == 0 {
		return nil
	}
	out, err := exec.Command(cmd, "-w", "5", "-t", table, "-S").Output()
	if err != nil {
		return []error{fmt.Errorf("%s -t %s -S: %w", cmd, table, err)}
	}
	var errs []error
	run := func(args ...string) {
		if out, err := exec.Command(cmd, append([]string{"-w", "5", "-t", table}, args...)...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("%s -t %s %s: %v: %s", cmd, table, strings.Join(args, " "), err, bytes.TrimSpace(out)))
		}
	}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "-A" || slices.Contains(made, f[1]) {
			continue
		}
		if j := slices.Index(f, "-j"); j > 0 && j+1 < len(f) && slices.Contains(made, f[j+1]) {
			run(append([]string{"-D"}, splitRule(strings.TrimSpace(line))[1:]...)...)
		}
	}
	for _, c := range made {
		run("-F", c)
	}
	for _, c := range made {
		run("-X", c)
	}
	return errs
}

// splitRule splits an iptables -S line into arguments, keeping quoted comments whole.
func splitRule(line string) []string {
	var args []string
	var cur strings.Builder
	quoted := false
	for _, r := range line {
		switch {
		case r == '"':
			quoted = !quoted
		case r == ' ' && !quoted:
			if cur.Len() > 0 {
				args = append(args, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		args = append(args, cur.String())
	}
	return args
}

// nftTables lists the nftables tables as "family name".
func nftTables() []string {
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		return nil
	}
	var tables []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "table" {
			tables = append(tables, f[1]+" "+f[2])
		}
	}
	return tables
}

// removeEmptyTables deletes the tables made since before that hold no rules (only
// the built-in chains iptables-nft makes with them).
func removeEmptyTables(before []string) []error {
	var errs []error
	for _, t := range nftTables() {
		if slices.Contains(before, t) {
			continue
		}
		f := strings.Fields(t)
		out, err := exec.Command("nft", "list", "table", f[0], f[1]).Output()
		if err != nil || !onlyChains(string(out)) {
			continue
		}
		if out, err := exec.Command("nft", "delete", "table", f[0], f[1]).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("nft delete table %s: %v: %s", t, err, bytes.TrimSpace(out)))
		}
	}
	return errs
}

// onlyChains says whether a table listing has chains but no rules.
func onlyChains(listing string) bool {
	for line := range strings.Lines(listing) {
		l := strings.TrimSpace(line)
		if l == "" || l == "}" || strings.HasPrefix(l, "table ") || strings.HasPrefix(l, "chain ") || strings.HasPrefix(l, "type ") {
			continue
		}
		return false
	}
	return true
}
