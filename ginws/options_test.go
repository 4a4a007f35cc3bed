package ginws_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ginws/ginws/ginws"
)

// ---------------------------------------------------------------------------
// Helpers for this file. The ones ending in Err return errors instead of
// failing the test, so goroutines other than the test's may use them.

// readFrameErr reads one server frame within d.
func readFrameErr(c *client, d time.Duration) (ws.Frame, error) {
	if err := c.nc.SetReadDeadline(time.Now().Add(d)); err != nil {
		return ws.Frame{}, err
	}
	h, err := ws.ReadHeader(c.r)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > 64<<20 {
		return ws.Frame{}, fmt.Errorf("server frame of %d bytes", h.Length)
	}
	f := ws.Frame{Header: h, Payload: make([]byte, h.Length)}
	if _, err := io.ReadFull(c.r, f.Payload); err != nil {
		return ws.Frame{}, err
	}
	if h.Masked {
		return ws.Frame{}, errors.New("server frame is masked")
	}
	return f, nil
}

// writeFrameErr sends one masked, final frame.
func writeFrameErr(c *client, op ws.OpCode, p []byte) error {
	if err := c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	return ws.WriteFrame(c.nc, ws.MaskFrameInPlace(ws.NewFrame(op, true, append([]byte(nil), p...))))
}

// echoErr sends p as a text message and waits for the same message back,
// skipping control frames.
func echoErr(c *client, p []byte) error {
	if err := writeFrameErr(c, ws.OpText, p); err != nil {
		return err
	}
	for {
		f, err := readFrameErr(c, 10*time.Second)
		if err != nil {
			return err
		}
		switch f.Header.OpCode {
		case ws.OpPing, ws.OpPong:
			continue
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			return fmt.Errorf("close %d %q instead of the echo of %q", code, reason, p)
		}
		if !f.Header.Fin || !bytes.Equal(f.Payload, p) {
			return fmt.Errorf("echo of %q: got %q (fin=%v)", p, f.Payload, f.Header.Fin)
		}
		return nil
	}
}

// awaitCloseErr reads until the server's close frame (skipping anything
// else), answers it like a browser does, and reads on to the server's TCP
// close. It returns the code and when the close frame arrived.
func awaitCloseErr(c *client, d time.Duration) (ws.StatusCode, time.Time, error) {
	for {
		f, err := readFrameErr(c, d)
		if err != nil {
			return 0, time.Time{}, err
		}
		if f.Header.OpCode != ws.OpClose {
			continue
		}
		at := time.Now()
		code, _ := ws.ParseCloseFrameData(f.Payload)
		if err := writeFrameErr(c, ws.OpClose, ws.NewCloseFrameBody(code, "")); err != nil {
			return code, at, err
		}
		if err := c.nc.SetReadDeadline(time.Now().Add(d)); err != nil {
			return code, at, err
		}
		if _, err := io.Copy(io.Discard, c.r); err != nil {
			return code, at, fmt.Errorf("after the close frame: %w", err)
		}
		return code, at, c.nc.Close()
	}
}

// drainFrames reads frames until the server closes TCP and returns them.
// It fails the test unless the stream ends with a clean EOF.
func drainFrames(t *testing.T, c *client, d time.Duration) []ws.Frame {
	t.Helper()
	var out []ws.Frame
	for {
		f, err := readFrameErr(c, d)
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err, "after %d frames", len(out))
		out = append(out, f)
	}
}

// lastClose returns the code and reason of the last frame if it is a close.
func lastClose(frames []ws.Frame) (ws.StatusCode, string, bool) {
	if len(frames) == 0 || frames[len(frames)-1].Header.OpCode != ws.OpClose {
		return 0, "", false
	}
	code, reason := ws.ParseCloseFrameData(frames[len(frames)-1].Payload)
	return code, reason, true
}

// waitFor waits for one value, failing the test after d.
func waitFor[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		require.FailNow(t, "timed out waiting for "+what)
	}
	var zero T
	return zero
}

// httpHeader builds a header from name, value pairs.
func httpHeader(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// rawGet sends a plain GET on an existing TCP connection (after a refused
// upgrade, say) and returns the response with its body read.
func rawGet(t *testing.T, nc net.Conn, br *bufio.Reader, host, path string) (*http.Response, string) {
	t.Helper()
	_, err := fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host)
	require.NoError(t, err)
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(5*time.Second)))
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func responseBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// pongClient reads frames in a goroutine, counting pings and answering
// them with pongs, and hands every other frame to the test.
type pongClient struct {
	*client
	wmu    sync.Mutex // serialises the reader's pongs with the test's writes
	closed bool       // under wmu: the close is sent, so no pong may follow it
	pings  atomic.Int64
	frames chan ws.Frame
	done   chan error // the error that ended the reader (io.EOF normally)
}

func startPongClient(c *client) *pongClient {
	p := &pongClient{client: c, frames: make(chan ws.Frame, 4096), done: make(chan error, 1)}
	go func() {
		defer close(p.frames)
		for {
			f, err := readFrameErr(c, 10*time.Second)
			if err != nil {
				p.done <- err
				return
			}
			switch f.Header.OpCode {
			case ws.OpPing:
				p.pings.Add(1)
				if err := p.write(ws.OpPong, f.Payload); err != nil {
					p.done <- err
					return
				}
			case ws.OpPong:
			default:
				p.frames <- f
			}
		}
	}()
	return p
}

// write sends a frame. After the close, a pong for a ping that crossed it
// is not sent (RFC 6455 section 5.5.1): the server may have closed the TCP
// connection already, and the pong would reset it.
func (p *pongClient) write(op ws.OpCode, b []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.closed && op == ws.OpPong {
		return nil
	}
	p.closed = p.closed || op == ws.OpClose
	return writeFrameErr(p.client, op, b)
}

// closeNormally sends close 1000, expects it echoed and then EOF.
func (p *pongClient) closeNormally(t *testing.T) {
	t.Helper()
	require.NoError(t, p.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
	for f := range p.frames {
		if f.Header.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(f.Payload)
			assert.Equal(t, ws.StatusNormalClosure, code)
			break
		}
	}
	err := waitFor(t, p.done, 10*time.Second, "the server's TCP close")
	assert.ErrorIs(t, err, io.EOF)
}

// starvation measures, from now until the returned func is called, the
// longest delay of a 10 ms ticker: how long this process went without CPU.
// Tests with 50-300 ms timing use it to tell a library fault from a
// machine too loaded to keep time.
func starvation(t *testing.T) func() time.Duration {
	const step = 10 * time.Millisecond
	stop, done := make(chan struct{}), make(chan struct{})
	var worst time.Duration
	go func() {
		defer close(done)
		tk := time.NewTicker(step)
		defer tk.Stop()
		last := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			now := time.Now()
			worst = max(worst, now.Sub(last)-step)
			last = now
		}
	}()
	var once sync.Once
	end := func() time.Duration {
		once.Do(func() { close(stop); <-done })
		return worst
	}
	t.Cleanup(func() { end() })
	return end
}

// timely checks a timing condition. When it fails on a machine that left
// this process without CPU for longer than limit, the test is skipped
// instead: the timing says nothing about the library then.
func timely(t *testing.T, starved func() time.Duration, limit time.Duration, ok bool, format string, args ...any) bool {
	t.Helper()
	if ok {
		return true
	}
	if d := starved(); d > limit {
		t.Skipf("machine overloaded, this process went %v without CPU (limit %v): "+format, append([]any{d, limit}, args...)...)
	}
	t.Errorf(format, args...)
	return false
}

// handlerResult is what a test handler reports about its connection.
type handlerResult struct {
	err error
	at  time.Time
}

// perConn hands each handler's report to the subtest that dialed it (by
// the ?id= of the upgrade URL), so one failed subtest cannot feed the next.
type perConn struct {
	m sync.Map
	n atomic.Int64
}

// next returns a query string for the upgrade URL and the channel its
// handler reports on.
func (p *perConn) next() (string, chan handlerResult) {
	id := strconv.FormatInt(p.n.Add(1), 10)
	ch := make(chan handlerResult, 1)
	p.m.Store(id, ch)
	return "?id=" + id, ch
}

