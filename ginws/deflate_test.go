package ginws_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// ---- a permessage-deflate client, frame by frame ----

// deflClient is the peer side of permessage-deflate, written against RFC
// 7692 with compress/flate: it compresses what it sends (with or without
// context takeover) and inflates what it gets, keeping the server's
// window when the server did not agree to server_no_context_takeover.
type deflClient struct {
	t   testing.TB
	nc  net.Conn
	br  *bufio.Reader
	ext string // the response's Sec-WebSocket-Extensions

	closeSent bool // a close frame went out: the server's is the answer

	takeover bool // compress with context takeover
	fw       *flate.Writer
	fbuf     bytes.Buffer

	serverCtx bool   // the server may use context takeover
	hist      []byte // last 32 KiB inflated, when serverCtx
}

// deflDial upgrades with offer as Sec-WebSocket-Extensions ("" sends none).
func deflDial(t testing.TB, ts *testServer, path, offer string) *deflClient {
	t.Helper()
	nc, br, resp := rawUpgrade(t, ts.Listener.Addr().String(), path, map[string]string{"Sec-WebSocket-Extensions": offer}, nil)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	require.NoError(t, nc.SetReadDeadline(time.Time{}))
	ext := strings.Join(resp.Header.Values("Sec-Websocket-Extensions"), ", ")
	c := &deflClient{t: t, nc: nc, br: br, ext: ext}
	c.serverCtx = ext != "" && !strings.Contains(ext, "server_no_context_takeover")
	c.takeover = ext != "" && !strings.Contains(ext, "client_no_context_takeover")
	return c
}

// compress is RFC 7692 section 7.2.1: DEFLATE, flushed, the 00 00 ff ff
// tail removed.
func (c *deflClient) compress(p []byte) []byte {
	c.t.Helper()
	c.fbuf.Reset()
	if c.fw == nil || !c.takeover {
		fw, err := flate.NewWriter(&c.fbuf, flate.BestCompression)
		require.NoError(c.t, err)
		c.fw = fw
	}
	_, err := c.fw.Write(p)
	require.NoError(c.t, err)
	require.NoError(c.t, c.fw.Flush())
	b := c.fbuf.Bytes()
	require.Equal(c.t, []byte{0, 0, 0xff, 0xff}, b[len(b)-4:])
	return append([]byte(nil), b[:len(b)-4]...)
}

// deflFrame is a masked client frame with the given RSV bits (4 is RSV1).
func deflFrame(fin bool, rsv byte, op ws.OpCode, p []byte) []byte {
	b := maskedFrame(fin, op, p)
	b[0] |= rsv << 4
	return b
}

func (c *deflClient) write(b []byte) {
	c.t.Helper()
	_, err := c.nc.Write(b)
	require.NoError(c.t, err)
}

// sendZ sends p compressed, in one frame.
func (c *deflClient) sendZ(op ws.OpCode, p []byte) {
	c.t.Helper()
	c.write(deflFrame(true, 4, op, c.compress(p)))
}

// sendZAsync sends p compressed while the caller reads.
func (c *deflClient) sendZAsync(op ws.OpCode, p []byte) <-chan error {
	b := deflFrame(true, 4, op, c.compress(p))
	errc := make(chan error, 1)
	go func() { _, err := c.nc.Write(b); errc <- err }()
	return errc
}

type deflFrameIn struct {
	fin     bool
	rsv     byte
	op      ws.OpCode
	payload []byte
}

func (c *deflClient) readFrame() deflFrameIn {
	c.t.Helper()
	require.NoError(c.t, c.nc.SetReadDeadline(time.Now().Add(30*time.Second)))
	h, err := ws.ReadHeader(c.br)
	require.NoError(c.t, err)
	require.False(c.t, h.Masked)
	require.LessOrEqual(c.t, h.Length, int64(64<<20))
	f := deflFrameIn{fin: h.Fin, rsv: h.Rsv, op: h.OpCode, payload: make([]byte, h.Length)}
	_, err = io.ReadFull(c.br, f.payload)
	require.NoError(c.t, err)
	return f
}

// readMessage returns the next data message, inflated, and whether it came
// compressed (RSV1 on its first frame).
func (c *deflClient) readMessage() (ws.OpCode, []byte, bool) {
	c.t.Helper()
	var op ws.OpCode
	var msg []byte
	compressed := false
	for first := true; ; {
		f := c.readFrame()
		switch f.op {
		case ws.OpPing, ws.OpPong:
			require.Zero(c.t, f.rsv, "control frame with RSV bits")
			continue
		case ws.OpClose:
			c.t.Fatalf("unexpected close %d %q", ws.StatusCode(uint16(f.payload[0])<<8|uint16(f.payload[1])), f.payload[2:])
		}
		if first {
			op, compressed = f.op, f.rsv == 4
			require.True(c.t, f.rsv == 0 || f.rsv == 4, "RSV %03b", f.rsv)
			first = false
		} else {
			require.Zero(c.t, f.rsv, "continuation frame with RSV bits")
		}
		msg = append(msg, f.payload...)
		if f.fin {
			break
		}
	}
	if !compressed {
		return op, msg, false
	}
	return op, c.inflate(msg), true
}

// inflate is RFC 7692 section 7.2.2: append 00 00 ff ff and inflate, with
// the server's earlier messages as the dictionary under context takeover.
func (c *deflClient) inflate(p []byte) []byte {
	c.t.Helper()
	in := append(append([]byte(nil), p...), 0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff)
	var dict []byte
	if c.serverCtx {
		dict = c.hist
	}
	out, err := io.ReadAll(flate.NewReaderDict(bytes.NewReader(in), dict))
	require.NoError(c.t, err, "inflating %d bytes", len(p))
	if c.serverCtx {
		c.hist = append(c.hist, out...)
		if len(c.hist) > 32<<10 {
			c.hist = append([]byte(nil), c.hist[len(c.hist)-32<<10:]...)
		}
	}
	return out
}

