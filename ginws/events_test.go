package ginws_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// eventEcho hands the connection over to OnMessage at once.
func eventEcho(conn *ginws.Conn, _ *gin.Context) error {
	conn.OnMessage(func(conn *ginws.Conn, t ginws.MessageType, p []byte) error {
		return conn.WriteMessage(context.Background(), t, p)
	})
	return nil
}

// closes collects what OnClose reports.
type closes struct {
	mu   sync.Mutex
	errs []error
	n    atomic.Int32
}

func (cl *closes) record(_ *ginws.Conn, err error) {
	cl.mu.Lock()
	cl.errs = append(cl.errs, err)
	cl.mu.Unlock()
	cl.n.Add(1)
}

// wrap is h with cl recording how each connection ended.
func (cl *closes) wrap(h ginws.Handler) ginws.Handler {
	return func(conn *ginws.Conn, c *gin.Context) error {
		conn.OnClose(cl.record)
		return h(conn, c)
	}
}

func (cl *closes) wait(t *testing.T, n int) []error {
	t.Helper()
	require.Eventually(t, func() bool { return int(cl.n.Load()) >= n }, 10*time.Second, time.Millisecond)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return append([]error(nil), cl.errs...)
}

func TestEventEcho(t *testing.T) {
	var cl closes
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/events", cl.wrap(eventEcho))
	})
	c := dial(t, ts.wsURL("/events"), nil)
	for _, size := range []int{0, 1, 125, 126, 4095, 4096, 65535, 65536, 1 << 20} {
		p := payload(size, true)
		errc := c.sendAsync(ws.OpText, p)
		op, got := c.readMessage()
		require.NoError(t, <-errc)
		assert.Equal(t, ws.OpText, op)
		assert.True(t, bytes.Equal(p, got), "size %d", size)
	}
	// Fragmented, with a ping between the fragments.
	c.sendFrame(false, ws.OpBinary, []byte("frag"))
	c.send(ws.OpPing, []byte("between"))
	c.sendFrame(true, ws.OpContinuation, []byte("mented"))
	f := c.readFrame()
	assert.Equal(t, ws.OpPong, f.Header.OpCode)
	assert.Equal(t, "between", string(f.Payload))
	op, got := c.readMessage()
	assert.Equal(t, ws.OpBinary, op)
	assert.Equal(t, "fragmented", string(got))
	// A ping on its own, while the connection is idle.
	time.Sleep(20 * time.Millisecond)
	c.send(ws.OpPing, []byte("idle?"))
	f = c.readFrame()
	assert.Equal(t, ws.OpPong, f.Header.OpCode)
	assert.Equal(t, "idle?", string(f.Payload))
	// Frames cut after their header, and inside it: the rest is waited for.
	for _, op := range []ws.OpCode{ws.OpPing, ws.OpText} {
		for _, cut := range []int{1, 6} {
			wire := maskedFrame(true, op, []byte("cut"))
			_, err := c.nc.Write(wire[:cut])
			require.NoError(t, err)
			time.Sleep(20 * time.Millisecond)
			_, err = c.nc.Write(wire[cut:])
			require.NoError(t, err)
			f = c.readFrame()
			if op == ws.OpPing {
				assert.Equal(t, ws.OpPong, f.Header.OpCode)
			}
			assert.Equal(t, "cut", string(f.Payload))
		}
	}

	c.sendClose(ws.StatusNormalClosure, "bye")
	code, _ := c.expectClose()
	assert.Equal(t, ws.StatusNormalClosure, code)
	errs := cl.wait(t, 1)
	var ce *ginws.CloseError
	require.ErrorAs(t, errs[0], &ce)
	assert.Equal(t, ginws.StatusNormalClosure, ce.Code)
	assert.Equal(t, "bye", ce.Reason)
	assert.Zero(t, ts.ws.Len())
}

// The handler reads a first message itself, then hands over; messages
// that arrived with the first one, already buffered, come next, in order.
func TestEventHandOffKeepsBufferedMessages(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/login", func(conn *ginws.Conn, c *gin.Context) error {
			_, p, err := conn.ReadMessage(c)
			if err != nil {
				return err
			}
			user := string(p)
			conn.OnMessage(func(conn *ginws.Conn, t ginws.MessageType, p []byte) error {
				return conn.WriteMessage(context.Background(), t, append([]byte(user+": "), p...))
			})
			return nil
		})
	})
	c := dial(t, ts.wsURL("/login"), nil)
	var burst []byte
	burst = append(burst, maskedFrame(true, ws.OpText, []byte("ann"))...)
	for i := range 20 {
		burst = append(burst, maskedFrame(true, ws.OpText, fmt.Appendf(nil, "m%d", i))...)
	}
	_, err := c.nc.Write(burst)
	require.NoError(t, err)
	for i := range 20 {
		_, p := c.readMessage()
		assert.Equal(t, fmt.Sprintf("ann: m%d", i), string(p))
	}
}

