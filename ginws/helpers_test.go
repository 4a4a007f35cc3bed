package ginws_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ginws/ginws/ginws"
	"github.com/ginws/ginws/internal/loopback"
)

func TestMain(m *testing.M) {
	if url := os.Getenv(benchClientEnv); url != "" {
		os.Exit(runBenchClients(url)) // BenchmarkBroadcast's child process
	}
	gin.SetMode(gin.TestMode)
	goleak.VerifyTestMain(m)
}

// testServer is a Gin engine with a ginws.Server, listening on 127.0.0.1.
type testServer struct {
	*httptest.Server
	ws *ginws.Server
}

func newServer(t testing.TB, setup func(r *gin.Engine, s *ginws.Server), opts ...ginws.Option) *testServer {
	t.Helper()
	s := ginws.New(opts...)
	r := gin.New()
	setup(r, s)
	ts := httptest.NewServer(r)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
		ts.Close()
	})
	return &testServer{Server: ts, ws: s}
}

func (ts *testServer) wsURL(path string) string {
	return "ws" + strings.TrimPrefix(ts.URL, "http") + path
}

// client is the peer: gobwas/ws's client side, frames read and written
// one by one so tests see exactly what the server sends.
type client struct {
	t  testing.TB
	nc net.Conn
	r  io.Reader

	closeSent bool // a close frame went out: the server's is the answer
}

func dial(t testing.TB, url string, header http.Header) *client {
	t.Helper()
	c, err := tryDial(t, url, header)
	require.NoError(t, err)
	return c
}

func tryDial(t testing.TB, url string, header http.Header) (*client, error) {
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(header), Timeout: 5 * time.Second}
	nc, br, _, err := d.Dial(context.Background(), url)
	if err != nil {
		return nil, err
	}
	var r io.Reader = nc
	if br != nil {
		r = io.MultiReader(br, nc)
	}
	c := &client{t: t, nc: nc, r: r}
	t.Cleanup(func() { _ = nc.Close() })
	return c, nil
}

func (c *client) send(op ws.OpCode, p []byte) {
	c.t.Helper()
	c.sendFrame(true, op, p)
}

func (c *client) sendFrame(fin bool, op ws.OpCode, p []byte) {
	c.t.Helper()
	f := ws.NewFrame(op, fin, append([]byte(nil), p...))
	require.NoError(c.t, ws.WriteFrame(c.nc, ws.MaskFrameInPlace(f)))
	c.closeSent = c.closeSent || op == ws.OpClose
}

// sendAsync writes a message while the caller reads: a streaming echo
// answers before a large message is fully sent.
func (c *client) sendAsync(op ws.OpCode, p []byte) <-chan error {
	errc := make(chan error, 1)
	f := ws.MaskFrameInPlace(ws.NewFrame(op, true, append([]byte(nil), p...)))
	go func() { errc <- ws.WriteFrame(c.nc, f) }()
	return errc
}

func (c *client) sendClose(code ws.StatusCode, reason string) {
	c.t.Helper()
	c.send(ws.OpClose, ws.NewCloseFrameBody(code, reason))
}

func (c *client) readFrame() ws.Frame {
	c.t.Helper()
	require.NoError(c.t, c.nc.SetReadDeadline(time.Now().Add(30*time.Second))) // a bound for a loaded machine
	h, err := ws.ReadHeader(c.r)
	require.NoError(c.t, err)
	require.LessOrEqual(c.t, h.Length, int64(64<<20), "frame larger than any test sends")
	f := ws.Frame{Header: h, Payload: make([]byte, h.Length)}
	_, err = io.ReadFull(c.r, f.Payload)
	require.NoError(c.t, err)
	require.False(c.t, f.Header.Masked, "server frames are never masked")
	return f
}

// readMessage reassembles the next data message, skipping pongs.
func (c *client) readMessage() (ws.OpCode, []byte) {
	c.t.Helper()
	var op ws.OpCode
	var msg []byte
	for {
		f := c.readFrame()
		switch f.Header.OpCode {
		case ws.OpPong:
			continue
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			c.t.Fatalf("unexpected close %d %q", code, reason)
		case ws.OpText, ws.OpBinary:
			op = f.Header.OpCode
		}
		msg = append(msg, f.Payload...)
		if f.Header.Fin {
			return op, msg
		}
	}
}

