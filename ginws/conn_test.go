package ginws_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

func payload(n int, text bool) []byte {
	if text {
		// Multi-byte runes split across every boundary the server sees.
		s := strings.Repeat("héllo wörld ✓ 𝄞 ", n/20+1)
		b := []byte(s)[:n]
		for len(b) > 0 && !isValidPrefixEnd(b) {
			b = b[:len(b)-1]
		}
		return append(b, bytes.Repeat([]byte("a"), n-len(b))...)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

func isValidPrefixEnd(b []byte) bool {
	return len(b) == 0 || b[len(b)-1] < 0x80 || strings.ToValidUTF8(string(b), "\x00") == string(b)
}

func TestEchoSizes(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/message", echoHandler)
		s.Handle(r, "/stream", copyHandler)
		s.Handle(r, "/object", copyHandler, ginws.ObjectMode(true))
	})
	sizes := []int{0, 1, 125, 126, 127, 4096, 65535, 65536, 1 << 20, 16 << 20}
	for _, route := range []string{"/message", "/stream", "/object"} {
		for _, text := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s text=%v", route, text), func(t *testing.T) {
				t.Parallel()
				c := dial(t, ts.wsURL(route), nil)
				op := ws.OpBinary
				if text {
					op = ws.OpText
				}
				for _, n := range sizes {
					p := payload(n, text)
					sent := c.sendAsync(op, p)
					if route == "/stream" {
						// Bytes come back, packed into messages as the stream sees fit.
						var got []byte
						for len(got) < n {
							_, m := c.readMessage()
							got = append(got, m...)
						}
						require.NoError(t, <-sent)
						if n == 0 {
							continue // an empty message carries no bytes through a byte stream
						}
						require.True(t, bytes.Equal(p, got), "size %d", n)
						continue
					}
					gotOp, got := c.readMessage()
					require.NoError(t, <-sent)
					require.True(t, bytes.Equal(p, got), "size %d", n)
					if route == "/message" || route == "/object" {
						assert.Equal(t, op, gotOp, "size %d", n)
					}
				}
				c.sendClose(ws.StatusNormalClosure, "")
				code, _ := c.expectClose()
				assert.Equal(t, ws.StatusNormalClosure, code)
			})
		}
	}
}

func TestFragmentedEcho(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/echo", echoHandler) })
	c := dial(t, ts.wsURL("/echo"), nil)
	msg := payload(10000, true)
	c.sendFrame(false, ws.OpText, msg[:3])
	c.send(ws.OpPing, []byte("between"))
	for i := 3; i < len(msg); i += 997 {
		end := min(i+997, len(msg))
		c.sendFrame(end == len(msg), ws.OpContinuation, msg[i:end])
	}
	f := c.readFrame()
	assert.Equal(t, ws.OpPong, f.Header.OpCode)
	assert.Equal(t, "between", string(f.Payload))
	_, got := c.readMessage()
	assert.Equal(t, msg, got)
}

func TestConcurrentWriters(t *testing.T) {
	const writers, each = 32, 200
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/fan", func(conn *ginws.Conn, c *gin.Context) error {
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range each {
						msg := fmt.Appendf(nil, "%d:%d:%s", w, i, strings.Repeat("x", (w*31+i)%3000))
						var err error
						if i%2 == 0 {
							err = conn.WriteMessage(c, ginws.MessageText, msg)
						} else {
							_, err = conn.Write(msg)
						}
						if err != nil {
							return
						}
					}
				})
			}
			wg.Wait()
			_, _, err := conn.ReadMessage(c) // wait for the client's close
			return err
		})
	})
	c := dial(t, ts.wsURL("/fan"), nil)
	next := make([]int, writers)
	for range writers * each {
		_, p := c.readMessage()
		var w, i int
		var pad string
		_, err := fmt.Sscanf(string(p), "%d:%d:%s", &w, &i, &pad)
		if err != nil { // zero padding
			_, err = fmt.Sscanf(string(p), "%d:%d:", &w, &i)
		}
		require.NoError(t, err, "message %q", p)
		require.Equal(t, next[w], i, "writer %d out of order", w)
		require.Equal(t, (w*31+i)%3000, len(p)-len(fmt.Sprintf("%d:%d:", w, i)))
		next[w]++
	}
	c.sendClose(ws.StatusNormalClosure, "")
	c.expectClose()
}