func (p *perConn) report(c *gin.Context, r handlerResult) {
	if ch, ok := p.m.Load(c.Query("id")); ok {
		ch.(chan handlerResult) <- r
	}
}

// ---------------------------------------------------------------------------
// 1. MaxPayload

func TestMaxPayload(t *testing.T) {
	type report struct {
		path string
		err  error
	}
	reports := make(chan report, 64)
	// Answers every message with its length; reports the error that ends it.
	lenHandler := func(conn *ginws.Conn, c *gin.Context) error {
		for {
			_, p, err := conn.ReadMessage(c)
			if err == nil {
				err = conn.WriteMessage(c, ginws.MessageText, []byte(strconv.Itoa(len(p))))
			}
			if err != nil {
				reports <- report{c.Request.URL.Path, err}
				return err
			}
		}
	}
	// The server's own default is 2000; routes override or inherit it.
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/small", lenHandler, ginws.MaxPayload(1000))
		s.Handle(r, "/inherit", lenHandler)
		s.Handle(r, "/reset", lenHandler, ginws.MaxPayload(0)) // back to DefaultMaxPayload
	}, ginws.MaxPayload(2000))
	// A server without the option: DefaultMaxPayload.
	plain := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/default", lenHandler)
	})

	// frag is one data frame: n payload bytes, all sent, or only the
	// header claiming them. ping puts a ping before the frame.
	type frag struct {
		n          int64
		headerOnly bool
		ping       bool
	}
	const big = ginws.DefaultMaxPayload
	cases := []struct {
		name   string
		srv    *testServer
		path   string
		frags  []frag
		tooBig bool
	}{
		{"route override: at the limit", ts, "/small", []frag{{n: 1000}}, false},
		{"route override: limit+1", ts, "/small", []frag{{n: 1001}}, true},
		{"route override: header claims 1<<40", ts, "/small", []frag{{n: 1 << 40, headerOnly: true}}, true},
		{"route override: fragments sum to the limit, ping between", ts, "/small", []frag{{n: 400}, {n: 100, ping: true}, {n: 500}}, false},
		{"route override: fragments sum to limit+1", ts, "/small", []frag{{n: 600}, {n: 401}}, true},
		{"route override: continuation header claims 1<<40", ts, "/small", []frag{{n: 10}, {n: 1 << 40, headerOnly: true}}, true},
		{"server default: at the limit", ts, "/inherit", []frag{{n: 2000}}, false},
		{"server default: limit+1", ts, "/inherit", []frag{{n: 2001}}, true},
		{"server default: header claims 1<<40", ts, "/inherit", []frag{{n: 1 << 40, headerOnly: true}}, true},
		{"server default: fragments sum to limit+1", ts, "/inherit", []frag{{n: 1000}, {n: 1000}, {n: 1}}, true},
		{"MaxPayload(0) restores DefaultMaxPayload", ts, "/reset", []frag{{n: 2001}}, false},
		{"MaxPayload(0): DefaultMaxPayload+1 claimed", ts, "/reset", []frag{{n: big + 1, headerOnly: true}}, true},
		{"DefaultMaxPayload: at the limit", plain, "/default", []frag{{n: big}}, false},
		{"DefaultMaxPayload: limit+1 claimed", plain, "/default", []frag{{n: big + 1, headerOnly: true}}, true},
		{"DefaultMaxPayload: header claims 1<<40", plain, "/default", []frag{{n: 1 << 40, headerOnly: true}}, true},
		{"DefaultMaxPayload: fragments sum to limit+1", plain, "/default", []frag{{n: 1 << 20}, {n: big - 1<<20 + 1, headerOnly: true}}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, tc.srv.wsURL(tc.path), nil)
			var total int64
			var lastSent time.Time
			for i, f := range tc.frags {
				if f.ping {
					c.send(ws.OpPing, []byte("p"))
				}
				op := ws.OpBinary
				if i > 0 {
					op = ws.OpContinuation
				}
				fin := i == len(tc.frags)-1
				if f.headerOnly {
					var b bytes.Buffer
					require.NoError(t, ws.WriteHeader(&b, ws.Header{Fin: fin, OpCode: op, Masked: true, Mask: [4]byte{9, 8, 7, 6}, Length: f.n}))
					_, err := c.nc.Write(b.Bytes())
					require.NoError(t, err)
				} else {
					c.sendFrame(fin, op, make([]byte, f.n))
				}
				lastSent = time.Now()
				total += f.n
			}
			if !tc.tooBig {
				_, p := c.readMessage()
				assert.Equal(t, strconv.FormatInt(total, 10), string(p))
				c.sendClose(ws.StatusNormalClosure, "")
				code, _ := c.expectClose()
				assert.Equal(t, ws.StatusNormalClosure, code)
				rep := waitFor(t, reports, 5*time.Second, "the handler's error")
				assert.Equal(t, tc.path, rep.path)
				assert.Equal(t, ginws.StatusNormalClosure, ginws.CloseStatus(rep.err))
				return
			}
			// The close comes at once: nothing more is sent, not even the
			// payload a header announced.
			f := c.readFrame()
			took := time.Since(lastSent)
			require.Equal(t, ws.OpClose, f.Header.OpCode)
			code, _ := ws.ParseCloseFrameData(f.Payload)
			assert.Equal(t, ws.StatusMessageTooBig, code)
			assert.Less(t, took, 2*time.Second)
			require.NoError(t, ws.WriteFrame(c.nc, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(code, "")))))
			c.expectEOF()
			rep := waitFor(t, reports, 5*time.Second, "the handler's error")
			assert.Equal(t, tc.path, rep.path)
			assert.ErrorIs(t, rep.err, ginws.ErrMessageTooBig)
			assert.Equal(t, ginws.StatusMessageTooBig, ginws.CloseStatus(rep.err))
		})
	}
}

// ---------------------------------------------------------------------------
// 2. VerifyClient

func TestVerifyClient(t *testing.T) {
	var calls atomic.Int32
	verify := func(c *gin.Context) bool {
		calls.Add(1)
		switch c.GetHeader("X-Mode") {
		case "json401":
			c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "bad token"})
			return false
		case "status401":
			c.AbortWithStatus(http.StatusUnauthorized)
			return false
		case "false":
			return false
		case "abort429-true": // aborting wins over the return value
			c.AbortWithStatus(http.StatusTooManyRequests)
			return true
		case "abort-true": // aborted without a response: 403
			c.Abort()
			return true
		case "accept":
			c.Set("user", c.GetHeader("X-User"))
			return true
		}
		return false
	}
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		r.GET("/plain", func(c *gin.Context) { c.String(http.StatusOK, "plain") })
		s.Handle(r, "/ws", func(conn *ginws.Conn, c *gin.Context) error {
			if err := conn.WriteMessage(c, ginws.MessageText, []byte("user="+c.GetString("user"))); err != nil {
				return err
			}
			return echoHandler(conn, c)
		}, ginws.VerifyClient(verify))
	})
	addr := ts.Listener.Addr().String()

	cases := []struct {
		mode   string
		status int
		body   string
		ctype  string
	}{
		{"json401", http.StatusUnauthorized, `{"error":"bad token"}`, "application/json"},
		{"status401", http.StatusUnauthorized, "", ""},
		{"false", http.StatusForbidden, "Forbidden\n", "text/plain"},
		{"unknown", http.StatusForbidden, "Forbidden\n", "text/plain"},
		{"abort429-true", http.StatusTooManyRequests, "", ""},
		{"abort-true", http.StatusForbidden, "Forbidden\n", "text/plain"},
	}
	for _, tc := range cases {
		t.Run("reject "+tc.mode, func(t *testing.T) {
			before := calls.Load()
			nc, br, resp := rawUpgrade(t, addr, "/ws", map[string]string{"X-Mode": tc.mode}, nil)
			assert.Equal(t, int32(1), calls.Load()-before)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, tc.body, responseBody(t, resp))
			if tc.ctype != "" {
				assert.Contains(t, resp.Header.Get("Content-Type"), tc.ctype)
			}
			assert.Empty(t, resp.Header.Get("Sec-WebSocket-Accept"))
			assert.Empty(t, resp.Header.Get("Upgrade"))
			// Not hijacked: the same TCP connection serves the next request.
			resp2, body := rawGet(t, nc, br, addr, "/plain")
			assert.Equal(t, http.StatusOK, resp2.StatusCode)
			assert.Equal(t, "plain", body)
			assert.Equal(t, 0, ts.ws.Len())
		})
	}

	t.Run("accept: the hook sees headers and its c.Set reaches the handler", func(t *testing.T) {
		c := dial(t, ts.wsURL("/ws"), httpHeader("X-Mode", "accept", "X-User", "alice"))
		_, p := c.readMessage()
		assert.Equal(t, "user=alice", string(p))
		c.send(ws.OpText, []byte("hi"))
		_, p = c.readMessage()
		assert.Equal(t, "hi", string(p))
		c.sendClose(ws.StatusNormalClosure, "")
		c.expectClose()
	})

	t.Run("runs after the handshake and origin checks", func(t *testing.T) {
		before := calls.Load()
		_, _, resp := rawUpgrade(t, addr, "/ws", map[string]string{"X-Mode": "accept", "Sec-WebSocket-Version": "8"}, nil)
		assert.Equal(t, http.StatusUpgradeRequired, resp.StatusCode)
		_, _, resp = rawUpgrade(t, addr, "/ws", map[string]string{"X-Mode": "accept", "Origin": "https://evil.example"}, nil)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
		assert.Equal(t, before, calls.Load(), "VerifyClient must not run for requests already refused")
	})
}

