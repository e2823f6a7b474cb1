package registry

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// DefaultBodyIdleTimeout is how long a request body may stall before the connection
// is cut.
const DefaultBodyIdleTimeout = time.Minute

// bodyLimits protects the server from request bodies that never end, without a
// deadline on the whole request that would cut a slow but steady upload of a large
// blob:
//
//   - the connection's read deadline is idle from now, and moves forward each time
//     body bytes arrive: a client that stops sending is cut off after idle, one that
//     keeps sending, however slowly, is not;
//   - a request answered before its body was read (refused, say, because it carries
//     no valid token) is answered at once and its connection closed, instead of the
//     server reading on what the client may never finish sending.
type bodyLimits struct {
	next http.Handler
	idle time.Duration
}

func (h bodyLimits) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		h.next.ServeHTTP(w, r)
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(h.idle)); err != nil {
		h.next.ServeHTTP(w, r) // not a real connection (tests)
		return
	}
	body := &progressBody{ReadCloser: r.Body, rc: rc, idle: h.idle, moved: time.Now()}
	r.Body = body
	h.next.ServeHTTP(&closeIfUnread{ResponseWriter: w, body: body, rc: rc}, r)
}

// progressBody moves the read deadline forward as bytes arrive, at most every
// idle/8 (a deadline change is a system call).
type progressBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	idle  time.Duration
	mu    sync.Mutex
	moved time.Time
	eof   bool
}

func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	if now := time.Now(); n > 0 && now.Sub(b.moved) > b.idle/8 {
		b.moved = now
		_ = b.rc.SetReadDeadline(now.Add(b.idle))
	}
	return n, err
}

func (b *progressBody) done() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eof
}

// closeIfUnread closes the connection after the answer when the answer goes out
// before the request's body was read to its end: Go's server would otherwise read
// what is left of the body (up to 256 KiB) before writing the answer, and again
// before closing, at the pace the client chooses.
type closeIfUnread struct {
	http.ResponseWriter
	body    *progressBody
	rc      *http.ResponseController
	decided bool
}

func (c *closeIfUnread) WriteHeader(code int) {
	c.decide()
	c.ResponseWriter.WriteHeader(code)
}

func (c *closeIfUnread) Write(b []byte) (int, error) {
	c.decide()
	return c.ResponseWriter.Write(b)
}

// decide, when the answer begins: a handler that answers has read all it will.
func (c *closeIfUnread) decide() {
	if c.decided {
		return
	}
	c.decided = true
	if !c.body.done() {
		c.Header().Set("Connection", "close")
		// Whatever is left of the body is not waited for.
		_ = c.rc.SetReadDeadline(time.Now())
	}
}

func (c *closeIfUnread) Unwrap() http.ResponseWriter { return c.ResponseWriter }