func TestMessagesBeforeFirstRead(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/slow", func(conn *ginws.Conn, c *gin.Context) error {
			time.Sleep(300 * time.Millisecond) // load a session, say
			return echoHandler(conn, c)
		})
	})
	// The frames travel in the same TCP write as the handshake, so they sit
	// in the hijacked reader's buffer when the upgrade happens.
	var early []byte
	for i := range 5 {
		early = append(early, maskedFrame(true, ws.OpText, fmt.Appendf(nil, "early %d", i))...)
	}
	nc, br, resp := rawUpgrade(t, ts.Listener.Addr().String(), "/slow", nil, early)
	require.Equal(t, 101, resp.StatusCode)
	c := &client{t: t, nc: nc, r: br}
	for i := range 5 {
		_, p := c.readMessage()
		assert.Equal(t, fmt.Sprintf("early %d", i), string(p))
	}
}

// Frames cut anywhere across TCP writes: each write ends inside the next
// frame (its header or its payload), so the server's buffer holds the end
// of one frame and the start of another when it reads again.
func TestFramesSplitAcrossWrites(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/echo", echoHandler) })
	c := dial(t, ts.wsURL("/echo"), nil)
	var wire []byte
	var want []string
	for i := range 40 {
		p := strings.Repeat(string(rune('a'+i%26)), i*37%300)
		want = append(want, p)
		wire = append(wire, maskedFrame(true, ws.OpText, []byte(p))...)
	}
	done := make(chan error, 1)
	go func() {
		for cut := 1; len(wire) > 0; cut = cut%13 + 1 {
			n := min(cut, len(wire))
			if _, err := c.nc.Write(wire[:n]); err != nil {
				done <- err
				return
			}
			wire = wire[n:]
			time.Sleep(200 * time.Microsecond)
		}
		done <- nil
	}()
	for _, w := range want {
		op, p := c.readMessage()
		assert.Equal(t, ws.OpText, op)
		assert.Equal(t, w, string(p))
	}
	require.NoError(t, <-done)
}

func TestControlFramesWhileOnlyWriting(t *testing.T) {
	handlerErr := make(chan error, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/push", func(conn *ginws.Conn, c *gin.Context) error {
			for {
				if err := conn.WriteMessage(c, ginws.MessageText, []byte("tick")); err != nil {
					handlerErr <- err
					return err
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	})
	c := dial(t, ts.wsURL("/push"), nil)
	time.Sleep(100 * time.Millisecond) // the handler is now a writer only
	c.send(ws.OpPing, []byte("are you there"))
	for {
		f := c.readFrame()
		if f.Header.OpCode == ws.OpPong {
			assert.Equal(t, "are you there", string(f.Payload))
			break
		}
	}
	c.sendClose(4000, "enough")
	code, _ := c.expectClose()
	assert.Equal(t, ws.StatusCode(4000), code)
	err := <-handlerErr
	var ce *ginws.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, ginws.StatusCode(4000), ce.Code)
	assert.Equal(t, "enough", ce.Reason)
}