// expectClose reads up to the server's close frame and returns its code.
func (c *deflClient) expectClose() ws.StatusCode {
	c.t.Helper()
	for {
		f := c.readFrame()
		if f.op != ws.OpClose {
			continue
		}
		require.GreaterOrEqual(c.t, len(f.payload), 2)
		code := ws.StatusCode(uint16(f.payload[0])<<8 | uint16(f.payload[1]))
		if !c.closeSent {
			_, _ = c.nc.Write(maskedFrame(true, ws.OpClose, f.payload[:2]))
		}
		require.NoError(c.t, c.nc.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, err := io.Copy(io.Discard, c.br)
		require.NoError(c.t, err, "the server should close TCP")
		_ = c.nc.Close()
		return code
	}
}

func (c *deflClient) close() {
	c.t.Helper()
	c.write(maskedFrame(true, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
	c.closeSent = true
	assert.Equal(c.t, ws.StatusNormalClosure, c.expectClose())
}

// deflText is text that compresses well, with multi-byte runes.
func deflText(n int, seed uint64) []byte {
	words := []string{"alpha ", "béta ", "gamma ", "δέλτα ", "epsilon ", "✓ ", "𝄞 ", "zeta ", "{\"id\":", "\"name\":"}
	r := rand.New(rand.NewPCG(seed, 7))
	var b []byte
	for len(b) < n {
		b = append(b, words[r.IntN(len(words))]...)
	}
	b = b[:n]
	for len(b) > 0 && !isValidPrefixEnd(b) {
		b = b[:len(b)-1]
	}
	return append(b, bytes.Repeat([]byte("a"), n-len(b))...)
}

// deflBinary is binary data that compresses well.
func deflBinary(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 9))
	block := make([]byte, 64)
	for i := range block {
		block[i] = byte(r.IntN(256))
	}
	b := make([]byte, n)
	for i := 0; i < n; i += len(block) {
		copy(b[i:], block)
		if i+3 < n {
			b[i+3] = byte(i)
		}
	}
	return b
}

func deflRandom(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 3))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func deflReaderEchoHandler(conn *ginws.Conn, _ *gin.Context) error {
	ctx := context.Background()
	for {
		t, r, err := conn.NextReader(ctx)
		if err != nil {
			return err
		}
		p, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if err := conn.WriteMessage(ctx, t, p); err != nil {
			return err
		}
	}
}