// ---------------------------------------------------------------------------
// 3. Origin

func TestOriginCheck(t *testing.T) {
	var hookCalls atomic.Int32
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/default", echoHandler)
		s.Handle(r, "/patterns", echoHandler, ginws.OriginPatterns("*.example.com", "localhost:*"))
		s.Handle(r, "/null", echoHandler, ginws.OriginPatterns("null"))
		s.Handle(r, "/allow", echoHandler, ginws.CheckOrigin(func(c *gin.Context) bool { hookCalls.Add(1); return true }))
		s.Handle(r, "/deny", echoHandler, ginws.CheckOrigin(func(c *gin.Context) bool { hookCalls.Add(1); return false }))
	})
	addr := ts.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	const absent = "\x00absent"
	cases := []struct {
		path   string
		origin string
		status int
		hook   int32
	}{
		{"/default", absent, 101, 0},
		{"/default", "http://" + addr, 101, 0},
		{"/default", "https://" + addr, 101, 0}, // the scheme is not compared
		{"/default", "http://127.0.0.1:1", 403, 0},
		{"/default", "http://localhost:" + port, 403, 0},
		{"/default", "https://evil.example", 403, 0},
		{"/default", "null", 403, 0},
		{"/default", "https://app.example.com", 403, 0}, // another route's patterns do not leak
		{"/patterns", "https://app.example.com", 101, 0},
		{"/patterns", "https://a.b.example.com", 101, 0},
		{"/patterns", "https://APP.Example.COM", 101, 0},
		{"/patterns", "http://localhost:3000", 101, 0},
		{"/patterns", "http://" + addr, 101, 0},
		{"/patterns", absent, 101, 0},
		{"/patterns", "https://example.com", 403, 0},
		{"/patterns", "https://app.example.com:8443", 403, 0},
		{"/patterns", "https://app.example.com.evil.net", 403, 0},
		{"/patterns", "https://app.example.com@evil.net", 403, 0},
		{"/patterns", "http://localhost", 403, 0},
		{"/patterns", "null", 403, 0},
		{"/null", "null", 101, 0},
		{"/null", "https://evil.example", 403, 0},
		{"/allow", "https://evil.example", 101, 1},
		{"/allow", "null", 101, 1},
		{"/allow", absent, 101, 0},
		{"/deny", "http://" + addr, 403, 1},
		{"/deny", absent, 101, 0},
	}
	for _, tc := range cases {
		t.Run(strings.TrimPrefix(tc.path, "/")+" "+strings.TrimPrefix(tc.origin, "\x00"), func(t *testing.T) {
			h := map[string]string{"Origin": tc.origin}
			if tc.origin == absent {
				h = nil
			}
			before := hookCalls.Load()
			_, _, resp := rawUpgrade(t, addr, tc.path, h, nil)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, tc.hook, hookCalls.Load()-before, "CheckOrigin calls")
		})
	}
	t.Run("two Origin headers", func(t *testing.T) {
		// Both same-origin, on two header lines: still refused.
		_, _, resp := rawUpgrade(t, addr, "/default", map[string]string{"Origin": "http://" + addr, "origin": "http://" + addr}, nil)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	})
}

// TestOriginDefaultPorts: an Origin without a port is on its scheme's
// default port, as a Host without one is: a proxy that writes the port
// into Host does not turn a same-site browser away.
func TestOriginDefaultPorts(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/ws", echoHandler) })
	addr := ts.Listener.Addr().String()
	cases := []struct {
		host, origin string
		status       int
	}{
		{"example.com:80", "http://example.com", 101},
		{"example.com", "http://example.com:80", 101},
		{"example.com:443", "https://example.com", 101},
		{"Example.com:443", "https://example.COM:443", 101},
		{"[::1]:80", "http://[::1]", 101},
		{"example.com:8080", "http://example.com", 403},
		{"example.com:80", "https://example.com", 403},
		{"example.com:443", "http://example.com", 403},
		{"example.com", "http://example.com:8080", 403},
		{"example.com:80", "ftp://example.com", 403},
		{"evil.example:80", "http://example.com", 403},
		{"[::1]", "http://[::2]", 403},
	}
	for _, tc := range cases {
		_, _, resp := rawUpgrade(t, addr, "/ws", map[string]string{"Host": tc.host, "Origin": tc.origin}, nil)
		assert.Equal(t, tc.status, resp.StatusCode, "Host %s, Origin %s", tc.host, tc.origin)
	}
}

// ---------------------------------------------------------------------------
// 4. Subprotocols