func TestCloseBothWays(t *testing.T) {
	got := make(chan error, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/read", func(conn *ginws.Conn, c *gin.Context) error {
			_, _, err := conn.ReadMessage(c)
			got <- err
			return err
		})
		s.Handle(r, "/close", func(conn *ginws.Conn, c *gin.Context) error {
			return conn.CloseWith(4002, "server bye")
		})
	})
	t.Run("codes out of range", func(t *testing.T) {
		conn := &ginws.Conn{}
		for _, code := range []ginws.StatusCode{-1, 0x10000 + 4000, 999, 1005} {
			assert.Error(t, conn.CloseWith(code, ""), "%d", code)
		}
	})
	t.Run("client closes", func(t *testing.T) {
		c := dial(t, ts.wsURL("/read"), nil)
		c.sendClose(4001, "bye")
		code, _ := c.expectClose()
		assert.Equal(t, ws.StatusCode(4001), code)
		err := <-got
		var ce *ginws.CloseError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, ginws.StatusCode(4001), ce.Code)
		assert.Equal(t, "bye", ce.Reason)
		assert.Equal(t, ginws.StatusCode(4001), ginws.CloseStatus(err))
	})
	t.Run("client closes without status", func(t *testing.T) {
		c := dial(t, ts.wsURL("/read"), nil)
		c.send(ws.OpClose, nil)
		code, _ := c.expectClose()
		assert.Equal(t, ws.StatusNoStatusRcvd, code, "no status is echoed as an empty close")
		assert.Equal(t, ginws.StatusNoStatusRcvd, ginws.CloseStatus(<-got))
	})
	t.Run("server closes", func(t *testing.T) {
		c := dial(t, ts.wsURL("/close"), nil)
		f := c.readFrame()
		require.Equal(t, ws.OpClose, f.Header.OpCode)
		code, reason := ws.ParseCloseFrameData(f.Payload)
		assert.Equal(t, ws.StatusCode(4002), code)
		assert.Equal(t, "server bye", reason)
		c.sendClose(code, "")
		c.expectEOF()
	})
	t.Run("connection lost", func(t *testing.T) {
		c := dial(t, ts.wsURL("/read"), nil)
		require.NoError(t, c.nc.Close())
		err := <-got
		assert.Equal(t, ginws.StatusAbnormalClosure, ginws.CloseStatus(err))
	})
}

func TestProtocolViolations(t *testing.T) {
	got := make(chan error, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/read", func(conn *ginws.Conn, c *gin.Context) error {
			for {
				if _, _, err := conn.ReadMessage(c); err != nil {
					got <- err
					return err
				}
			}
		}, ginws.MaxPayload(1000))
	})
	cases := []struct {
		name  string
		frame []byte
		code  ws.StatusCode
		is    error
	}{
		{"unmasked", []byte{0x81, 0x02, 'h', 'i'}, ws.StatusProtocolError, ginws.ErrProtocol},
		{"reserved bit", append([]byte{0xC1}, maskedFrame(true, ws.OpText, []byte("x"))[1:]...), ws.StatusProtocolError, ginws.ErrProtocol},
		{"reserved opcode", maskedFrame(true, 3, nil), ws.StatusProtocolError, ginws.ErrProtocol},
		{"long ping", maskedFrame(true, ws.OpPing, make([]byte, 126)), ws.StatusProtocolError, ginws.ErrProtocol},
		{"continuation first", maskedFrame(true, ws.OpContinuation, []byte("x")), ws.StatusProtocolError, ginws.ErrProtocol},
		{"bad utf8", maskedFrame(true, ws.OpText, []byte{0xff}), ws.StatusInvalidFramePayloadData, ginws.ErrInvalidUTF8},
		{"too big", maskedFrame(true, ws.OpBinary, make([]byte, 1001)), ws.StatusMessageTooBig, ginws.ErrMessageTooBig},
		{"bad close code", maskedFrame(true, ws.OpClose, []byte{0x03, 0xe4}), ws.StatusProtocolError, ginws.ErrProtocol},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, ts.wsURL("/read"), nil)
			_, err := c.nc.Write(tc.frame)
			require.NoError(t, err)
			code, _ := c.expectClose()
			assert.Equal(t, tc.code, code)
			herr := <-got
			assert.True(t, errors.Is(herr, tc.is), "%v is not %v", herr, tc.is)
			assert.Equal(t, ginws.StatusCode(tc.code), ginws.CloseStatus(herr))
		})
	}
}