// The point of OnMessage: idle connections hold no goroutine, neither
// ginws's nor net/http's.
func TestEventIdleConnectionsHoldNoGoroutine(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/events", eventEcho) })
	const n = 200
	base := runtime.NumGoroutine()
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, ts.wsURL("/events"), nil)
		clients[i].send(ws.OpText, []byte("hi"))
		_, p := clients[i].readMessage()
		require.Equal(t, "hi", string(p))
	}
	// The server side's goroutines end once each connection is idle; the
	// poller's is the only one left (the clients hold none).
	// (Polled here: testify's Eventually runs its condition in a goroutine.)
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > base+1; {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d at start, %d with %d idle connections:\n%s", base, runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
	assert.Equal(t, n, ts.ws.Len())
	// Still served: every one answers again.
	for _, c := range clients {
		c.send(ws.OpBinary, []byte("again"))
	}
	for _, c := range clients {
		_, p := c.readMessage()
		assert.Equal(t, "again", string(p))
	}
}

// After its messages, an idle connection holds no message buffer: the
// event-driven one gives it back once OnMessage has returned, the looping
// one when its handler reads again. Each connection echoes a 256 KiB
// message; the server's heap must then come back to under 4 KiB per
// connection of what it was (a message buffer held per connection would
// add 256 KiB, a read buffer 4 KiB).
func TestIdleConnectionsHoldNoMessageBuffer(t *testing.T) {
	for _, mode := range []struct {
		name string
		h    ginws.Handler
	}{{"loop", echoHandler}, {"events", eventEcho}} {
		t.Run(mode.name, func(t *testing.T) {
			ts := newServer(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/echo", mode.h) })
			const n, size = 16, 256 << 10
			clients := make([]*client, n)
			for i := range clients {
				clients[i] = dial(t, ts.wsURL("/echo"), nil)
			}
			before := heapInUse()
			for _, c := range clients {
				errc := c.sendAsync(ws.OpBinary, payload(size, false))
				_, got := c.readMessage()
				require.NoError(t, <-errc)
				require.Len(t, got, size)
			}
			per := heapGrowthPerConn(before, n, 4<<10)
			t.Logf("heap per idle connection after a %d-byte message: %.0f B", size, per)
			assert.Less(t, per, float64(4<<10), "heap per idle connection after a %d-byte message", size)
			assert.Equal(t, n, ts.ws.Len())
		})
	}
}

// Many connections, concurrent bursts, pings among the messages: every
// connection gets its own messages back, whole and in order.
func TestEventConcurrentBursts(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/events", eventEcho) })
	const conns, msgs = 50, 40
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			c := dial(t, ts.wsURL("/events"), nil)
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			want := make([][]byte, msgs)
			var wire []byte
			for j := range want {
				want[j] = fmt.Appendf(nil, "%d/%d/%s", i, j, bytes.Repeat([]byte{'x'}, rng.IntN(3000)))
				wire = append(wire, maskedFrame(true, ws.OpBinary, want[j])...)
				if j%7 == 0 {
					wire = append(wire, maskedFrame(true, ws.OpPing, []byte("p"))...)
				}
			}
			errc := make(chan error, 1)
			go func() {
				// Cut the burst at random places, as TCP may.
				for len(wire) > 0 {
					n := min(len(wire), 1+rng.IntN(5000))
					if _, err := c.nc.Write(wire[:n]); err != nil {
						errc <- err
						return
					}
					wire = wire[n:]
				}
				errc <- nil
			}()
			for j := range want {
				_, p := c.readMessage()
				if !assert.True(t, bytes.Equal(want[j], p), "conn %d message %d", i, j) {
					break
				}
			}
			assert.NoError(t, <-errc)
			c.sendClose(ws.StatusNormalClosure, "")
			c.expectClose()
		})
	}
	wg.Wait()
	require.Eventually(t, func() bool { return ts.ws.Len() == 0 }, 10*time.Second, time.Millisecond)
}

var errBoom = errors.New("boom")

// An error or a panic in OnMessage reaches the ErrorHandler (without a
// gin.Context) and closes that connection with 1011; the others go on.
func TestEventCallbackFailure(t *testing.T) {
	type report struct {
		err   error
		nilGC bool
	}
	reports := make(chan report, 4)
	var cl closes
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/events", func(conn *ginws.Conn, c *gin.Context) error {
			conn.OnClose(cl.record)
			conn.OnMessage(func(conn *ginws.Conn, t ginws.MessageType, p []byte) error {
				switch string(p) {
				case "fail":
					return errBoom
				case "panic":
					panic("kaboom")
				}
				return conn.WriteMessage(context.Background(), t, p)
			})
			return nil
		})
	}, ginws.ErrorHandler(func(err error, conn *ginws.Conn, c *gin.Context) {
		reports <- report{err, c == nil}
	}))
	bystander := dial(t, ts.wsURL("/events"), nil)
	for _, trigger := range []string{"fail", "panic"} {
		c := dial(t, ts.wsURL("/events"), nil)
		c.send(ws.OpText, []byte(trigger))
		code, _ := c.expectClose()
		assert.Equal(t, ws.StatusInternalServerError, code, trigger)
		r := <-reports
		assert.True(t, r.nilGC)
		if trigger == "fail" {
			assert.ErrorIs(t, r.err, errBoom)
		} else {
			var pe *ginws.PanicError
			require.ErrorAs(t, r.err, &pe)
			assert.Equal(t, "kaboom", pe.Value)
		}
	}
	errs := cl.wait(t, 2)
	for _, err := range errs {
		var ce *ginws.CloseError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, ginws.StatusInternalError, ce.Code)
	}
	bystander.send(ws.OpText, []byte("still here"))
	_, p := bystander.readMessage()
	assert.Equal(t, "still here", string(p))
}