func TestSubprotocols(t *testing.T) {
	offers := make(chan []string, 16)
	protoHandler := func(conn *ginws.Conn, c *gin.Context) error {
		return conn.WriteMessage(c, ginws.MessageText, []byte("proto="+conn.Subprotocol()))
	}
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/inherit", protoHandler)
		s.Handle(r, "/pref", protoHandler, ginws.Subprotocols("b", "a"))
		s.Handle(r, "/hook", protoHandler, ginws.SelectSubprotocol(func(c *gin.Context, offered []string) string {
			offers <- offered
			return c.GetHeader("X-Pick")
		}))
	}, ginws.Subprotocols("x"))
	addr := ts.Listener.Addr().String()
	const none = ""
	cases := []struct {
		name   string
		path   string
		header map[string]string
		want   string
		hook   []string // the offer the hook must see; nil: not called
	}{
		{"server preference wins", "/pref", map[string]string{"Sec-WebSocket-Protocol": "a, b"}, "b", nil},
		{"only one in common", "/pref", map[string]string{"Sec-WebSocket-Protocol": "c, a"}, "a", nil},
		{"no overlap", "/pref", map[string]string{"Sec-WebSocket-Protocol": "c, d"}, none, nil},
		{"route list replaces the server's", "/pref", map[string]string{"Sec-WebSocket-Protocol": "x"}, none, nil},
		{"no offer", "/pref", nil, none, nil},
		{"offer on two header lines", "/pref", map[string]string{"Sec-WebSocket-Protocol": "a", "sec-websocket-protocol": "b"}, "b", nil},
		{"server option inherited", "/inherit", map[string]string{"Sec-WebSocket-Protocol": "y, x"}, "x", nil},
		{"hook chooses", "/hook", map[string]string{"Sec-WebSocket-Protocol": "a, b, c", "X-Pick": "c"}, "c", []string{"a", "b", "c"}},
		{"hook returns one not offered", "/hook", map[string]string{"Sec-WebSocket-Protocol": "a, b", "X-Pick": "z"}, none, []string{"a", "b"}},
		{"hook returns none", "/hook", map[string]string{"Sec-WebSocket-Protocol": "a"}, none, []string{"a"}},
		{"hook not called without an offer", "/hook", map[string]string{"X-Pick": "a"}, none, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nc, br, resp := rawUpgrade(t, addr, tc.path, tc.header, nil)
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			if tc.want == none {
				_, present := resp.Header["Sec-Websocket-Protocol"]
				assert.False(t, present, "no Sec-WebSocket-Protocol header when none is chosen")
			} else {
				assert.Equal(t, []string{tc.want}, resp.Header.Values("Sec-WebSocket-Protocol"))
			}
			c := &client{t: t, nc: nc, r: br}
			_, p := c.readMessage()
			assert.Equal(t, "proto="+tc.want, string(p), "conn.Subprotocol()")
			code, _ := c.expectClose()
			assert.Equal(t, ws.StatusNormalClosure, code)
			if tc.hook != nil {
				assert.Equal(t, tc.hook, waitFor(t, offers, time.Second, "the hook's offer"))
			}
			assert.Empty(t, offers, "SelectSubprotocol called unexpectedly")
		})
	}
	t.Run("malformed offer is refused", func(t *testing.T) {
		_, _, resp := rawUpgrade(t, addr, "/pref", map[string]string{"Sec-WebSocket-Protocol": "a;b"}, nil)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})
	t.Run("gobwas client negotiates", func(t *testing.T) {
		d := ws.Dialer{Protocols: []string{"a", "b"}, Timeout: 5 * time.Second}
		nc, br, hs, err := d.Dial(context.Background(), ts.wsURL("/pref"))
		require.NoError(t, err)
		t.Cleanup(func() { _ = nc.Close() })
		assert.Equal(t, "b", hs.Protocol)
		var r io.Reader = nc
		if br != nil {
			r = io.MultiReader(br, nc)
		}
		c := &client{t: t, nc: nc, r: r}
		_, p := c.readMessage()
		assert.Equal(t, "proto=b", string(p))
		c.expectClose()
	})
}

// The response names only a subprotocol the client offered, whatever the
// SelectSubprotocol hook does with the slice it is given: here it
// lower-cases the offer in place and picks from it, and the client, which
// offered "Chat", must not be answered "chat" (a browser fails the
// connection on a name it did not offer).
func TestSelectSubprotocolEditsOffer(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/ws", echoHandler, ginws.SelectSubprotocol(func(c *gin.Context, offered []string) string {
			for i, p := range offered {
				offered[i] = strings.ToLower(p)
			}
			return offered[0]
		}))
	})
	_, _, resp := rawUpgrade(t, ts.Listener.Addr().String(), "/ws", map[string]string{"Sec-WebSocket-Protocol": "Chat"}, nil)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	_, present := resp.Header["Sec-Websocket-Protocol"]
	assert.False(t, present, "answered %q to an offer of \"Chat\"", resp.Header.Get("Sec-WebSocket-Protocol"))
}

// ---------------------------------------------------------------------------
// 5. ErrorHandler and panics

var errHandlerBoom = errors.New("boom")

func TestPanicAmongHealthyConnections(t *testing.T) {
	type reported struct {
		err  error
		path string
		same bool
	}
	reports := make(chan reported, 8)
	var panicConn atomic.Pointer[ginws.Conn]
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/echo", echoHandler)
		s.Handle(r, "/panic", func(conn *ginws.Conn, c *gin.Context) error {
			panicConn.Store(conn)
			if _, _, err := conn.ReadMessage(c); err != nil {
				return err
			}
			panic(errHandlerBoom)
		})
	}, ginws.ErrorHandler(func(err error, conn *ginws.Conn, c *gin.Context) {
		// The connection is still open here: a message still goes out.
		werr := conn.WriteMessage(c, ginws.MessageText, []byte("last words"))
		if werr != nil {
			err = errors.Join(err, werr)
		}
		reports <- reported{err, c.Request.URL.Path, conn == panicConn.Load()}
	}))

	const n = 100
	healthy := make([]*client, n)
	for i := range healthy {
		healthy[i] = dial(t, ts.wsURL("/echo"), nil)
	}
	bad := dial(t, ts.wsURL("/panic"), nil)
	require.Eventually(t, func() bool { return ts.ws.Len() == n+1 }, 5*time.Second, 5*time.Millisecond)

	// rounds echoes on every healthy connection at once; extra runs while
	// the rounds are under way.
	rounds := func(phase string, count int, extra func()) {
		t.Helper()
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for i, c := range healthy {
			wg.Go(func() {
				for j := range count {
					if err := echoErr(c, fmt.Appendf(nil, "%s %d/%d", phase, i, j)); err != nil {
						errs <- fmt.Errorf("client %d: %w", i, err)
						return
					}
					if extra != nil {
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
		if extra != nil {
			extra()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(phase, err)
		}
	}

	rounds("before", 3, nil)
	rounds("during", 20, func() {
		bad.send(ws.OpText, []byte("go"))
		_, p := bad.readMessage()
		assert.Equal(t, "last words", string(p))
		code, _ := bad.expectClose()
		assert.Equal(t, ws.StatusInternalServerError, code)
	})
	rep := waitFor(t, reports, 5*time.Second, "the error handler")
	var pe *ginws.PanicError
	require.ErrorAs(t, rep.err, &pe)
	assert.Equal(t, errHandlerBoom, pe.Value)
	assert.Contains(t, string(pe.Stack), "options_test.go")
	assert.Contains(t, pe.Error(), "boom")
	assert.Equal(t, "/panic", rep.path)
	assert.True(t, rep.same, "the error handler gets the panicking connection")
	rounds("after", 3, nil)
	assert.Equal(t, n, ts.ws.Len())
	assert.Empty(t, reports, "healthy connections reported nothing")
}

func TestErrorHandlerCases(t *testing.T) {
	reports := make(chan error, 8)
	closeIn := func(err error, conn *ginws.Conn, c *gin.Context) {
		reports <- err
		_ = conn.CloseWith(4000, "handled")
	}
	report := func(err error, conn *ginws.Conn, c *gin.Context) { reports <- err }
	readOnce := func(conn *ginws.Conn, c *gin.Context) error {
		_, _, err := conn.ReadMessage(c)
		return err
	}
	finished := make(chan string, 8) // after the route, error handler included, is done
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		r.Use(func(c *gin.Context) {
			c.Next()
			finished <- c.Request.URL.Path
		})
		s.Handle(r, "/fail", func(*ginws.Conn, *gin.Context) error { return errHandlerBoom })
		s.Handle(r, "/wrapped", func(*ginws.Conn, *gin.Context) error {
			// Not an ending error: only *CloseError, *ProtocolError and
			// net.ErrClosed are.
			return fmt.Errorf("app: %w", errHandlerBoom)
		})
		s.Handle(r, "/panic", func(*ginws.Conn, *gin.Context) error { panic("kaboom") })
		s.Handle(r, "/peer-close", readOnce)
		s.Handle(r, "/closes-itself", func(*ginws.Conn, *gin.Context) error { return errHandlerBoom },
			ginws.ErrorHandler(closeIn))
		s.Handle(r, "/return-after-close", func(conn *ginws.Conn, c *gin.Context) error {
			_ = conn.CloseWith(ginws.StatusNormalClosure, "")
			return conn.WriteMessage(c, ginws.MessageText, []byte("too late"))
		})
	}, ginws.ErrorHandler(report))
	cases := []struct {
		path     string
		clientGo func(c *client)
		code     ws.StatusCode
		reported error // nil: the handler is not called
		panics   bool
	}{
		{"/fail", nil, ws.StatusInternalServerError, errHandlerBoom, false},
		{"/wrapped", nil, ws.StatusInternalServerError, errHandlerBoom, false},
		{"/panic", nil, ws.StatusInternalServerError, nil, true},
		{"/peer-close", func(c *client) { c.sendClose(4001, "bye") }, 4001, nil, false},
		{"/closes-itself", nil, 4000, errHandlerBoom, false},
		{"/return-after-close", nil, ws.StatusNormalClosure, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			c := dial(t, ts.wsURL(tc.path), nil)
			if tc.clientGo != nil {
				tc.clientGo(c)
			}
			code, _ := c.expectClose()
			assert.Equal(t, tc.code, code)
			switch {
			case tc.panics:
				var pe *ginws.PanicError
				require.ErrorAs(t, waitFor(t, reports, 5*time.Second, "the error handler"), &pe)
				assert.Equal(t, "kaboom", pe.Value)
			case tc.reported != nil:
				assert.ErrorIs(t, waitFor(t, reports, 5*time.Second, "the error handler"), tc.reported)
			}
			assert.Equal(t, tc.path, waitFor(t, finished, 5*time.Second, "the route to return"))
			assert.Empty(t, reports, "error handler called for an ending that is not a failure")
		})
	}
}

// Not parallel: it swaps gin.DefaultErrorWriter.
func TestDefaultErrorHandlerLogs(t *testing.T) {
	buf := &lockedBuffer{}
	old := gin.DefaultErrorWriter
	gin.DefaultErrorWriter = buf
	t.Cleanup(func() { gin.DefaultErrorWriter = old }) // runs after the server's cleanup
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/panic", func(*ginws.Conn, *gin.Context) error { panic("default boom") })
		s.Handle(r, "/fail", func(*ginws.Conn, *gin.Context) error { return errors.New("default failure") })
		s.Handle(r, "/bad-error-handler", func(*ginws.Conn, *gin.Context) error { return errors.New("first failure") },
			ginws.ErrorHandler(func(error, *ginws.Conn, *gin.Context) { panic("error handler panicked") }))
	})
	cases := []struct {
		path string
		want []string
	}{
		{"/panic", []string{"[ginws] GET /panic: ginws: handler panic: default boom\n", "goroutine "}},
		{"/fail", []string{"[ginws] GET /fail: default failure\n"}},
		{"/bad-error-handler", []string{"[ginws] GET /bad-error-handler: ginws: handler panic: error handler panicked\n"}},
	}
	for _, tc := range cases {
		c := dial(t, ts.wsURL(tc.path), nil)
		code, _ := c.expectClose()
		assert.Equal(t, ws.StatusInternalServerError, code, tc.path)
		// The log is written before the close frame is sent.
		for _, w := range tc.want {
			assert.Contains(t, buf.String(), w, tc.path)
		}
	}
}