// expectClose reads until a close frame, returns its code and reason, and
// checks the server then closes TCP.
func (c *client) expectClose() (ws.StatusCode, string) {
	c.t.Helper()
	for {
		f := c.readFrame()
		if f.Header.OpCode != ws.OpClose {
			continue
		}
		code, reason := ws.ParseCloseFrameData(f.Payload)
		if len(f.Payload) == 0 {
			code = ws.StatusNoStatusRcvd
		}
		// Answer like a real client: echo the close (unless this is the
		// answer to ours), wait for the server to close TCP, then close ours.
		if code != ws.StatusNoStatusRcvd && !c.closeSent {
			_ = ws.WriteFrame(c.nc, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(code, ""))))
		}
		c.expectEOF()
		_ = c.nc.Close()
		return code, reason
	}
}

func (c *client) expectEOF() {
	c.t.Helper()
	require.NoError(c.t, c.nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err := io.Copy(io.Discard, c.r)
	require.NoError(c.t, err, "server should close TCP cleanly")
}

// rawUpgrade sends a handshake (plus extra bytes in the same write) and
// returns the status line and the reader positioned after the headers.
func rawUpgrade(t testing.TB, addr, path string, header map[string]string, extra []byte) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	h := map[string]string{
		"Host":                  addr,
		"Upgrade":               "websocket",
		"Connection":            "Upgrade",
		"Sec-WebSocket-Key":     "dGhlIHNhbXBsZSBub25jZQ==",
		"Sec-WebSocket-Version": "13",
	}
	for k, v := range header {
		if v == "" {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	req := "GET " + path + " HTTP/1.1\r\n"
	for k, v := range h {
		req += k + ": " + v + "\r\n"
	}
	req += "\r\n"
	_, err = nc.Write(append([]byte(req), extra...))
	require.NoError(t, err)
	br := bufio.NewReader(nc)
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	return nc, br, resp
}

// maskedFrame builds a client frame by hand.
func maskedFrame(fin bool, op ws.OpCode, p []byte) []byte {
	mask := [4]byte{1, 2, 3, 4}
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	var b []byte
	switch {
	case len(p) > 0xFFFF:
		b = append(b, b0, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(len(p)))
	case len(p) > 125:
		b = append(b, b0, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
	default:
		b = append(b, b0, 0x80|byte(len(p)))
	}
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, p...)
	ws.Cipher(b[start:], mask, 0)
	return b
}

func echoHandler(conn *ginws.Conn, _ *gin.Context) error {
	ctx := context.Background()
	for {
		t, p, err := conn.ReadMessage(ctx)
		if err != nil {
			return err
		}
		if err := conn.WriteMessage(ctx, t, p); err != nil {
			return err
		}
	}
}

func copyHandler(conn *ginws.Conn, _ *gin.Context) error {
	_, err := io.Copy(conn, conn)
	return err
}

// collectedMemStats reads the memory statistics once collections have
// dropped what is garbage and what waits in pools (sync.Pool lets go of
// its objects at the second collection) and shrunk the stacks that can
// be.
func collectedMemStats() runtime.MemStats {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m
}

// heapInUse returns the heap in use after collectedMemStats' collections.
func heapInUse() uint64 { return collectedMemStats().HeapInuse }

// heapGrowthPerConn waits up to 10 s for the heap in use to come back to
// less than limit bytes per connection above before, n connections in
// all, and returns the growth per connection it measured last. Buffers
// go back to their pools a moment after the peer has what they carried.
func heapGrowthPerConn(before uint64, n int, limit float64) float64 {
	for deadline := time.Now().Add(10 * time.Second); ; {
		per := (float64(heapInUse()) - float64(before)) / float64(n)
		if per < limit || time.Now().After(deadline) {
			return per
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// shutdownAtEnd shuts s down when the test ends, for tests that make
// their own Server rather than use newServer's.
func shutdownAtEnd(t testing.TB, s *ginws.Server) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
}

// smallBufferServer serves r over a listener whose accepted sockets have
// an 8 KiB send buffer, so that what a slow reader does not take queues
// up in ginws soon; it returns the WebSocket URL of path on it.
func smallBufferServer(t testing.TB, r http.Handler, path string) string {
	t.Helper()
	hs := httptest.NewUnstartedServer(r)
	hs.Listener = loopback.SmallSendBuffers(hs.Listener, 8<<10)
	hs.Start()
	t.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http") + path
}

// dialSlowReader dials url with a small receive buffer, so that what the
// client does not read soon blocks the server's writes.
func dialSlowReader(t *testing.T, url string, rcvbuf int) *client {
	t.Helper()
	d := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(rcvbuf)
		}
		return c, err
	}}
	nc, br, _, err := d.Dial(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	var r io.Reader = nc
	if br != nil {
		r = io.MultiReader(br, nc)
	}
	return &client{t: t, nc: nc, r: r}
}

// testCtx bounds a test's blocking calls: a hang fails instead of waiting
// for the test binary's timeout.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
