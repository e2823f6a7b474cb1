package harness

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"
)

// NameProxy gives the tests' host names to this machine without touching /etc/hosts
// (which needs root): it is an HTTP proxy that sends every request for a name under
// its suffix — a CONNECT tunnel or a plain request — to 127.0.0.1 on the same port.
// pullgate, crane, skopeo and podman all find it through HTTPS_PROXY and HTTP_PROXY,
// as every Go and containers/image client does, and connect through it; TLS stays end
// to end, so certificates are checked for the real names. Names outside the suffix
// are refused: the tests never reach the network through it.
type NameProxy struct {
	// URL is the proxy's address, for HTTPS_PROXY.
	URL    string
	suffix string
	srv    *http.Server
	mu     sync.Mutex
	open   map[net.Conn]bool // tunnels' connections, closed by Close
}

// StartNameProxy serves a NameProxy for the names under suffix (e.g. "example.com").
func StartNameProxy(suffix string) (*NameProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &NameProxy{URL: "http://" + l.Addr().String(), suffix: "." + strings.TrimPrefix(suffix, "."), open: map[net.Conn]bool{}}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(l) }()
	return p, nil
}

// Env is the environment that sends a process's registry traffic through the proxy.
// Loopback addresses and "localhost" are never proxied by Go's clients.
func (p *NameProxy) Env() []string {
	return []string{"HTTPS_PROXY=" + p.URL, "HTTP_PROXY=" + p.URL, "https_proxy=" + p.URL, "http_proxy=" + p.URL, "NO_PROXY=", "no_proxy="}
}

// Close stops the proxy and its tunnels.
func (p *NameProxy) Close() error {
	err := p.srv.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.open {
		c.Close()
	}
	return err
}

func (p *NameProxy) track(c net.Conn, open bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if open {
		p.open[c] = true
	} else {
		delete(p.open, c)
		c.Close()
	}
}

// target is where a request for hostport goes: loopback, same port.
func (p *NameProxy) target(hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, "80"
	}
	if !strings.HasSuffix(strings.ToLower(strings.TrimSuffix(host, ".")), p.suffix) {
		return "", errors.New("the test proxy serves only names under " + p.suffix[1:])
	}
	return net.JoinHostPort("127.0.0.1", port), nil
}

func (p *NameProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		p.forward(w, r)
		return
	}
	to, err := p.target(r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	upstream, err := net.DialTimeout("tcp", to, 10*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	client, buffered, err := http.NewResponseController(w).Hijack()
	if err != nil {
		upstream.Close()
		return
	}
	_, _ = client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	p.track(client, true)
	p.track(upstream, true)
	go func() {
		var both sync.WaitGroup
		both.Add(2)
		go func() { defer both.Done(); copyThenCloseWrite(upstream, io.MultiReader(buffered, client)) }()
		go func() { defer both.Done(); copyThenCloseWrite(client, upstream) }()
		both.Wait()
		p.track(client, false)
		p.track(upstream, false)
	}()
}

// copyThenCloseWrite copies src to dst, then tells dst's peer that nothing more comes.
func copyThenCloseWrite(dst net.Conn, src io.Reader) {
	_, _ = io.Copy(dst, src)
	if c, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = c.CloseWrite()
	}
}

// forward serves a plain-HTTP request made through the proxy.
func (p *NameProxy) forward(w http.ResponseWriter, r *http.Request) {
	to, err := p.target(r.URL.Host)
	if err != nil || !r.URL.IsAbs() {
		http.Error(w, "the test proxy forwards only absolute requests for names under "+p.suffix[1:], http.StatusForbidden)
		return
	}
	(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.Out.URL.Host = to
		pr.Out.Host = r.Host
	}}).ServeHTTP(w, r)
}