// ---------------------------------------------------------------------------
// 6. Keepalive

func TestKeepalive(t *testing.T) {
	var byConn perConn
	reading := func(conn *ginws.Conn, c *gin.Context) error {
		err := echoHandler(conn, c)
		byConn.report(c, handlerResult{err, time.Now()})
		return err
	}
	writing := func(conn *ginws.Conn, c *gin.Context) error {
		for {
			if err := conn.WriteMessage(c, ginws.MessageText, []byte("tick")); err != nil {
				byConn.report(c, handlerResult{err, time.Now()})
				return err
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waiting := func(conn *ginws.Conn, c *gin.Context) error {
		<-conn.Done()
		_, _, err := conn.ReadMessage(c)
		byConn.report(c, handlerResult{err, time.Now()})
		return nil
	}
	ka := []ginws.Option{ginws.PingInterval(50 * time.Millisecond), ginws.IdleTimeout(300 * time.Millisecond)}
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/pings", reading, ginws.PingInterval(50*time.Millisecond))
		s.Handle(r, "/read", reading, ka...)
		s.Handle(r, "/write", writing, ka...)
		s.Handle(r, "/idle-only", waiting, ginws.IdleTimeout(300*time.Millisecond))
	})

	t.Run("a reading client sees pings", func(t *testing.T) {
		starved := starvation(t)
		start := time.Now()
		q, results := byConn.next()
		c := dial(t, ts.wsURL("/pings"+q), nil)
		for i := range 5 {
			f, err := readFrameErr(c, 10*time.Second)
			if err != nil { // the server dropped it: say why
				var r handlerResult
				select {
				case r = <-results:
				case <-time.After(time.Second):
				}
				require.NoError(t, err, "ping %d after %v; handler: %v; starved %v", i, time.Since(start), r.err, starved())
			}
			require.Equal(t, ws.OpPing, f.Header.OpCode)
		}
		took := time.Since(start)
		assert.GreaterOrEqual(t, took, 250*time.Millisecond, "5 pings at 50ms intervals")
		timely(t, starved, 200*time.Millisecond, took < time.Second, "5 pings at 50ms intervals took %v", took)
		c.sendClose(ws.StatusNormalClosure, "")
		code, _ := c.expectClose()
		assert.Equal(t, ws.StatusNormalClosure, code)
		assert.Equal(t, ginws.StatusNormalClosure, ginws.CloseStatus(waitFor(t, results, 5*time.Second, "handler").err))
	})

	alive := []struct {
		name, path string
		selfPing   bool // the client pings instead of the server
	}{
		{"reading handler, client answers pongs", "/read", false},
		{"write-only handler, client answers pongs", "/write", false},
		{"idle handler, IdleTimeout only, client pings", "/idle-only", true},
	}
	for _, tc := range alive {
		t.Run(tc.name+": stays past IdleTimeout", func(t *testing.T) {
			starved := starvation(t)
			q, results := byConn.next()
			p := startPongClient(dial(t, ts.wsURL(tc.path+q), nil))
			end := time.Now().Add(time.Second)
			for time.Now().Before(end) {
				if tc.selfPing {
					require.NoError(t, p.write(ws.OpPing, []byte("hb")))
				}
				time.Sleep(80 * time.Millisecond)
			}
			select {
			case r := <-results:
				timely(t, starved, 100*time.Millisecond, false, "dropped although alive: %v", r.err)
				return
			default:
			}
			if tc.path != "/idle-only" {
				timely(t, starved, 100*time.Millisecond, p.pings.Load() >= 3, "%d pings in 1s", p.pings.Load())
			}
			switch tc.path {
			case "/read":
				require.NoError(t, p.write(ws.OpText, []byte("still here")))
				f := waitFor(t, p.frames, 5*time.Second, "echo")
				assert.Equal(t, "still here", string(f.Payload))
			case "/write":
				timely(t, starved, 100*time.Millisecond, len(p.frames) >= 3, "%d ticks in 1s", len(p.frames))
			}
			p.closeNormally(t)
			r := waitFor(t, results, 5*time.Second, "handler")
			assert.Equal(t, ginws.StatusNormalClosure, ginws.CloseStatus(r.err), "%v", r.err)
			assert.NotErrorIs(t, r.err, ginws.ErrIdleTimeout)
		})
	}

	silent := []struct {
		path       string
		closeFrame bool // the handler never holds the write lock long
	}{{"/read", true}, {"/write", false}, {"/idle-only", true}}
	for _, tc := range silent {
		t.Run(tc.path+": a silent client is dropped after IdleTimeout", func(t *testing.T) {
			starved := starvation(t)
			start := time.Now()
			q, results := byConn.next()
			c := dial(t, ts.wsURL(tc.path+q), nil)
			// The client neither reads nor writes from here on.
			r := waitFor(t, results, 3*time.Second, "the handler's error")
			took := r.at.Sub(start)
			assert.GreaterOrEqual(t, took, 300*time.Millisecond)
			timely(t, starved, 200*time.Millisecond, took < time.Second, "dropped after %v", took)
			assert.Equal(t, ginws.StatusAbnormalClosure, ginws.CloseStatus(r.err), "%v", r.err)
			if tc.path == "/write" {
				// Reads race with the TCP close: see TestIdleTimeoutReadError.
				assert.ErrorIs(t, r.err, ginws.ErrIdleTimeout)
			}
			// TCP is already closed: what is buffered ends in EOF at once.
			frames := drainFrames(t, c, time.Second)
			if code, reason, ok := lastClose(frames); ok || tc.closeFrame {
				assert.True(t, ok, "close frame before the TCP close")
				assert.Equal(t, ws.StatusGoingAway, code)
				assert.Equal(t, "idle timeout", reason)
			}
			require.Eventually(t, func() bool { return ts.ws.Len() == 0 }, time.Second, 5*time.Millisecond)
		})
	}
}

// The handler's read on a connection IdleTimeout dropped must fail with
// ErrIdleTimeout, as the option documents, every time.
func TestIdleTimeoutReadError(t *testing.T) {
	const n = 20
	errs := make(chan error, n)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/read", func(conn *ginws.Conn, c *gin.Context) error {
			_, _, err := conn.ReadMessage(c)
			errs <- err
			return err
		}, ginws.IdleTimeout(200*time.Millisecond))
		s.Handle(r, "/pumped", func(conn *ginws.Conn, c *gin.Context) error {
			<-conn.Done()
			_, _, err := conn.ReadMessage(c)
			errs <- err
			return err
		}, ginws.IdleTimeout(200*time.Millisecond))
	})
	for _, path := range []string{"/read", "/pumped"} {
		t.Run(path, func(t *testing.T) {
			for range n {
				dial(t, ts.wsURL(path), nil) // silent from here on
			}
			bad := 0
			for range n {
				err := waitFor(t, errs, 5*time.Second, "a handler's error")
				assert.Equal(t, ginws.StatusAbnormalClosure, ginws.CloseStatus(err))
				if !errors.Is(err, ginws.ErrIdleTimeout) {
					bad++
					t.Log(err)
				}
			}
			assert.Zero(t, bad, "reads that do not match ErrIdleTimeout, of %d", n)
		})
	}
}

