package realnode

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// hostView is what a kubelet, kube-proxy, containerd and CNI change on a host, read
// by hand here (not with the code under test).
type hostView map[string]string

// volatileSysctls change on their own.
var volatileSysctls = regexp.MustCompile(`^(kernel/random/|kernel/ns_last_pid|kernel/pty/nr|kernel/tainted|vm/stat_refresh|vm/drop_caches|vm/compact_memory|net/ipv4/tcp_mem|net/ipv4/udp_mem|net/ipv4/tcp_fastopen_key|net/ipv4/fib_|kernel/sched_domain)`)

func snapshotHost() (hostView, error) {
	v := hostView{}
	for _, dir := range []string{"kernel", "vm", "net/ipv4", "net/ipv6/conf/all", "net/bridge", "net/netfilter"} {
		root := filepath.Join("/proc/sys", dir)
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			rel, _ := filepath.Rel("/proc/sys", path)
			if d.IsDir() {
				// One level below net/ipv4 (conf/all, neigh/default), not every interface.
				if strings.HasPrefix(rel, "net/ipv4/") && strings.Count(rel, "/") >= 3 && !strings.HasPrefix(rel, "net/ipv4/conf/all") {
					return fs.SkipDir
				}
				return nil
			}
			if volatileSysctls.MatchString(rel) || d.Type()&fs.ModePerm == 0 {
				return nil
			}
			if data, err := os.ReadFile(path); err == nil {
				v["sysctl "+rel] = strings.TrimSpace(string(data))
			}
			return nil
		})
	}
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(cmd).Output()
		if err != nil {
			continue
		}
		var rules []string
		for line := range strings.Lines(string(out)) {
			if !strings.HasPrefix(line, "#") {
				rules = append(rules, regexp.MustCompile(`\[\d+:\d+\]`).ReplaceAllString(strings.TrimSpace(line), ""))
			}
		}
		v[cmd] = strings.Join(rules, "\n")
	}
	if out, err := exec.Command("nft", "list", "tables").Output(); err == nil {
		v["nft tables"] = strings.TrimSpace(string(out))
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var points []string
	for line := range strings.Lines(string(mounts)) {
		if f := strings.Fields(line); len(f) > 4 {
			points = append(points, f[4])
		}
	}
	slices.Sort(points)
	v["mounts"] = strings.Join(points, "\n")
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	if more, _ := filepath.Glob("/sys/fs/cgroup/kubepods"); len(more) > 0 {
		cgroups = append(cgroups, more...)
	}
	v["kubepods cgroups"] = strings.Join(cgroups, " ")
	ifaces, _ := net.Interfaces()
	var links []string
	for _, i := range ifaces {
		links = append(links, i.Name)
	}
	v["links"] = strings.Join(links, " ")
	for _, p := range []string{"/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni", "/opt/containerd", "/run/containerd", "/var/lib/containerd", "/etc/cni", "/run/netns"} {
		_, err := os.Lstat(p)
		v["exists "+p] = fmt.Sprint(err == nil)
	}
	return v, nil
}

// diff lists what changed from v to w.
func (v hostView) diff(w hostView) string {
	var keys []string
	for k := range v {
		keys = append(keys, k)
	}
	for k := range w {
		if _, ok := v[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		if v[k] != w[k] {
			fmt.Fprintf(&b, "%s:\n  before: %q\n  after:  %q\n", k, v[k], w[k])
		}
	}
	return b.String()
}