// deflStreamReadHandler echoes with the byte stream's Read and Write (not
// WriteTo, which io.Copy would use).
func deflStreamReadHandler(conn *ginws.Conn, _ *gin.Context) error {
	buf := make([]byte, 3000)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// deflRoutes: ReadMessage, NextReader, WriteTo (io.Copy) in both stream
// modes, and the stream's Read in both modes.
func deflRoutes(r *gin.Engine, s *ginws.Server, opts ...ginws.Option) {
	s.Handle(r, "/message", echoHandler, opts...)
	s.Handle(r, "/reader", deflReaderEchoHandler, opts...)
	s.Handle(r, "/stream", copyHandler, opts...)
	s.Handle(r, "/object", copyHandler, append(opts, ginws.ObjectMode(true))...)
	s.Handle(r, "/read", deflStreamReadHandler, opts...)
	s.Handle(r, "/read-object", deflStreamReadHandler, append(opts, ginws.ObjectMode(true))...)
}

// ---- negotiation ----

func TestDeflateNegotiation(t *testing.T) {
	const sntc, cntc = "server_no_context_takeover", "client_no_context_takeover"
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/default", echoHandler, ginws.Compression(ginws.DeflateOptions{Threshold: 1}))
		s.Handle(r, "/takeover", echoHandler, ginws.Compression(ginws.DeflateOptions{Threshold: 1, ServerContextTakeover: true}))
		s.Handle(r, "/client-nctx", echoHandler, ginws.Compression(ginws.DeflateOptions{Threshold: 1, ClientNoContextTakeover: true}))
		s.Handle(r, "/off", echoHandler, ginws.NoCompression())
		s.Handle(r, "/inherited", echoHandler)
	}, ginws.Compression(ginws.DeflateOptions{Threshold: 1}))
	pd := "permessage-deflate"
	tests := []struct {
		path, offer string
		want        string // the response's extensions; "" declines
	}{
		{"/default", "", ""},
		{"/off", pd, ""},
		{"/default", pd, pd + "; " + sntc},
		{"/default", "PerMessage-Deflate", pd + "; " + sntc},
		{"/default", pd + "; " + cntc, pd + "; " + sntc + "; " + cntc},
		{"/default", pd + "; " + sntc, pd + "; " + sntc},
		{"/default", pd + "; " + sntc + "; " + cntc, pd + "; " + sntc + "; " + cntc},
		{"/default", pd + "; client_max_window_bits", pd + "; " + sntc},
		{"/default", pd + "; client_max_window_bits=9", pd + "; " + sntc},
		{"/default", pd + "; client_max_window_bits=\"10\"", pd + "; " + sntc},
		{"/default", pd + "; server_max_window_bits=15", pd + "; " + sntc + "; server_max_window_bits=15"},
		{"/default", pd + "; server_max_window_bits=10", pd + "; " + sntc + "; server_max_window_bits=10"},
		{"/default", pd + "; server_max_window_bits=8; client_max_window_bits", pd + "; " + sntc + "; server_max_window_bits=8"},
		// Declined offers.
		{"/default", pd + "; server_max_window_bits=7", ""},
		{"/default", pd + "; server_max_window_bits=16", ""},
		{"/default", pd + "; server_max_window_bits", ""},
		{"/default", pd + "; client_max_window_bits=abc", ""},
		{"/default", pd + "; client_max_window_bits=0", ""},
		{"/default", pd + "; unknown_param", ""},
		{"/default", pd + "; " + sntc + "=1", ""},
		{"/default", pd + "; " + sntc + "; " + sntc, ""},
		{"/default", pd + "; " + cntc + "; " + cntc, ""},
		{"/default", pd + "; client_max_window_bits; client_max_window_bits", ""},
		{"/default", pd + "; client_max_window_bits=10; client_max_window_bits", ""},
		{"/default", pd + "; server_max_window_bits=10; server_max_window_bits=12", ""},
		{"/default", "x-webkit-deflate-frame", ""},
		// A malformed header declines everything in it.
		{"/default", pd + ";;", ""},
		{"/default", pd + "; =", ""},
		{"/default", pd + "; a=\"unterminated", ""},
		{"/default", ",,;", ""},
		// Alternatives: the first one the server can honour wins.
		{"/default", pd + "; bogus, " + pd + "; " + cntc, pd + "; " + sntc + "; " + cntc},
		{"/default", pd + "; server_max_window_bits=7, " + pd, pd + "; " + sntc},
		{"/default", "x-webkit-deflate-frame, " + pd + "; client_max_window_bits", pd + "; " + sntc},
		{"/default", pd + "; " + cntc + ", " + pd, pd + "; " + sntc + "; " + cntc},
		// Route options.
		{"/inherited", pd, pd + "; " + sntc},
		{"/takeover", pd, pd},
		{"/takeover", pd + "; " + sntc, pd + "; " + sntc},
		{"/takeover", pd + "; server_max_window_bits=9", pd + "; " + sntc + "; server_max_window_bits=9"},
		{"/client-nctx", pd, pd + "; " + sntc + "; " + cntc},
		{"/client-nctx", pd + "; " + cntc, pd + "; " + sntc + "; " + cntc},
	}
	for _, tc := range tests {
		t.Run(tc.path+" "+tc.offer, func(t *testing.T) {
			c := deflDial(t, ts, tc.path, tc.offer)
			assert.Equal(t, tc.want, c.ext)
			// The connection works as agreed: a compressed message is
			// inflated when the extension was agreed, and every echo reads
			// back right with the agreed parameters, several times (so
			// context takeover, where agreed, is exercised).
			for i := range 3 {
				p := deflText(3000, uint64(i))
				if c.ext != "" {
					c.sendZ(ws.OpText, p)
				} else {
					c.write(maskedFrame(true, ws.OpText, p))
				}
				op, got, compressed := c.readMessage()
				assert.Equal(t, ws.OpText, op)
				require.Equal(t, string(p), string(got))
				assert.Equal(t, c.ext != "", compressed)
			}
			c.close()
		})
	}
	// Two Sec-WebSocket-Extensions lines are one list.
	t.Run("two header lines", func(t *testing.T) {
		nc, err := net.Dial("tcp", ts.Listener.Addr().String())
		require.NoError(t, err)
		defer nc.Close()
		_, err = io.WriteString(nc, "GET /default HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
			"Sec-WebSocket-Extensions: foo; bar=1\r\nSec-WebSocket-Extensions: "+pd+"; "+cntc+"\r\n\r\n")
		require.NoError(t, err)
		require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
		assert.Equal(t, []string{pd + "; " + sntc + "; " + cntc}, resp.Header.Values("Sec-Websocket-Extensions"))
	})
}

// ---- echo ----

func TestDeflateEcho(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		deflRoutes(r, s)
	}, ginws.Compression(ginws.DeflateOptions{}))
	sizes := []int{0, 1, 100, 511, 512, 513, 4096, 32 << 10, 65535, 65536, 200 << 10, 1 << 20}
	offers := map[string]string{
		"takeover":    "permessage-deflate",
		"no-takeover": "permessage-deflate; client_no_context_takeover",
	}
	for _, route := range []string{"/message", "/reader", "/stream", "/object", "/read", "/read-object"} {
		for name, offer := range offers {
			for _, text := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/%s/text=%v", route, name, text), func(t *testing.T) {
					t.Parallel()
					c := deflDial(t, ts, route, offer)
					require.NotEmpty(t, c.ext)
					op := ws.OpBinary
					if text {
						op = ws.OpText
					}
					for i, n := range sizes {
						p := deflBinary(n, uint64(i))
						if text {
							p = deflText(n, uint64(i))
						}
						// Every other message goes plain: compressed and
						// plain messages mix freely.
						var sent <-chan error
						if i%2 == 0 {
							sent = c.sendZAsync(op, p)
						} else {
							b := maskedFrame(true, op, p)
							errc := make(chan error, 1)
							go func() { _, err := c.nc.Write(b); errc <- err }()
							sent = errc
						}
						var got []byte
						if route == "/stream" || strings.HasPrefix(route, "/read-") || route == "/read" {
							for len(got) < n {
								_, m, _ := c.readMessage()
								got = append(got, m...)
							}
						} else {
							var gotOp ws.OpCode
							gotOp, got, _ = c.readMessage()
							assert.Equal(t, op, gotOp, "size %d", n)
						}
						require.NoError(t, <-sent)
						require.Equal(t, len(p), len(got), "size %d", n)
						require.True(t, bytes.Equal(p, got), "size %d", n)
					}
					c.close()
				})
			}
		}
	}
}