func TestHandlerPanic(t *testing.T) {
	reported := make(chan error, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/panic", func(conn *ginws.Conn, c *gin.Context) error {
			panic("boom")
		})
		s.Handle(r, "/fail", func(conn *ginws.Conn, c *gin.Context) error {
			return errors.New("handler failed")
		})
		s.Handle(r, "/echo", echoHandler)
	}, ginws.ErrorHandler(func(err error, conn *ginws.Conn, c *gin.Context) { reported <- err }))
	healthy := dial(t, ts.wsURL("/echo"), nil)
	for _, path := range []string{"/panic", "/fail"} {
		c := dial(t, ts.wsURL(path), nil)
		code, _ := c.expectClose()
		assert.Equal(t, ws.StatusInternalServerError, code)
		err := <-reported
		if path == "/panic" {
			var pe *ginws.PanicError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, "boom", pe.Value)
		} else {
			assert.EqualError(t, err, "handler failed")
		}
	}
	healthy.send(ws.OpText, []byte("still here"))
	_, p := healthy.readMessage()
	assert.Equal(t, "still here", string(p))
}

func TestReadTimeoutKeepsConnection(t *testing.T) {
	timedOut := make(chan struct{})
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/patient", func(conn *ginws.Conn, c *gin.Context) error {
			ctx, cancel := context.WithTimeout(c, 50*time.Millisecond)
			_, _, err := conn.ReadMessage(ctx)
			cancel()
			close(timedOut)
			if !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("want deadline exceeded, got %v", err)
			}
			return echoHandler(conn, c)
		})
	})
	c := dial(t, ts.wsURL("/patient"), nil)
	waitFor(t, timedOut, 10*time.Second, "the read to time out")
	c.send(ws.OpText, []byte("after the timeout"))
	_, p := c.readMessage()
	assert.Equal(t, "after the timeout", string(p))
}

func TestShutdown(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/echo", echoHandler) })
	s := ts.ws
	var clients []*client
	for range 50 {
		clients = append(clients, dial(t, ts.wsURL("/echo"), nil))
	}
	require.Eventually(t, func() bool { return s.Len() == 50 }, 5*time.Second, 10*time.Millisecond)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	for _, c := range clients {
		f := c.readFrame()
		require.Equal(t, ws.OpClose, f.Header.OpCode)
		code, _ := ws.ParseCloseFrameData(f.Payload)
		assert.Equal(t, ws.StatusGoingAway, code)
		c.sendClose(code, "")
		c.expectEOF()
	}
	require.NoError(t, <-done)
	assert.Equal(t, 0, s.Len())
	_, err := tryDial(t, ts.wsURL("/echo"), nil)
	var se ws.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 503, int(se))
}

// TestShutdownWhileHandlerReads: Shutdown's close frame finds the handler
// in a read, which then gets a message the peer sent before it saw the
// close; the handler's write fails and it returns. The peer's answer is
// read by the Close that ends the handler, not left for the close timeout
// (a minute here: the test fails on its own deadline first).
func TestShutdownWhileHandlerReads(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/echo", echoHandler)
	}, ginws.CloseTimeout(time.Minute))
	c := dial(t, ts.wsURL("/echo"), nil)
	require.Eventually(t, func() bool { return ts.ws.Len() == 1 }, 5*time.Second, 5*time.Millisecond)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done <- ts.ws.Shutdown(ctx)
	}()
	f := c.readFrame()
	require.Equal(t, ws.OpClose, f.Header.OpCode)
	c.send(ws.OpText, []byte("in flight")) // sent before the client saw the close
	c.sendClose(ws.StatusGoingAway, "")
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown waits out the close timeout of a peer that answered")
	}
	c.expectEOF()
}

// TestShutdownDuringUpgrade: an upgrade whose checks (VerifyClient here)
// were under way when Shutdown began and returned is refused with 503, not
// accepted into a Server that no longer waits for it.
func TestShutdownDuringUpgrade(t *testing.T) {
	inVerify, release := make(chan struct{}), make(chan struct{})
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/echo", echoHandler, ginws.VerifyClient(func(*gin.Context) bool {
			close(inVerify)
			<-release
			return true
		}))
	})
	dialed := make(chan error, 1)
	go func() {
		_, err := tryDial(t, ts.wsURL("/echo"), nil)
		dialed <- err
	}()
	<-inVerify
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, ts.ws.Shutdown(ctx)) // no connection yet: at once
	close(release)
	var se ws.StatusError
	require.ErrorAs(t, <-dialed, &se)
	assert.Equal(t, 503, int(se))
	assert.Zero(t, ts.ws.Len())
}

