package harness

import "net/http"

// CutAfter wraps w so that the response is cut — its connection closed mid-body —
// once limit bytes of body have been written: a transfer interrupted by the network.
// The handler is then aborted (http.ErrAbortHandler).
func CutAfter(w http.ResponseWriter, limit int) http.ResponseWriter {
	return &cutWriter{ResponseWriter: w, left: limit}
}

type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(b []byte) (int, error) {
	if len(b) <= c.left {
		c.left -= len(b)
		return c.ResponseWriter.Write(b)
	}
	_, _ = c.ResponseWriter.Write(b[:c.left])
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	if conn, _, err := http.NewResponseController(c.ResponseWriter).Hijack(); err == nil {
		conn.Close()
	}
	panic(http.ErrAbortHandler)
}