// Many messages that repeat each other, compressed with context takeover
// on both sides, past the 32 KiB window several times over.
func TestDeflateContextTakeoverLong(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/message", echoHandler)
		s.Handle(r, "/reader", deflReaderEchoHandler)
	}, ginws.Compression(ginws.DeflateOptions{Threshold: 1, ServerContextTakeover: true}))
	for _, route := range []string{"/message", "/reader"} {
		t.Run(route, func(t *testing.T) {
			c := deflDial(t, ts, route, "permessage-deflate")
			require.Equal(t, "permessage-deflate", c.ext)
			require.True(t, c.serverCtx)
			var wire, plain int
			for i := range 400 {
				p := []byte(fmt.Sprintf(`{"seq":%d,"user":"user-%d","text":"%s"}`, i, i%7, deflText(100+i*3%900, uint64(i%13))))
				c.sendZ(ws.OpText, p)
				f := c.readFrame()
				require.Equal(t, byte(4), f.rsv, "message %d", i)
				require.True(t, f.fin)
				got := c.inflate(f.payload)
				require.Equal(t, string(p), string(got), "message %d", i)
				wire += len(f.payload)
				plain += len(p)
			}
			t.Logf("%d bytes of text went out as %d (%.1f%%)", plain, wire, 100*float64(wire)/float64(plain))
			assert.Less(t, wire, plain/3, "context takeover should compress repeated messages to under a third")
			c.close()
		})
	}
}

// Without server context takeover every message is compressed on its own;
// with it, a message that repeats the one before goes out much shorter.
func TestDeflateServerContextTakeover(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/own", echoHandler, ginws.Compression(ginws.DeflateOptions{}))
		s.Handle(r, "/ctx", echoHandler, ginws.Compression(ginws.DeflateOptions{ServerContextTakeover: true}))
	})
	p := deflRandom(2000) // does not compress on its own
	sizes := map[string][]int{}
	for _, path := range []string{"/own", "/ctx"} {
		c := deflDial(t, ts, path, "permessage-deflate")
		for range 3 {
			c.write(maskedFrame(true, ws.OpBinary, p))
			f := c.readFrame()
			if f.rsv == 4 {
				require.Equal(t, p, c.inflate(f.payload))
			} else {
				require.Equal(t, p, f.payload)
			}
			sizes[path] = append(sizes[path], len(f.payload))
		}
		c.close()
	}
	t.Logf("wire sizes of the same 2000 random bytes sent three times: %v", sizes)
	// Without takeover, random data goes out plain (compressing does not pay).
	assert.Equal(t, []int{2000, 2000, 2000}, sizes["/own"])
	// With it, the first is (slightly longer) compressed, the repeats are
	// references to it.
	assert.GreaterOrEqual(t, sizes["/ctx"][0], 2000)
	assert.Less(t, sizes["/ctx"][1], 200)
	assert.Less(t, sizes["/ctx"][2], 200)
}

// ---- what is compressed ----

func TestDeflateThreshold(t *testing.T) {
	type result struct{ on, off bool }
	results := make(chan result, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/t100", echoHandler, ginws.Compression(ginws.DeflateOptions{Threshold: 100}))
		s.Handle(r, "/default", echoHandler, ginws.Compression(ginws.DeflateOptions{}))
		s.Handle(r, "/ctx", echoHandler, ginws.Compression(ginws.DeflateOptions{ServerContextTakeover: true, Threshold: 1}))
		s.Handle(r, "/toggle", func(conn *ginws.Conn, c *gin.Context) error {
			on := conn.Compression()
			conn.SetCompression(false)
			off := !conn.Compression()
			results <- result{on, off}
			ctx := context.Background()
			for {
				t, p, err := conn.ReadMessage(ctx)
				if err != nil {
					return err
				}
				conn.SetCompression(string(p[:2]) == "on")
				if err := conn.WriteMessage(ctx, t, p); err != nil {
					return err
				}
			}
		}, ginws.Compression(ginws.DeflateOptions{Threshold: 1}))
	})
	check := func(c *deflClient, p []byte, wantCompressed bool) {
		t.Helper()
		c.write(maskedFrame(true, ws.OpText, p))
		op, got, compressed := c.readMessage()
		assert.Equal(t, ws.OpText, op)
		require.Equal(t, string(p), string(got))
		assert.Equal(t, wantCompressed, compressed, "message of %d bytes", len(p))
	}
	abc := func(n int) []byte { return bytes.Repeat([]byte("a"), n) }
	t.Run("threshold 100", func(t *testing.T) {
		c := deflDial(t, ts, "/t100", "permessage-deflate")
		check(c, abc(99), false)
		check(c, abc(100), true)
		check(c, abc(101), true)
		check(c, abc(10), false)
		check(c, nil, false)
		c.close()
	})
	t.Run("default threshold 512", func(t *testing.T) {
		c := deflDial(t, ts, "/default", "permessage-deflate")
		check(c, abc(511), false)
		check(c, abc(512), true)
		check(c, deflText(4000, 2), true)
		// Incompressible: goes out plain rather than longer.
		c.write(maskedFrame(true, ws.OpBinary, deflRandom(4096)))
		_, got, compressed := c.readMessage()
		assert.False(t, compressed)
		assert.Equal(t, deflRandom(4096), got)
		c.close()
	})
	t.Run("context takeover always compresses", func(t *testing.T) {
		c := deflDial(t, ts, "/ctx", "permessage-deflate")
		c.write(maskedFrame(true, ws.OpBinary, deflRandom(4096)))
		_, got, compressed := c.readMessage()
		assert.True(t, compressed)
		assert.Equal(t, deflRandom(4096), got)
		check(c, deflText(1, 1), true)
		c.close()
	})
	t.Run("SetCompression", func(t *testing.T) {
		c := deflDial(t, ts, "/toggle", "permessage-deflate")
		r := waitDefl(t, results)
		assert.True(t, r.on, "Compression() after the handshake")
		assert.True(t, r.off, "Compression() after SetCompression(false)")
		check(c, append([]byte("on"), deflText(1000, 3)...), true)
		check(c, append([]byte("of"), deflText(1000, 3)...), false)
		check(c, append([]byte("on"), deflText(1000, 4)...), true)
		c.close()
	})
	t.Run("SetCompression without deflate", func(t *testing.T) {
		c := deflDial(t, ts, "/toggle", "")
		r := waitDefl(t, results)
		assert.False(t, r.on)
		check(c, append([]byte("on"), deflText(1000, 3)...), false)
		c.close()
	})
}