// hijackGate holds an upgrade in its Hijack: after the upgrade has been
// counted for Shutdown, before its connection has joined the Server.
type hijackGate struct {
	gin.ResponseWriter
	in, release chan struct{}
}

func (w hijackGate) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	close(w.in)
	<-w.release
	return w.ResponseWriter.Hijack()
}

// TestShutdownExpiresDuringUpgrade: an upgrade that Shutdown found under
// way (counted, its connection not yet among the Server's) is closed with
// 1001 once it is through; when Shutdown's context ends before its peer
// has answered, it is dropped like the other connections. It waited out
// its close timeout instead (a minute here), its goroutine and socket
// outliving the Shutdown that had returned.
func TestShutdownExpiresDuringUpgrade(t *testing.T) {
	in, release := make(chan struct{}), make(chan struct{})
	var gated atomic.Bool
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		r.Use(func(c *gin.Context) {
			if gated.CompareAndSwap(false, true) {
				c.Writer = hijackGate{c.Writer, in, release}
			}
		})
		s.Handle(r, "/echo", echoHandler)
	}, ginws.CloseTimeout(time.Minute))
	dialed := make(chan *client, 1)
	go func() {
		c, err := tryDial(t, ts.wsURL("/echo"), nil)
		assert.NoError(t, err)
		dialed <- c
	}()
	waitFor(t, in, 10*time.Second, "the upgrade to reach Hijack")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- ts.ws.Shutdown(ctx) }()
	require.Eventually(t, func() bool { // Shutdown has begun
		_, err := tryDial(t, ts.wsURL("/echo"), nil)
		var se ws.StatusError
		return errors.As(err, &se) && int(se) == http.StatusServiceUnavailable
	}, 10*time.Second, 5*time.Millisecond)
	close(release)
	c := waitFor(t, dialed, 10*time.Second, "the upgrade")
	require.NotNil(t, c)
	require.ErrorIs(t, waitFor(t, shut, 10*time.Second, "Shutdown"), context.DeadlineExceeded)
	// The client never answers the close: Shutdown's end must drop it.
	frames := drainFrames(t, c, 10*time.Second)
	if code, _, ok := lastClose(frames); ok { // unless the context had ended first
		assert.Equal(t, ws.StatusGoingAway, code)
	}
	assert.Zero(t, ts.ws.Len())
}

// TestConnSize keeps a Conn within the runtime's 768-byte size class: every
// connection holds one for its whole life, and the next class is 896
// bytes. (An object over 512 bytes with pointers carries an 8-byte header,
// so the struct itself may take 760.) What only some connections use (the
// broadcast queue, a pong waiting for the write lock, a control frame's
// payload, the vectors of a large frame's writev, the queue of writers
// waiting for the write lock) lives outside it.
func TestConnSize(t *testing.T) {
	const n = 1000
	conns := make([]*ginws.Conn, n)
	// The smallest of a few tries: another goroutine's allocations can
	// only add to a try.
	per := uint64(math.MaxUint64)
	for range 5 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range conns {
			conns[i] = new(ginws.Conn)
		}
		runtime.ReadMemStats(&after)
		per = min(per, (after.TotalAlloc-before.TotalAlloc)/n)
	}
	runtime.KeepAlive(conns)
	assert.LessOrEqual(t, per, uint64(768))
	assert.LessOrEqual(t, unsafe.Sizeof(ginws.Conn{}), uintptr(760))
}

