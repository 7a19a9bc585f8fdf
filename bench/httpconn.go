package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// requestTimeout bounds one request, like an HTTP client's timeout.
const requestTimeout = 30 * time.Second

// httpConn is one keep-alive HTTP/1.1 connection that sends POSTs and reads their answers,
// and nothing else. The load generator shares the API's two cores, and net/http's client
// (a transport with two goroutines per connection, channels and a context per request) cost
// about as much CPU per order as the API itself, where pgbench costs a tenth of that: the
// comparison would have measured Go's HTTP client. This costs one write and one read per
// request, like pgbench's libpq.
type httpConn struct {
	addr, host string
	c          net.Conn
	r          *bufio.Reader
	buf        []byte
	stop       func() bool
}

// newHTTPConn prepares a connection to base, an http:// URL; it dials on first use.
func newHTTPConn(base string) (*httpConn, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("parsing api url: %w", err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("the load generator speaks plain http to a host, not %q", base)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return &httpConn{addr: addr, host: u.Host}, nil
}

func (h *httpConn) close() {
	if h.c != nil {
		h.stop()
		_ = h.c.Close()
		h.c = nil
	}
}

// response is what the load generator needs of an answer.
type response struct {
	status     int
	retryAfter bool
	body       []byte // only for statuses other than 201, to report them
}

// post sends one POST with headers (name, value pairs, canonical names) and body, and reads
// the answer. Any error closes the connection; the next post dials again.
func (h *httpConn) post(ctx context.Context, path string, headers []string, body []byte) (response, error) {
	if h.c == nil {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", h.addr)
		if err != nil {
			return response{}, err
		}
		h.c, h.r = c, bufio.NewReaderSize(c, 4096)
		// A cancelled run must not wait out a request's timeout.
		h.stop = context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	}
	b := append(h.buf[:0], "POST "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, h.host...)
	for i := 0; i+1 < len(headers); i += 2 {
		b = append(b, "\r\n"...)
		b = append(b, headers[i]...)
		b = append(b, ": "...)
		b = append(b, headers[i+1]...)
	}
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	h.buf = b
	_ = h.c.SetDeadline(time.Now().Add(requestTimeout))
	if _, err := h.c.Write(b); err != nil {
		h.close()
		return response{}, fmt.Errorf("sending request: %w", err)
	}
	resp, keep, err := h.read()
	if err != nil || !keep {
		h.close()
	}
	return resp, err
}

var (
	errMalformedResponse = errors.New("malformed http response")
	hdrContentLength     = []byte("content-length:")
	hdrRetryAfter        = []byte("retry-after:")
	hdrConnection        = []byte("connection:")
	hdrTransferEncoding  = []byte("transfer-encoding:")
)

// read reads one answer: the status line, the headers it needs, and the body (by
// Content-Length, or chunked). keep is false when the server closes the connection.
func (h *httpConn) read() (resp response, keep bool, err error) {
	line, err := h.r.ReadSlice('\n')
	if err != nil {
		return resp, false, fmt.Errorf("reading status line: %w", err)
	}
	// "HTTP/1.1 201 Created\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return resp, false, errMalformedResponse
	}
	if resp.status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return resp, false, errMalformedResponse
	}
	keep = line[7] == '1'
	length, chunked := -1, false
	for {
		line, err = h.r.ReadSlice('\n')
		if err != nil {
			return resp, false, fmt.Errorf("reading headers: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		switch {
		case hasPrefixFold(line, hdrContentLength):
			if length, err = strconv.Atoi(string(headerValue(line, hdrContentLength))); err != nil || length < 0 {
				return resp, false, errMalformedResponse
			}
		case hasPrefixFold(line, hdrRetryAfter):
			resp.retryAfter = true
		case hasPrefixFold(line, hdrConnection):
			if bytes.EqualFold(headerValue(line, hdrConnection), []byte("close")) {
				keep = false
			}
		case hasPrefixFold(line, hdrTransferEncoding):
			chunked = bytes.EqualFold(headerValue(line, hdrTransferEncoding), []byte("chunked"))
		}
	}
	var body io.Reader
	switch {
	case chunked:
		body = &chunkedReader{r: h.r}
	case length >= 0:
		body = io.LimitReader(h.r, int64(length))
	default:
		// No length: the body runs to the end of the connection.
		body, keep = h.r, false
	}
	if resp.status == 201 {
		_, err = io.Copy(io.Discard, body)
	} else {
		resp.body, err = io.ReadAll(io.LimitReader(body, 1<<20))
	}
	if err != nil {
		return resp, false, fmt.Errorf("reading body: %w", err)
	}
	return resp, keep, nil
}

func hasPrefixFold(line, prefix []byte) bool {
	return len(line) >= len(prefix) && bytes.EqualFold(line[:len(prefix)], prefix)
}

func headerValue(line, name []byte) []byte { return bytes.TrimSpace(line[len(name):]) }

// chunkedReader reads a chunked body (RFC 9112 section 7.1) without trailers.
type chunkedReader struct {
	r    *bufio.Reader
	left int64
	done bool
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	for c.left == 0 {
		if c.done {
			return 0, io.EOF
		}
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		size := bytes.TrimSpace(line)
		if i := bytes.IndexByte(size, ';'); i >= 0 {
			size = size[:i]
		}
		n, err := strconv.ParseInt(string(size), 16, 64)
		if err != nil || n < 0 {
			return 0, errMalformedResponse
		}
		if n == 0 {
			c.done = true
			if _, err := c.r.ReadSlice('\n'); err != nil { // the empty line after the last chunk
				return 0, err
			}
			return 0, io.EOF
		}
		c.left = n
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if err == nil && c.left == 0 {
		_, err = c.r.ReadSlice('\n') // the CRLF ending the chunk
	}
	return n, err
}
