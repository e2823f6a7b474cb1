package console

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// A console's login link works once. Whoever opened it (a browser, or anyone's curl)
// holds the session; the console's owner gets a fresh link — which, once used, ends
// that session — through a Unix socket in pullgate up's data directory, which only the
// data directory's owner can reach (the directory is 0700, the socket 0600).

// LinkSocket is the socket of up's console in dataDir.
func LinkSocket(dataDir string) string { return filepath.Join(dataDir, "console.sock") }

// NewLoginURL replaces the console's login token with a new one and returns the link
// that holds it. The session open now lasts until the new link is used.
func (s *Server) NewLoginURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loginToken = randomHex(32)
	return s.base + "/login?token=" + s.loginToken
}

// ServeLoginLinks answers `pullgate console --url` on socket until ctx ends.
func ServeLoginLinks(ctx context.Context, socket string, s *Server) error {
	_ = os.Remove(socket) // left by a pullgate up that was killed
	l, err := net.Listen("unix", socket)
	if err != nil {
		return fmt.Errorf("console link socket: %w", err)
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("console link socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login-url", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, s.NewLoginURL())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); srv.Close(); os.Remove(socket) }()
	go func() { _ = srv.Serve(l) }()
	return nil
}

// RequestLoginURL asks the pullgate up whose console serves links on socket for a new
// login link.
func RequestLoginURL(ctx context.Context, socket string) (string, error) {
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://console/login-url", nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("no pullgate up console answers at %s: start pullgate up, or pass its --data-dir (%w)", socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("pullgate up's console at %s answered %s: %s", socket, resp.Status, body)
	}
	return strings.TrimSpace(string(body)), nil
}