func waitDefl[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out")
	}
	var zero T
	return zero
}

// ---- limits and violations ----

func TestDeflateBomb(t *testing.T) {
	errs := make(chan error, 4)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		for _, path := range []string{"/message", "/reader"} {
			h := echoHandler
			if path == "/reader" {
				h = deflReaderEchoHandler
			}
			s.Handle(r, path, func(conn *ginws.Conn, c *gin.Context) error {
				err := h(conn, c)
				errs <- err
				return err
			})
		}
	}, ginws.Compression(ginws.DeflateOptions{}), ginws.MaxPayload(64<<10))
	// 48 MiB of zeros in about 48 KiB: the limit is 64 KiB. Each MiB is
	// compressed on its own and flushed; the pieces make one stream.
	var chunk bytes.Buffer
	fw, _ := flate.NewWriter(&chunk, flate.BestCompression)
	_, _ = fw.Write(make([]byte, 1<<20))
	require.NoError(t, fw.Flush())
	z := bytes.Repeat(chunk.Bytes(), 48)
	z = z[:len(z)-4]
	t.Logf("bomb: 48 MiB in %d bytes", len(z))
	require.Less(t, len(z), 64<<10, "the compressed bomb itself is under the limit")
	for _, path := range []string{"/message", "/reader"} {
		t.Run(path, func(t *testing.T) {
			c := deflDial(t, ts, path, "permessage-deflate")
			// Exactly the limit is fine.
			p := deflText(64<<10, 5)
			c.sendZ(ws.OpText, p)
			_, got, _ := c.readMessage()
			require.Equal(t, len(p), len(got))
			go func() { _, _ = c.nc.Write(deflFrame(true, 4, ws.OpBinary, z)) }()
			assert.Equal(t, ws.StatusMessageTooBig, c.expectClose())
			err := waitDefl(t, errs)
			assert.ErrorIs(t, err, ginws.ErrMessageTooBig)
		})
	}
	// A compressed frame whose header alone is past the limit (and the
	// slack for DEFLATE's framing) is refused from the header.
	t.Run("compressed size", func(t *testing.T) {
		c := deflDial(t, ts, "/message", "permessage-deflate")
		h := deflFrame(false, 4, ws.OpBinary, make([]byte, 70<<10))
		c.write(h[:16]) // header and a little: the rest never comes
		assert.Equal(t, ws.StatusMessageTooBig, c.expectClose())
		assert.ErrorIs(t, waitDefl(t, errs), ginws.ErrMessageTooBig)
	})
}

// A compressed message over MaxPayload says how large it is only as it
// inflates: ReadMessage's buffer, full at the limit, must not be grown to
// twice the limit to take the one byte that makes it too big. A bomb of a
// few KiB would otherwise cost a server four times MaxPayload of
// allocations (the buffers up to the limit, and one of twice the limit)
// where an accepted message of the limit's size costs two.
func TestDeflateBombBufferBound(t *testing.T) {
	const limit = 8 << 20
	type result struct {
		n   int
		err error
	}
	results := make(chan result, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/message", func(conn *ginws.Conn, c *gin.Context) error {
			for {
				_, p, err := conn.ReadMessage(c)
				results <- result{len(p), err}
				if err != nil {
					return err
				}
			}
		})
	}, ginws.Compression(ginws.DeflateOptions{}), ginws.MaxPayload(limit))

	// Messages of the limit's size whose last frame comes after the buffer
	// is full are read whole: plain, and compressed with the flush marker
	// kept in the first frame and an empty block (RFC 7692 section
	// 7.2.3.6) in the last.
	c := deflDial(t, ts, "/message", "permessage-deflate; client_no_context_takeover")
	p := deflBinary(limit, 3)
	c.write(append(deflFrame(false, 0, ws.OpBinary, p), deflFrame(true, 0, ws.OpContinuation, nil)...))
	res := waitDefl(t, results)
	require.NoError(t, res.err)
	assert.Equal(t, limit, res.n)
	z := append(c.compress(p), 0, 0, 0xff, 0xff)
	c.write(append(deflFrame(false, 4, ws.OpBinary, z), deflFrame(true, 0, ws.OpContinuation, []byte{0})...))
	res = waitDefl(t, results)
	require.NoError(t, res.err)
	assert.Equal(t, limit, res.n)
	c.close()
	assert.Error(t, waitDefl(t, results).err)

	var zb bytes.Buffer
	fw, err := flate.NewWriter(&zb, flate.BestCompression)
	require.NoError(t, err)
	_, _ = fw.Write(make([]byte, 2*limit))
	require.NoError(t, fw.Flush())
	bomb := deflFrame(true, 4, ws.OpBinary, zb.Bytes()[:zb.Len()-4])
	// The least of a few tries: other goroutines can only add to one. Each
	// starts with the buffer pools emptied by collectedMemStats.
	least := uint64(math.MaxUint64)
	for range 3 {
		c := deflDial(t, ts, "/message", "permessage-deflate")
		before := collectedMemStats()
		c.write(bomb)
		assert.ErrorIs(t, waitDefl(t, results).err, ginws.ErrMessageTooBig)
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
		assert.Equal(t, ws.StatusMessageTooBig, c.expectClose())
	}
	t.Logf("allocated reading a %d-byte bomb over a %d-byte limit: %d bytes", len(bomb), limit, least)
	assert.Less(t, least, uint64(3*limit), "the read buffer grew past the limit")
}

