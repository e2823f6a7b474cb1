package harness

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// Balancer is a round-robin TCP load balancer in front of registry replicas, as a
// Kubernetes Service without session affinity is: each new connection goes to the
// next backend that accepts it.
type Balancer struct {
	listener net.Listener
	backends []string
	next     atomic.Uint64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	// Connections counts connections per backend.
	connections []atomic.Int64
}

// StartBalancer listens on a loopback port and forwards to backends (host:port).
func StartBalancer(backends ...string) (*Balancer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Balancer{listener: l, backends: backends, conns: map[net.Conn]struct{}{}, connections: make([]atomic.Int64, len(backends))}
	b.wg.Add(1)
	go b.serve()
	return b, nil
}

// Addr is host:port of the balancer.
func (b *Balancer) Addr() string { return b.listener.Addr().String() }

// Port is the balancer's port.
func (b *Balancer) Port() int { return b.listener.Addr().(*net.TCPAddr).Port }

// Connections is how many connections went to backend i.
func (b *Balancer) Connections(i int) int64 { return b.connections[i].Load() }

func (b *Balancer) serve() {
	defer b.wg.Done()
	for {
		client, err := b.listener.Accept()
		if err != nil {
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.forward(client)
		}()
	}
}

// forward dials the backends in turn, from the next one, until one accepts.
func (b *Balancer) forward(client net.Conn) {
	defer client.Close()
	start := b.next.Add(1)
	var backend net.Conn
	for i := range b.backends {
		n := int((start + uint64(i)) % uint64(len(b.backends)))
		conn, err := net.Dial("tcp", b.backends[n])
		if err == nil {
			backend = conn
			b.connections[n].Add(1)
			break
		}
	}
	if backend == nil {
		return
	}
	defer backend.Close()
	b.track(client, backend)
	defer b.untrack(client, backend)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(backend, client); backend.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, backend); client.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}

func (b *Balancer) track(conns ...net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range conns {
		b.conns[c] = struct{}{}
	}
}

func (b *Balancer) untrack(conns ...net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range conns {
		delete(b.conns, c)
	}
}

// Close stops accepting and cuts every open connection.
func (b *Balancer) Close() {
	b.listener.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}