// TestEndStartsNoGoroutine: a handler that reads and writes with the
// connection's own context costs no goroutine at the end. The socket
// deadlines do not watch that context (its end closes the socket anyway);
// they used to, through context.AfterFunc, which runs its function in a
// goroutine of its own: two per connection.
func TestEndStartsNoGoroutine(t *testing.T) {
	withCtx := func(conn *ginws.Conn, _ *gin.Context) error {
		for {
			mt, p, err := conn.ReadMessage(conn.Context())
			if err != nil {
				return err
			}
			if err := conn.WriteMessage(conn.Context(), mt, p); err != nil {
				return err
			}
		}
	}
	created := func(h ginws.Handler) uint64 {
		ts := newServer(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/echo", h) })
		sample := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
		metrics.Read(sample)
		before := sample[0].Value.Uint64()
		const n = 50
		for range n {
			cl := dial(t, ts.wsURL("/echo"), nil)
			cl.send(ws.OpBinary, []byte("x"))
			cl.readMessage()
			cl.sendClose(ws.StatusNormalClosure, "")
			cl.expectClose()
		}
		require.Eventually(t, func() bool { return ts.ws.Len() == 0 }, 5*time.Second, time.Millisecond)
		metrics.Read(sample)
		return sample[0].Value.Uint64() - before
	}
	base := created(echoHandler) // context.Background()
	got := created(withCtx)
	t.Logf("goroutines created for 50 connections: %d with the connection's context, %d without", got, base)
	assert.LessOrEqual(t, got, base+10)
}

// TestConnContext: Conn.Context carries the upgrade request's values, is
// done with context.Canceled when the connection ends and tells what was
// derived from it: child contexts and context.AfterFunc, even one
// registered after the end; a stopped AfterFunc never runs. A context
// derived from it bounds a read like any other.
func TestConnContext(t *testing.T) {
	type key struct{}
	type result struct {
		errBefore, readErr, errAfter, childErr, cause error
		value                                         any
		stopped, stoppedRan                           bool
		notTold                                       []string
	}
	results := make(chan result, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		r.Use(func(c *gin.Context) {
			c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), key{}, "from middleware"))
			c.Next()
		})
		s.Handle(r, "/ctx", func(conn *ginws.Conn, _ *gin.Context) error {
			ctx := conn.Context()
			var res result
			res.errBefore = ctx.Err()
			res.value = ctx.Value(key{})
			rctx, rcancel := context.WithTimeout(ctx, 50*time.Millisecond)
			_, _, res.readErr = conn.ReadMessage(rctx)
			rcancel()
			child, cancel := context.WithCancel(ctx)
			defer cancel()
			ran := make(chan struct{})
			context.AfterFunc(ctx, func() { close(ran) })
			stoppedRan := make(chan struct{}, 1)
			res.stopped = context.AfterFunc(ctx, func() { stoppedRan <- struct{}{} })()
			if err := conn.WriteMessage(ctx, ginws.MessageText, []byte("ready")); err != nil {
				return err
			}
			wait := func(what string, ch <-chan struct{}) {
				select {
				case <-ch:
				case <-time.After(5 * time.Second):
					res.notTold = append(res.notTold, what)
				}
			}
			_, _, err := conn.ReadMessage(ctx) // the client's close
			wait("Done", ctx.Done())
			wait("child", child.Done())
			wait("AfterFunc", ran)
			res.childErr, res.errAfter, res.cause = child.Err(), ctx.Err(), context.Cause(ctx)
			late := make(chan struct{})
			context.AfterFunc(ctx, func() { close(late) })
			wait("AfterFunc after the end", late)
			select {
			case <-stoppedRan:
				res.stoppedRan = true
			default:
			}
			results <- res
			return err
		})
	})
	c := dial(t, ts.wsURL("/ctx"), nil)
	op, p := c.readMessage()
	require.Equal(t, ws.OpText, op)
	require.Equal(t, "ready", string(p))
	c.sendClose(ws.StatusNormalClosure, "")
	code, _ := c.expectClose()
	assert.Equal(t, ws.StatusNormalClosure, code)
	res := <-results
	assert.NoError(t, res.errBefore)
	assert.Empty(t, res.notTold, "not told of the end")
	assert.Equal(t, "from middleware", res.value)
	assert.ErrorIs(t, res.readErr, context.DeadlineExceeded, "the derived context bounds the read")
	assert.True(t, res.stopped, "stop before the end reports that f had not run")
	assert.False(t, res.stoppedRan)
	assert.ErrorIs(t, res.childErr, context.Canceled)
	assert.ErrorIs(t, res.errAfter, context.Canceled)
	assert.ErrorIs(t, res.cause, context.Canceled, "the request's own cancellation does not show through Cause")
}