// needTCPInfo skips a test of what the keepalive learns from TCP_INFO.
func needTCPInfo(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux tells how much of a write the peer has acknowledged (TCP_INFO)")
	}
}

// A client that is receiving a long message, slowly but steadily, is alive:
// it answers every ping it gets. IdleTimeout must not drop it, neither
// while the message holds the write lock nor after the write returned,
// while megabytes of it still wait in the kernel and the pings queue
// behind them: the peer acknowledging those bytes is its sign of life.
func TestIdleTimeoutDuringLongWrite(t *testing.T) {
	needTCPInfo(t)
	const size = 8 << 20
	results := make(chan handlerResult, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/big", func(conn *ginws.Conn, c *gin.Context) error {
			err := conn.WriteMessage(c, ginws.MessageBinary, make([]byte, size))
			results <- handlerResult{err, time.Now()}
			if err != nil {
				return err
			}
			return echoHandler(conn, c)
		}, ginws.PingInterval(50*time.Millisecond), ginws.IdleTimeout(300*time.Millisecond))
	})
	starved := starvation(t)
	c := dial(t, ts.wsURL("/big"), nil)
	require.NoError(t, c.nc.(*net.TCPConn).SetReadBuffer(32<<10))
	// Read the message at about 6 MB/s: over a second for 8 MiB.
	start := time.Now()
	require.NoError(t, c.nc.SetReadDeadline(time.Now().Add(20*time.Second)))
	h, err := ws.ReadHeader(c.r)
	require.NoError(t, err)
	require.Equal(t, int64(size), h.Length)
	buf := make([]byte, 64<<10)
	var got int64
	for got < h.Length {
		n, err := c.r.Read(buf[:min(int64(len(buf)), h.Length-got)])
		got += int64(n)
		if err != nil {
			// A process without CPU for IdleTimeout stops reading, as a dead
			// one would: that drop says nothing about the library.
			timely(t, starved, 200*time.Millisecond, false, "dropped after %d of %d bytes, %v: %v", got, h.Length, time.Since(start), err)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("read %d bytes in %v", got, time.Since(start))
	r := waitFor(t, results, 5*time.Second, "the handler's write")
	require.NoError(t, r.err)
	// Still alive: pings are answered, messages echoed.
	p := startPongClient(c)
	if err := p.write(ws.OpText, []byte("after")); err != nil {
		timely(t, starved, 200*time.Millisecond, false, "dropped once the message was read: %v", err)
		return
	}
	f := waitFor(t, p.frames, 5*time.Second, "the echo")
	assert.Equal(t, "after", string(f.Payload))
	p.closeNormally(t)
}

// TestIdleTimeoutDuringLongRead: the peer sends one long frame slowly (8
// KiB every 40 ms, 256 KiB in all). It cannot answer pings until the frame
// ends, but its bytes keep coming: IdleTimeout does not drop it.
func TestIdleTimeoutDuringLongRead(t *testing.T) {
	const size, chunk = 256 << 10, 8 << 10
	results := make(chan handlerResult, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/echo", func(conn *ginws.Conn, c *gin.Context) error {
			err := echoHandler(conn, c)
			results <- handlerResult{err, time.Now()}
			return err
		}, ginws.PingInterval(50*time.Millisecond), ginws.IdleTimeout(300*time.Millisecond))
	})
	starved := starvation(t)
	c := dial(t, ts.wsURL("/echo"), nil)
	f := maskedFrame(true, ws.OpBinary, make([]byte, size))
	start := time.Now()
	for off := 0; off < len(f); off += chunk {
		_, err := c.nc.Write(f[off:min(off+chunk, len(f))])
		select {
		case r := <-results:
			timely(t, starved, 200*time.Millisecond, false, "dropped %v into a frame arriving every 40 ms: %v", time.Since(start), r.err)
			return
		default:
		}
		require.NoError(t, err)
		time.Sleep(40 * time.Millisecond)
	}
	p := startPongClient(c)
	echo := waitFor(t, p.frames, 5*time.Second, "the echo")
	assert.Equal(t, ws.OpBinary, echo.Header.OpCode)
	assert.Len(t, echo.Payload, size)
	p.closeNormally(t)
}

// The other side of TestIdleTimeoutDuringLongWrite: a client whose
// application hangs with a message still waiting for it in the server's
// send queue. Its kernel acknowledges bytes only until its receive buffer
// is full, so IdleTimeout drops it no later than for a client that was sent
// nothing (TestKeepalive's silent clients).
func TestIdleTimeoutHungReaderWithBacklog(t *testing.T) {
	needTCPInfo(t)
	const size = 1 << 20
	wrote := make(chan handlerResult, 1)
	results := make(chan handlerResult, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/big", func(conn *ginws.Conn, c *gin.Context) error {
			// Returns once the message is in the kernel's buffers; the 2 s
			// bound only keeps a blocked write from hanging the test.
			ctx, cancel := context.WithTimeout(c, 2*time.Second)
			err := conn.WriteMessage(ctx, ginws.MessageBinary, make([]byte, size))
			cancel()
			wrote <- handlerResult{err, time.Now()}
			if err != nil {
				return err
			}
			_, _, err = conn.ReadMessage(c)
			results <- handlerResult{err, time.Now()}
			return err
		}, ginws.PingInterval(50*time.Millisecond), ginws.IdleTimeout(300*time.Millisecond))
	})
	starved := starvation(t)
	c := dial(t, ts.wsURL("/big"), nil)
	require.NoError(t, c.nc.(*net.TCPConn).SetReadBuffer(32<<10))
	// The client reads nothing from here on.
	w := waitFor(t, wrote, 5*time.Second, "the handler's write")
	require.NoError(t, w.err, "the message did not fit in the kernel's buffers: the test needs a smaller one")
	r := waitFor(t, results, 5*time.Second, "the handler's read")
	took := r.at.Sub(w.at)
	timely(t, starved, 200*time.Millisecond, took < 1500*time.Millisecond, "dropped %v after the write returned", took)
	assert.ErrorIs(t, r.err, ginws.ErrIdleTimeout)
	assert.Equal(t, ginws.StatusAbnormalClosure, ginws.CloseStatus(r.err), "%v", r.err)
}