func TestDeflateViolations(t *testing.T) {
	errs := make(chan error, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/echo", func(conn *ginws.Conn, c *gin.Context) error {
			err := echoHandler(conn, c)
			errs <- err
			return err
		})
	}, ginws.Compression(ginws.DeflateOptions{}))
	var c0 deflClient
	c0.t = t
	z := func(p string) []byte { return c0.compress([]byte(p)) }
	zt := z("hello")
	bad := append(z(strings.Repeat("valid text ", 100)), 0x80, 0xff, 0xff) // a byte that does not fit
	badUTF8 := z("ok \xed\xa0\x80 then more")
	tests := []struct {
		name  string
		offer string
		send  [][]byte
		code  ws.StatusCode
		err   error
	}{
		{"RSV1 without the extension", "", [][]byte{deflFrame(true, 4, ws.OpText, zt)}, ws.StatusProtocolError, ginws.ErrProtocol},
		{"RSV1 on ping", "permessage-deflate", [][]byte{deflFrame(true, 4, ws.OpPing, nil)}, ws.StatusProtocolError, ginws.ErrProtocol},
		{"RSV1 on pong", "permessage-deflate", [][]byte{deflFrame(true, 4, ws.OpPong, nil)}, ws.StatusProtocolError, ginws.ErrProtocol},
		{"RSV1 on close", "permessage-deflate", [][]byte{deflFrame(true, 4, ws.OpClose, []byte{3, 232})}, ws.StatusProtocolError, ginws.ErrProtocol},
		{"RSV1 on continuation", "permessage-deflate", [][]byte{deflFrame(false, 4, ws.OpText, zt[:2]), deflFrame(true, 4, ws.OpContinuation, zt[2:])}, ws.StatusProtocolError, ginws.ErrProtocol},
		{"RSV1 on continuation of a plain message", "permessage-deflate", [][]byte{deflFrame(false, 0, ws.OpText, []byte("a")), deflFrame(true, 4, ws.OpContinuation, []byte("b"))}, ws.StatusProtocolError, ginws.ErrProtocol},
		{"RSV2", "permessage-deflate", [][]byte{deflFrame(true, 2, ws.OpText, []byte("a"))}, ws.StatusProtocolError, ginws.ErrProtocol},
		{"RSV1 and RSV3", "permessage-deflate", [][]byte{deflFrame(true, 5, ws.OpText, zt)}, ws.StatusProtocolError, ginws.ErrProtocol},
		{"invalid DEFLATE data", "permessage-deflate", [][]byte{deflFrame(true, 4, ws.OpBinary, bad)}, ws.StatusInvalidFramePayloadData, ginws.ErrInvalidUTF8},
		{"reserved block type", "permessage-deflate", [][]byte{deflFrame(true, 4, ws.OpBinary, []byte{0x07, 0x00})}, ws.StatusInvalidFramePayloadData, ginws.ErrInvalidUTF8},
		{"truncated stored block", "permessage-deflate", [][]byte{deflFrame(true, 4, ws.OpBinary, []byte{0x00, 0x64, 0x00, 0x9b, 0xff, 'o', 'n', 'l', 'y', ' ', 't', 'e', 'n', '!', '!'})}, ws.StatusInvalidFramePayloadData, ginws.ErrInvalidUTF8},
		{"invalid UTF-8 inside compressed text", "permessage-deflate", [][]byte{deflFrame(true, 4, ws.OpText, badUTF8)}, ws.StatusInvalidFramePayloadData, ginws.ErrInvalidUTF8},
		{"truncated UTF-8 at the end of compressed text", "permessage-deflate", [][]byte{deflFrame(true, 4, ws.OpText, z("caf\xc3"))}, ws.StatusInvalidFramePayloadData, ginws.ErrInvalidUTF8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := deflDial(t, ts, "/echo", tc.offer)
			for _, b := range tc.send {
				c.write(b)
			}
			assert.Equal(t, tc.code, c.expectClose())
			assert.ErrorIs(t, waitDefl(t, errs), tc.err)
		})
	}
}

// A compressed text message whose first bytes are not UTF-8 fails at once,
// before the rest of its frames arrive.
func TestDeflateUTF8FailsFast(t *testing.T) {
	errs := make(chan error, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/echo", func(conn *ginws.Conn, c *gin.Context) error {
			err := echoHandler(conn, c)
			errs <- err
			return err
		})
	}, ginws.Compression(ginws.DeflateOptions{}))
	c := deflDial(t, ts, "/echo", "permessage-deflate")
	z := c.compress(append([]byte("\xc0\xaf"), deflText(100<<10, 1)...))
	c.write(deflFrame(false, 4, ws.OpText, z[:len(z)/2])) // the final fragment never comes
	assert.Equal(t, ws.StatusInvalidFramePayloadData, c.expectClose())
	assert.ErrorIs(t, waitDefl(t, errs), ginws.ErrInvalidUTF8)
}