// A message that fills its buffer exactly is read without growing it, and
// one that goes on past it still arrives whole.
func TestReadMessageExactBuffer(t *testing.T) {
	caps := make(chan int, 8)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/echo", func(conn *ginws.Conn, _ *gin.Context) error {
			for {
				op, p, err := conn.ReadMessage(context.Background())
				if err != nil {
					return err
				}
				caps <- cap(p)
				if err := conn.WriteMessage(context.Background(), op, p); err != nil {
					return err
				}
			}
		})
	})
	c := dial(t, ts.wsURL("/echo"), nil)
	for _, n := range []int{512, 1024, 64 << 10} {
		p := payload(n, false)
		c.send(ws.OpBinary, p)
		_, got := c.readMessage()
		require.True(t, bytes.Equal(p, got), "size %d", n)
		assert.Equal(t, n, <-caps, "buffer of a %d-byte message", n)
	}
	// First frame fills the buffer its length asks for; more follow.
	p := payload(3000, true)
	c.sendFrame(false, ws.OpText, p[:1024])
	c.sendFrame(false, ws.OpContinuation, p[1024:2048])
	c.sendFrame(true, ws.OpContinuation, p[2048:])
	_, got := c.readMessage()
	assert.Equal(t, p, got)
	<-caps
}

// A byte-stream Read that has bytes for the caller returns them, and does
// not wait for the rest of a message whose header came with them: the
// peer may be waiting for an answer before it sends that rest.
func TestStreamReadDoesNotWaitForPayload(t *testing.T) {
	start := make(chan struct{})
	reads := make(chan string, 2)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/stream", func(conn *ginws.Conn, _ *gin.Context) error {
			<-start
			buf := make([]byte, 64)
			for range 2 {
				n, err := conn.Read(buf)
				if err != nil {
					return err
				}
				reads <- string(buf[:n])
			}
			return nil
		})
	})
	c := dial(t, ts.wsURL("/stream"), nil)
	second := maskedFrame(true, ws.OpBinary, []byte("def"))
	const headerLen = 6 // 2 bytes and the mask
	// "abc" and the next frame's header in one write: a loopback write
	// arrives whole, so the server's first read finds both.
	_, err := c.nc.Write(append(maskedFrame(true, ws.OpBinary, []byte("abc")), second[:headerLen]...))
	require.NoError(t, err)
	close(start)
	select {
	case got := <-reads:
		assert.Equal(t, "abc", got)
	case <-time.After(10 * time.Second):
		t.Fatal("Read waited for the payload of the next message")
	}
	_, err = c.nc.Write(second[headerLen:])
	require.NoError(t, err)
	assert.Equal(t, "def", <-reads)
	code, _ := c.expectClose()
	assert.Equal(t, ws.StatusNormalClosure, code)
}

// After a protocol error the server sends its close frame and shuts its
// write side, then drains what the peer still sends until the peer closes
// (the lingering close), so that the TCP close is a FIN, not a reset that
// fails the peer's write in progress. A handler that calls Close after
// the error (defer conn.Close(), say) must not skip that drain.
func TestCloseAfterProtocolErrorLingers(t *testing.T) {
	for _, closes := range []bool{false, true} {
		name := "return"
		if closes {
			name = "Close then return"
		}
		t.Run(name, func(t *testing.T) {
			ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
				s.Handle(r, "/read", func(conn *ginws.Conn, c *gin.Context) error {
					_, _, err := conn.ReadMessage(c)
					if closes {
						_ = conn.Close()
					}
					return err
				})
			})
			c := dial(t, ts.wsURL("/read"), nil)
			// A reserved opcode, then more than the socket buffers hold: the
			// server reads the bad frame and nothing after it.
			junk := append(maskedFrame(true, 3, nil), make([]byte, 32<<20)...)
			wrote := make(chan error, 1)
			go func() {
				_ = c.nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
				_, err := c.nc.Write(junk)
				wrote <- err
			}()
			select {
			case err := <-wrote:
				require.NoError(t, err, "the server reset the connection instead of draining it")
			case <-time.After(30 * time.Second):
				t.Fatal("write hangs")
			}
			code, _ := c.expectClose()
			assert.Equal(t, ws.StatusProtocolError, code)
		})
	}
}