// A client that falls behind reading for longer than the ping interval, but
// is alive and catches up, must not be dropped by the pings when no
// IdleTimeout is set.
func TestPingIntervalSlowReader(t *testing.T) {
	const msgs, size = 200, 64 << 10
	results := make(chan handlerResult, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/burst", func(conn *ginws.Conn, c *gin.Context) error {
			p := make([]byte, size)
			for range msgs {
				if err := conn.WriteMessage(c, ginws.MessageBinary, p); err != nil {
					results <- handlerResult{err, time.Now()}
					return err
				}
			}
			results <- handlerResult{nil, time.Now()}
			_, _, err := conn.ReadMessage(c)
			return err
		}, ginws.PingInterval(50*time.Millisecond))
	})
	c := dial(t, ts.wsURL("/burst"), nil)
	// A small receive buffer, so the burst cannot all sit in the kernel.
	require.NoError(t, c.nc.(*net.TCPConn).SetReadBuffer(32<<10))
	time.Sleep(300 * time.Millisecond) // busy elsewhere; the socket buffers fill
	got := 0
	for got < msgs {
		f, err := readFrameErr(c, 5*time.Second)
		require.NoError(t, err, "after %d messages", got)
		switch f.Header.OpCode {
		case ws.OpBinary:
			got++
		case ws.OpPing:
			require.NoError(t, writeFrameErr(c, ws.OpPong, f.Payload))
		default:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			require.FailNowf(t, "unexpected frame", "op %v code %d %q after %d messages", f.Header.OpCode, code, reason, got)
		}
	}
	r := waitFor(t, results, 5*time.Second, "handler")
	require.NoError(t, r.err)
	c.sendClose(ws.StatusNormalClosure, "")
	c.expectClose()
}

// ---------------------------------------------------------------------------
// 7. Deadlines and contexts

func TestReadDeadlinesAndContexts(t *testing.T) {
	type readErrs struct{ cancelled, past, nextReader, cancelWhileWaiting error }
	got := make(chan readErrs, 1)
	mid := make(chan [2]error, 1)
	midSent := make(chan struct{}) // the start of the message is on its way
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/read", func(conn *ginws.Conn, c *gin.Context) error {
			var e readErrs
			cancelled, cancel := context.WithCancel(context.Background())
			cancel()
			_, _, e.cancelled = conn.ReadMessage(cancelled)
			_, _, e.nextReader = conn.NextReader(cancelled)
			_ = conn.SetReadDeadline(time.Now().Add(-time.Second))
			_, _, e.past = conn.ReadMessage(c)
			_ = conn.SetReadDeadline(time.Time{})
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			_, _, e.cancelWhileWaiting = conn.ReadMessage(ctx)
			got <- e
			if err := conn.WriteMessage(c, ginws.MessageText, []byte("ready")); err != nil {
				return err
			}
			return echoHandler(conn, c)
		})
		s.Handle(r, "/mid-message", func(conn *ginws.Conn, c *gin.Context) error {
			<-midSent // so that the timeout passes in the message, not before it
			ctx, cancel := context.WithTimeout(c, 200*time.Millisecond)
			defer cancel()
			_, _, err := conn.ReadMessage(ctx)
			select {
			case <-conn.Done():
			case <-time.After(time.Second):
			}
			_, _, again := conn.ReadMessage(c)
			mid <- [2]error{err, again}
			return nil
		})
	})

	t.Run("failed reads before a message leave the connection usable", func(t *testing.T) {
		c := dial(t, ts.wsURL("/read"), nil)
		e := waitFor(t, got, 5*time.Second, "the handler's reads")
		assert.ErrorIs(t, e.cancelled, context.Canceled)
		assert.ErrorIs(t, e.nextReader, context.Canceled)
		var ne net.Error
		if assert.ErrorAs(t, e.past, &ne) {
			assert.True(t, ne.Timeout())
		}
		assert.ErrorIs(t, e.past, os.ErrDeadlineExceeded)
		assert.ErrorIs(t, e.cancelWhileWaiting, context.Canceled)
		_, p := c.readMessage()
		assert.Equal(t, "ready", string(p))
		for _, m := range []string{"one", "two"} {
			c.send(ws.OpText, []byte(m))
			_, p = c.readMessage()
			assert.Equal(t, m, string(p))
		}
		c.sendClose(ws.StatusNormalClosure, "")
		code, _ := c.expectClose()
		assert.Equal(t, ws.StatusNormalClosure, code)
	})

	t.Run("a timeout in the middle of a message drops the connection", func(t *testing.T) {
		c := dial(t, ts.wsURL("/mid-message"), nil)
		frame := maskedFrame(true, ws.OpBinary, make([]byte, 100))
		_, err := c.nc.Write(frame[:20]) // the header and a few payload bytes
		require.NoError(t, err)
		close(midSent)
		e := waitFor(t, mid, 5*time.Second, "the handler's reads")
		assert.ErrorIs(t, e[0], context.DeadlineExceeded)
		assert.Error(t, e[1], "the connection is gone")
		frames := drainFrames(t, c, 2*time.Second)
		assert.Empty(t, frames, "dropped without a close frame")
	})
}

func TestWriteContexts(t *testing.T) {
	type writeResult struct {
		err, after error
		took       time.Duration
		done       bool
	}
	results := make(chan writeResult, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/cancelled", func(conn *ginws.Conn, c *gin.Context) error {
			ctx, cancel := context.WithCancel(c)
			cancel()
			var res writeResult
			res.err = conn.WriteMessage(ctx, ginws.MessageText, []byte("never"))
			res.after = conn.Ping(ctx, nil)
			res.done = conn.Context().Err() != nil
			results <- res
			if err := conn.WriteMessage(c, ginws.MessageText, []byte("after")); err != nil {
				return err
			}
			return echoHandler(conn, c)
		})
		s.Handle(r, "/blocked", func(conn *ginws.Conn, c *gin.Context) error {
			start := time.Now()
			ctx, cancel := context.WithTimeout(c, 300*time.Millisecond)
			defer cancel()
			p := make([]byte, 1<<20)
			var res writeResult
			for range 256 { // far more than the socket buffers hold
				if res.err = conn.WriteMessage(ctx, ginws.MessageBinary, p); res.err != nil {
					break
				}
			}
			res.took = time.Since(start)
			select {
			case <-conn.Done():
				res.done = true
			case <-time.After(time.Second):
			}
			res.after = conn.WriteMessage(c, ginws.MessageText, []byte("x"))
			results <- res
			return nil
		})
		s.Handle(r, "/write-deadline", func(conn *ginws.Conn, c *gin.Context) error {
			_ = conn.SetWriteDeadline(time.Now().Add(-time.Second))
			var res writeResult
			res.err = conn.WriteMessage(c, ginws.MessageText, []byte("x"))
			select {
			case <-conn.Done():
				res.done = true
			case <-time.After(time.Second):
			}
			results <- res
			return nil
		})
	})

	t.Run("a cancelled ctx sends nothing and keeps the connection", func(t *testing.T) {
		c := dial(t, ts.wsURL("/cancelled"), nil)
		res := waitFor(t, results, 5*time.Second, "the handler")
		assert.ErrorIs(t, res.err, context.Canceled)
		assert.ErrorIs(t, res.after, context.Canceled, "Ping")
		assert.False(t, res.done)
		_, p := c.readMessage()
		assert.Equal(t, "after", string(p), "nothing of the cancelled write was sent")
		c.send(ws.OpText, []byte("echo"))
		_, p = c.readMessage()
		assert.Equal(t, "echo", string(p))
		c.sendClose(ws.StatusNormalClosure, "")
		c.expectClose()
	})

	t.Run("a client that never reads: the ctx bounds the write, then the connection is dropped", func(t *testing.T) {
		c := dial(t, ts.wsURL("/blocked"), nil)
		res := waitFor(t, results, 10*time.Second, "the handler")
		assert.ErrorIs(t, res.err, context.DeadlineExceeded)
		assert.GreaterOrEqual(t, res.took, 300*time.Millisecond)
		assert.Less(t, res.took, 2*time.Second)
		assert.True(t, res.done, "connection dropped")
		assert.ErrorIs(t, res.after, ginws.ErrClosed)
		require.Eventually(t, func() bool { return ts.ws.Len() == 0 }, time.Second, 5*time.Millisecond)
		// What reached the socket ends in the TCP close, with no close frame
		// (the peer would see it inside the cut-off message).
		require.NoError(t, c.nc.SetReadDeadline(time.Now().Add(10*time.Second)))
		n, err := io.Copy(io.Discard, c.r)
		assert.NoError(t, err)
		assert.Positive(t, n)
	})

	t.Run("a write deadline in the past ends the connection", func(t *testing.T) {
		c := dial(t, ts.wsURL("/write-deadline"), nil)
		res := waitFor(t, results, 5*time.Second, "the handler")
		assert.ErrorIs(t, res.err, os.ErrDeadlineExceeded)
		assert.True(t, res.done)
		frames := drainFrames(t, c, 2*time.Second)
		assert.Empty(t, frames)
	})
}