// A compressed message fragmented at every byte, with control frames
// between the fragments.
func TestDeflateFragmented(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) { deflRoutes(r, s) },
		ginws.Compression(ginws.DeflateOptions{Threshold: 1}))
	for _, route := range []string{"/message", "/reader", "/object"} {
		t.Run(route, func(t *testing.T) {
			c := deflDial(t, ts, route, "permessage-deflate")
			p := deflText(3000, 11)
			z := c.compress(p)
			var b []byte
			for i := range z {
				rsv, op := byte(0), ws.OpContinuation
				if i == 0 {
					rsv, op = 4, ws.OpText
				}
				b = append(b, deflFrame(i == len(z)-1, rsv, op, z[i:i+1])...)
				if i%50 == 0 {
					b = append(b, maskedFrame(true, ws.OpPing, []byte("p"))...)
				}
			}
			c.write(b)
			op, got, compressed := c.readMessage()
			assert.Equal(t, ws.OpText, op)
			assert.True(t, compressed)
			require.Equal(t, string(p), string(got))
			c.close()
		})
	}
}

// A read that times out in the middle of a compressed message ends the
// connection (the decompressor cannot take up where it stopped); one that
// times out before a message leaves it usable.
func TestDeflateReadTimeout(t *testing.T) {
	type step struct {
		what string
		err  error
	}
	steps := make(chan step, 8)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/echo", func(conn *ginws.Conn, c *gin.Context) error {
			ctx, cancel := context.WithTimeout(c, 100*time.Millisecond)
			_, _, err := conn.NextReader(ctx)
			cancel()
			steps <- step{"idle", err}
			_, r, err := conn.NextReader(c)
			if err != nil {
				return err
			}
			_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			_, err = io.ReadAll(r)
			steps <- step{"mid", err}
			_ = conn.SetReadDeadline(time.Time{})
			_, _, err = conn.ReadMessage(c)
			steps <- step{"after", err}
			return err
		})
	}, ginws.Compression(ginws.DeflateOptions{}))
	c := deflDial(t, ts, "/echo", "permessage-deflate")
	s := waitDefl(t, steps)
	assert.ErrorIs(t, s.err, context.DeadlineExceeded, "before a message")
	z := c.compress(deflText(50<<10, 2))
	c.write(deflFrame(false, 4, ws.OpText, z[:len(z)/2]))
	s = waitDefl(t, steps)
	var ne net.Error
	require.True(t, errors.As(s.err, &ne) && ne.Timeout(), "mid-message: %v", s.err)
	s = waitDefl(t, steps)
	require.Error(t, s.err, "after a timeout in a compressed message")
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c.br)
	_ = err // the connection is dropped, with or without a close frame
}

// ---- broadcast ----

func TestDeflateBroadcast(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/fast", roomHandler, ginws.Compression(ginws.DeflateOptions{}))
		s.Handle(r, "/fast2", roomHandler, ginws.Compression(ginws.DeflateOptions{Threshold: 64}))
		s.Handle(r, "/best", roomHandler, ginws.Compression(ginws.DeflateOptions{Level: flate.BestCompression}))
		s.Handle(r, "/ctx", roomHandler, ginws.Compression(ginws.DeflateOptions{ServerContextTakeover: true}))
		s.Handle(r, "/plain", roomHandler)
		s.Handle(r, "/toggled", func(conn *ginws.Conn, c *gin.Context) error {
			conn.SetCompression(false)
			return roomHandler(conn, c)
		}, ginws.Compression(ginws.DeflateOptions{}))
	})
	type peer struct {
		path  string
		c     *deflClient
		wantZ bool
	}
	var peers []*peer
	for _, p := range []struct {
		path, offer string
		wantZ       bool
	}{
		{"/fast", "permessage-deflate", true},
		{"/fast", "permessage-deflate", true},
		{"/fast", "permessage-deflate; server_max_window_bits=9", true}, // Huffman only
		{"/fast2", "permessage-deflate", true},
		{"/best", "permessage-deflate", true},
		{"/ctx", "permessage-deflate", true},
		{"/ctx", "permessage-deflate", true},
		{"/ctx", "permessage-deflate; server_no_context_takeover", true},
		{"/plain", "permessage-deflate", false},
		{"/fast", "", false},
		{"/toggled", "permessage-deflate", false},
	} {
		peers = append(peers, &peer{p.path, deflDial(t, ts, p.path, p.offer), p.wantZ})
	}
	require.Eventually(t, func() bool { return ts.ws.Len() == len(peers) }, 5*time.Second, 5*time.Millisecond)
	var msgs [][]byte
	for i := range 60 {
		m := deflText(600+i*37, uint64(i%5)) // repeats: context takeover pays
		if i%10 == 9 {
			m = deflText(10, uint64(i)) // under every threshold
		}
		msgs = append(msgs, m)
		require.Equal(t, len(peers), ts.ws.Broadcast(ginws.ToAll(), ginws.MessageText, m))
	}
	var wg sync.WaitGroup
	wire := make([]int, len(peers))
	for i, p := range peers {
		wg.Go(func() {
			for j, m := range msgs {
				f := p.c.readFrame()
				if !assert.True(t, f.fin) || !assert.Equal(t, ws.OpText, f.op) {
					return
				}
				got := f.payload
				if f.rsv == 4 {
					got = p.c.inflate(f.payload)
				}
				wire[i] += len(f.payload)
				big := len(m) >= 512
				if !assert.Equal(t, p.wantZ && big, f.rsv == 4, "%s message %d of %d bytes", p.path, j, len(m)) ||
					!assert.Equal(t, string(m), string(got), "%s message %d", p.path, j) {
					return
				}
			}
		})
	}
	wg.Wait()
	for i, p := range peers {
		t.Logf("%-8s %-50q %6d bytes on the wire", p.path, p.c.ext, wire[i])
	}
	assert.Less(t, wire[5], wire[0], "context takeover compresses repeats better")
	for _, p := range peers {
		p.c.close()
	}
}