func TestEventProtocolViolation(t *testing.T) {
	var cl closes
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/events", cl.wrap(eventEcho))
	})
	c := dial(t, ts.wsURL("/events"), nil)
	time.Sleep(20 * time.Millisecond) // idle, in the poller
	// An unmasked frame from a client.
	_, err := c.nc.Write([]byte{0x81, 0x02, 'h', 'i'})
	require.NoError(t, err)
	code, _ := c.expectClose()
	assert.Equal(t, ws.StatusProtocolError, code)
	errs := cl.wait(t, 1)
	assert.ErrorIs(t, errs[0], ginws.ErrProtocol)
}

// A silent peer of an idle event-driven connection is dropped by the
// keepalive, though nobody reads it.
func TestEventIdleTimeout(t *testing.T) {
	var cl closes
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/events", cl.wrap(eventEcho))
	}, ginws.PingInterval(50*time.Millisecond), ginws.IdleTimeout(300*time.Millisecond))
	c := dial(t, ts.wsURL("/events"), nil)
	_ = c // never reads, so never answers a ping
	errs := cl.wait(t, 1)
	assert.ErrorIs(t, errs[0], ginws.ErrIdleTimeout)
	assert.Zero(t, ts.ws.Len())
}

// Shutdown closes idle event-driven connections like any other: each
// client gets 1001 and OnClose runs.
func TestEventShutdown(t *testing.T) {
	var cl closes
	s := ginws.New()
	r := gin.New()
	s.Handle(r, "/events", cl.wrap(eventEcho))
	ts := newServer(t, func(*gin.Engine, *ginws.Server) {})
	ts.Config.Handler = r
	const n = 50
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, ts.wsURL("/events"), nil)
	}
	require.Eventually(t, func() bool { return s.Len() == n }, 5*time.Second, time.Millisecond)
	codes := make(chan ws.StatusCode, n)
	for _, c := range clients {
		go func() {
			f := c.readFrame()
			code, _ := ws.ParseCloseFrameData(f.Payload)
			c.send(ws.OpClose, ws.NewCloseFrameBody(code, ""))
			codes <- code
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	for range n {
		assert.Equal(t, ws.StatusGoingAway, <-codes)
	}
	assert.Zero(t, s.Len())
	assert.Len(t, cl.wait(t, n), n)
}

// Broadcast reaches idle event-driven connections.
func TestEventBroadcast(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/events", eventEcho) })
	clients := make([]*client, 10)
	for i := range clients {
		clients[i] = dial(t, ts.wsURL("/events"), nil)
	}
	require.Eventually(t, func() bool { return ts.ws.Len() == len(clients) }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	ts.ws.Broadcast(ginws.ToRoute("/events"), ginws.MessageText, []byte("news"))
	for _, c := range clients {
		_, p := c.readMessage()
		assert.Equal(t, "news", string(p))
	}
}

// OnClose works for a handler that keeps its connection, too.
func TestOnCloseAfterHandler(t *testing.T) {
	var cl closes
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/echo", cl.wrap(echoHandler))
	})
	c := dial(t, ts.wsURL("/echo"), nil)
	c.sendClose(4000, "custom")
	c.expectClose()
	errs := cl.wait(t, 1)
	var ce *ginws.CloseError
	require.ErrorAs(t, errs[0], &ce)
	assert.Equal(t, ginws.StatusCode(4000), ce.Code)
}

// The poller stops with its last connection and starts again with the
// next one; its goroutine and its workers end with it.
func TestEventPollerRestarts(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/events", eventEcho) })
	base := runtime.NumGoroutine()
	for round := range 3 {
		c := dial(t, ts.wsURL("/events"), nil)
		for i := range 5 {
			// Apart in time, so that each reaches the poller and a worker.
			time.Sleep(time.Millisecond)
			msg := fmt.Appendf(nil, "round %d message %d", round, i)
			c.send(ws.OpText, msg)
			_, p := c.readMessage()
			require.Equal(t, msg, p)
		}
		c.sendClose(ws.StatusNormalClosure, "")
		code, _ := c.expectClose()
		require.Equal(t, ws.StatusNormalClosure, code)
		require.Eventually(t, func() bool { return ts.ws.Len() == 0 }, 10*time.Second, time.Millisecond)
		// Polled here: testify's Eventually runs its condition in a goroutine.
		for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > base; {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("round %d: goroutines: %d at start, %d after the last connection:\n%s", round, base, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
