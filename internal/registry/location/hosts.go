package location

import (
	"context"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// Hosts are the names (host or host:port) the integrated registry answers to. It is
// the one place that says whether something is the integrated registry: the node
// sends a pod's service account token only to it, refuses a registry elsewhere
// that names its token service, and explains pulls by it.
type Hosts []string

// Has reports whether host is one of the registry's names (case does not matter).
func (h Hosts) Has(host string) bool {
	return slices.ContainsFunc(h, func(n string) bool { return strings.EqualFold(n, host) })
}

// Holds reports whether ref is an image on the integrated registry.
func (h Hosts) Holds(ref name.Reference) bool { return h.Has(ref.Context().RegistryStr()) }

// Names reports whether u points at the integrated registry: by one of its names, or
// under another (an alias, an address, another spelling): the same port and a name
// that resolves to an address one of the registry's names resolves to.
func (h Hosts) Names(ctx context.Context, u *url.URL) bool {
	if h.Has(u.Host) {
		return true
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ips := lookup(ctx, u.Hostname())
	if len(ips) == 0 {
		return false
	}
	for _, n := range h {
		host, hostPort, err := net.SplitHostPort(n)
		if err != nil {
			host, hostPort = n, "443"
		}
		if hostPort != port {
			continue
		}
		for _, ip := range lookup(ctx, host) {
			if slices.ContainsFunc(ips, ip.Equal) {
				return true
			}
		}
	}
	return false
}

func lookup(ctx context.Context, host string) []net.IP {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}
	}
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil
	}
	ips := make([]net.IP, len(addrs))
	for i, a := range addrs {
		ips[i] = a.IP
	}
	return ips
}