// ---- benchmarks ----

// BenchmarkDeflateEcho is one round trip of a text message per op, the
// client sending it compressed (prebuilt) and reading the server's
// compressed echo. allocs/op are the server's; wire-B/op is what the echo
// took on the wire, plain-B/op what it would have taken uncompressed.
func BenchmarkDeflateEcho(b *testing.B) {
	modes := []struct {
		name  string
		opts  []ginws.Option
		offer string
	}{
		{"off", nil, ""},
		{"deflate", []ginws.Option{ginws.Compression(ginws.DeflateOptions{})}, "permessage-deflate; client_no_context_takeover"},
		{"client-takeover", []ginws.Option{ginws.Compression(ginws.DeflateOptions{})}, "permessage-deflate"},
		{"server-takeover", []ginws.Option{ginws.Compression(ginws.DeflateOptions{ServerContextTakeover: true})}, "permessage-deflate; client_no_context_takeover"},
	}
	for _, m := range modes {
		ts := newServer(b, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/echo", echoHandler, m.opts...) })
		for _, size := range []int{1 << 10, 64 << 10} {
			b.Run(fmt.Sprintf("%s/%d", m.name, size), func(b *testing.B) {
				c := deflDial(b, ts, "/echo", m.offer)
				c.takeover = false // the same compressed frame every time
				p := deflText(size, 1)
				out := maskedFrame(true, ws.OpText, p)
				if c.ext != "" {
					out = deflFrame(true, 4, ws.OpText, c.compress(p))
				}
				in := make([]byte, 2*size)
				var hdr [10]byte
				var wire int64
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := c.nc.Write(out); err != nil {
						b.Fatal(err)
					}
					n, err := readFramePayload(c.br, hdr[:], in)
					if err != nil {
						b.Fatal(err)
					}
					wire += int64(n)
				}
				b.StopTimer()
				b.ReportMetric(float64(wire)/float64(b.N), "wire-B/op")
				b.ReportMetric(float64(size), "plain-B/op")
				c.close()
			})
		}
	}
}

// BenchmarkDeflateConnMemory holds 500 connections that have each echoed a
// few compressed 4 KiB messages both ways and then went idle, and reports
// the live heap per connection after GC. The clients are raw sockets in
// this process (about 5 KiB each with their read buffer, the same in every
// mode), so the difference from mode "off" is what permessage-deflate
// keeps per idle connection.
func BenchmarkDeflateConnMemory(b *testing.B) {
	modes := []struct {
		name  string
		opts  []ginws.Option
		offer string
	}{
		{"off", nil, ""},
		{"no-takeover", []ginws.Option{ginws.Compression(ginws.DeflateOptions{ClientNoContextTakeover: true})}, "permessage-deflate"},
		{"client-takeover", []ginws.Option{ginws.Compression(ginws.DeflateOptions{})}, "permessage-deflate"},
		{"server-takeover", []ginws.Option{ginws.Compression(ginws.DeflateOptions{ServerContextTakeover: true, ClientNoContextTakeover: true})}, "permessage-deflate"},
		{"both-takeover", []ginws.Option{ginws.Compression(ginws.DeflateOptions{ServerContextTakeover: true})}, "permessage-deflate"},
	}
	const n = 500
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			for range b.N {
				ts := newServer(b, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/echo", echoHandler, m.opts...) })
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				clients := make([]*deflClient, n)
				for i := range clients {
					c := deflDial(b, ts, "/echo", m.offer)
					for j := range 4 {
						p := deflText(4<<10, uint64(j))
						if c.ext != "" {
							c.sendZ(ws.OpText, p)
						} else {
							c.write(maskedFrame(true, ws.OpText, p))
						}
						c.readMessage()
					}
					c.fw, c.hist, c.fbuf = nil, nil, bytes.Buffer{} // the client's own state is not the server's
					clients[i] = c
				}
				for range 3 {
					runtime.GC()
				}
				runtime.ReadMemStats(&after)
				b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/n, "heap-B/conn")
				for _, c := range clients {
					c.close()
				}
			}
		})
	}
}

// A handler that writes and only later reads: ginws reads control frames
// for it meanwhile and stops at the first frame of a compressed message,
// which the handler's read then inflates whole.
func TestDeflatePumpLeavesMessage(t *testing.T) {
	got := make(chan []byte, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/late", func(conn *ginws.Conn, c *gin.Context) error {
			if err := conn.WriteMessage(c, ginws.MessageText, deflText(2000, 1)); err != nil {
				return err
			}
			time.Sleep(400 * time.Millisecond) // the pump runs
			_, p, err := conn.ReadMessage(c)
			if err != nil {
				return err
			}
			got <- append([]byte(nil), p...)
			return conn.WriteMessage(c, ginws.MessageText, p)
		})
	}, ginws.Compression(ginws.DeflateOptions{}))
	c := deflDial(t, ts, "/late", "permessage-deflate")
	_, first, compressed := c.readMessage()
	assert.True(t, compressed)
	assert.Equal(t, string(deflText(2000, 1)), string(first))
	time.Sleep(150 * time.Millisecond)
	c.write(maskedFrame(true, ws.OpPing, []byte("p"))) // answered by the pump
	p := deflText(5000, 2)
	c.sendZ(ws.OpText, p)
	assert.Equal(t, string(p), string(waitDefl(t, got)))
	_, echo, _ := c.readMessage()
	assert.Equal(t, string(p), string(echo))
	c.close()
}