// ---------------------------------------------------------------------------
// 8. Shutdown

func TestShutdownThousandConnections(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) }) // after the server and clients are gone
	var reported atomic.Int32
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/echo", echoHandler)
	}, ginws.ErrorHandler(func(error, *ginws.Conn, *gin.Context) { reported.Add(1) }))

	const n = 1000
	clients := make([]*client, n)
	{
		var next atomic.Int32
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					c, err := tryDial(t, ts.wsURL("/echo"), nil)
					if err != nil {
						errs <- fmt.Errorf("dial %d: %w", i, err)
						return
					}
					clients[i] = c
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	}
	require.Eventually(t, func() bool { return ts.ws.Len() == n }, 10*time.Second, 10*time.Millisecond)

	type result struct {
		code ws.StatusCode
		at   time.Time
		err  error
	}
	results := make(chan result, n)
	var echoed sync.WaitGroup
	for i, c := range clients {
		echoed.Add(1)
		go func() {
			err := echoErr(c, fmt.Appendf(nil, "hello %d", i))
			echoed.Done()
			if err != nil {
				results <- result{err: fmt.Errorf("client %d, echo: %w", i, err)}
				return
			}
			code, at, err := awaitCloseErr(c, 15*time.Second)
			if err != nil {
				err = fmt.Errorf("client %d, close: %w", i, err)
			}
			results <- result{code, at, err}
		}()
	}
	echoed.Wait()

	const bound = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	start := time.Now()
	require.NoError(t, ts.ws.Shutdown(ctx))
	took := time.Since(start)
	t.Logf("Shutdown of %d connections took %v", n, took)
	for range n {
		r := waitFor(t, results, bound, "a client")
		require.NoError(t, r.err)
		assert.Equal(t, ws.StatusGoingAway, r.code)
		assert.Less(t, r.at.Sub(start), bound)
	}
	assert.Equal(t, 0, ts.ws.Len())
	assert.Zero(t, reported.Load(), "a shutdown is not a handler failure")

	_, err := tryDial(t, ts.wsURL("/echo"), nil)
	var se ws.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, http.StatusServiceUnavailable, int(se))
}

func TestShutdownContextExpires(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) })
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/echo", echoHandler)
	})
	const n = 20
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, ts.wsURL("/echo"), nil) // and then never read nor answer
	}
	require.Eventually(t, func() bool { return ts.ws.Len() == n }, 5*time.Second, 5*time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := ts.ws.Shutdown(ctx)
	took := time.Since(start)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.GreaterOrEqual(t, took, 300*time.Millisecond)
	assert.Less(t, took, 1500*time.Millisecond)
	assert.Equal(t, 0, ts.ws.Len())

	_, err = tryDial(t, ts.wsURL("/echo"), nil)
	var se ws.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, http.StatusServiceUnavailable, int(se))

	// Each client finds the 1001 close frame and then the dropped TCP
	// connection.
	for i, c := range clients {
		frames := drainFrames(t, c, 2*time.Second)
		code, _, ok := lastClose(frames)
		assert.True(t, ok, "client %d", i)
		assert.Equal(t, ws.StatusGoingAway, code, "client %d", i)
		require.NoError(t, c.nc.Close())
	}
}

// A handler that ignores its connection ending does not hold Shutdown past
// its ctx (plus a short grace), and nothing is left once it returns.
func TestShutdownStubbornHandler(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) })
	release := make(chan struct{})
	returned := make(chan error, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/stubborn", func(conn *ginws.Conn, c *gin.Context) error {
			<-release
			_, _, err := conn.ReadMessage(c)
			returned <- err
			return err
		})
	})
	c := dial(t, ts.wsURL("/stubborn"), nil)
	require.Eventually(t, func() bool { return ts.ws.Len() == 1 }, 5*time.Second, 5*time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := ts.ws.Shutdown(ctx)
	took := time.Since(start)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.GreaterOrEqual(t, took, 200*time.Millisecond)
	assert.Less(t, took, 1500*time.Millisecond)
	assert.Equal(t, 0, ts.ws.Len(), "the connection is gone even though its handler runs on")

	frames := drainFrames(t, c, 2*time.Second)
	code, _, ok := lastClose(frames)
	assert.True(t, ok)
	assert.Equal(t, ws.StatusGoingAway, code)

	close(release)
	err = waitFor(t, returned, 5*time.Second, "the handler")
	assert.Error(t, err, "reading a dropped connection")
	t.Logf("read after the shutdown drop: %v", err)
}

// A write-only handler (server push) whose client sends a message it never
// reads (an application heartbeat, say) and answers every ping: the pump
// stops at that message, which waits for the handler, and the pongs queue
// behind it unread. IdleTimeout must not take that client for silent.
func TestIdleTimeoutWriteOnlyHandlerUnreadMessage(t *testing.T) {
	results := make(chan error, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/push", func(conn *ginws.Conn, c *gin.Context) error {
			for {
				if err := conn.WriteMessage(c, ginws.MessageText, []byte("tick")); err != nil {
					results <- err
					return err
				}
				time.Sleep(50 * time.Millisecond)
			}
		}, ginws.PingInterval(100*time.Millisecond), ginws.IdleTimeout(600*time.Millisecond))
	})
	starved := starvation(t)
	p := startPongClient(dial(t, ts.wsURL("/push"), nil))
	time.Sleep(200 * time.Millisecond) // the pump runs for the writing handler
	require.NoError(t, p.write(ws.OpText, []byte("client heartbeat")))
	select {
	case err := <-results:
		timely(t, starved, 200*time.Millisecond, false, "dropped although it answers every ping (%d pings): %v", p.pings.Load(), err)
		return
	case <-time.After(2 * time.Second):
	}
	// The client's close would wait behind its unread message too: drop
	// the TCP connection, and the handler's writes fail.
	_ = p.nc.Close()
	waitFor(t, results, 10*time.Second, "the handler's end")
}

// TestRelayPartnerEndIsNotAFailure: a handler that relays to another
// connection (io.Copy(other, conn), other.WriteMessage) gets the other
// connection's ending error once that one has ended. Returning it is how
// a relay ends when its partner leaves, not a failure: its own client gets
// 1000, and the ErrorHandler hears nothing.
func TestRelayPartnerEndIsNotAFailure(t *testing.T) {
	reports := make(chan error, 4)
	partner := make(chan *ginws.Conn, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/a", func(conn *ginws.Conn, c *gin.Context) error {
			partner <- conn
			_, _, err := conn.ReadMessage(c) // until its client closes
			return err
		})
		s.Handle(r, "/b", func(conn *ginws.Conn, c *gin.Context) error {
			other := <-partner
			<-other.Done()
			return other.WriteMessage(c, ginws.MessageText, []byte("to a partner that left"))
		})
	}, ginws.ErrorHandler(func(err error, _ *ginws.Conn, _ *gin.Context) { reports <- err }))
	a := dial(t, ts.wsURL("/a"), nil)
	b := dial(t, ts.wsURL("/b"), nil)
	a.sendClose(ws.StatusNormalClosure, "")
	code, _ := a.expectClose()
	assert.Equal(t, ws.StatusNormalClosure, code)
	code, _ = b.expectClose()
	assert.Equal(t, ws.StatusNormalClosure, code, "the relay's client")
	require.Eventually(t, func() bool { return ts.ws.Len() == 0 }, 5*time.Second, time.Millisecond)
	assert.Empty(t, reports, "the partner's end went to the ErrorHandler")
}
