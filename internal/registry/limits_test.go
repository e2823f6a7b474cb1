package registry

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A request answered before its body was read is answered at once and its
// connection closed; a body that stalls longer than the idle timeout is cut; one
// that keeps coming, however slowly, is read to its end.
func TestBodyLimits(t *testing.T) {
	srv := httptest.NewServer(bodyLimits{idle: 300 * time.Millisecond, next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d", n)
	})})
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	send := func(path string, body func(net.Conn)) (string, error) {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", path)
		go body(c)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return "", err
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			// Closed either way: a FIN reads as EOF; a reset (the server closed with
			// the unread body in its buffer, as happens under load) as ECONNRESET.
			if _, err := r.ReadByte(); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
				return "", fmt.Errorf("connection left open after the refusal: %v", err)
			}
		}
		return resp.Status + " " + string(data), nil
	}

	got, err := send("/refuse", func(c net.Conn) { _, _ = c.Write([]byte("only ten b")) })
	if err != nil || !strings.HasPrefix(got, "401") {
		t.Errorf("refused with an unfinished body: %q %v", got, err)
	}
	got, err = send("/read", func(c net.Conn) { _, _ = c.Write([]byte("stalls")) })
	if err == nil && !strings.HasPrefix(got, "400") {
		t.Errorf("a stalled body was not cut: %q", got)
	}
	got, err = send("/read", func(c net.Conn) {
		for range 10 { // 1000 bytes over ~1 s: slower than the idle timeout in total, never idle for it
			_, _ = c.Write([]byte(strings.Repeat("x", 100)))
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err != nil || got != "200 OK 1000" {
		t.Errorf("a slow, steady body: %q %v, want 200 OK 1000", got, err)
	}
}
