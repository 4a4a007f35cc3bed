package ginws_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// What a handler's contexts and the control pump leave behind them: a
// control frame cut short, a context that ends after its call returned, a
// close answered behind a data message.

// A ping whose header has arrived but not its payload, while the pump
// reads for a handler that has only written so far. The handler's next
// read kicks the pump out of its read (a deadline in the past): that must
// not end the connection, and the ping is answered once it is whole.
func TestPumpKickedInsideControlFrame(t *testing.T) {
	readNow := make(chan struct{})
	handlerErr := make(chan error, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/w", func(conn *ginws.Conn, c *gin.Context) error {
			// A writer first: the pump starts reading control frames.
			if err := conn.WriteMessage(c, ginws.MessageText, []byte("hello")); err != nil {
				return err
			}
			<-readNow
			err := echoHandler(conn, c)
			handlerErr <- err
			return err
		})
	})
	c := dial(t, ts.wsURL("/w"), nil)
	_, p := c.readMessage()
	require.Equal(t, "hello", string(p))
	ping := maskedFrame(true, ws.OpPing, []byte("ping!"))
	const headerLen = 6
	_, err := c.nc.Write(ping[:headerLen]) // the pump reads the header, waits for the payload
	require.NoError(t, err)
	time.Sleep(150 * time.Millisecond)
	close(readNow) // the handler reads: the pump is kicked out
	time.Sleep(150 * time.Millisecond)
	_, err = c.nc.Write(append(ping[headerLen:], maskedFrame(true, ws.OpText, []byte("still here"))...))
	require.NoError(t, err)
	select {
	case err := <-handlerErr:
		t.Fatalf("handler's read failed: %v", err)
	default:
	}
	var gotPong bool
	for {
		f := c.readFrame()
		if f.Header.OpCode == ws.OpPong {
			gotPong = true
			continue
		}
		require.Equal(t, ws.OpText, f.Header.OpCode)
		assert.Equal(t, "still here", string(f.Payload))
		break
	}
	assert.True(t, gotPong)
}

// ReadMessage's promise: when ctx ends before a message has begun, the
// connection stays usable. Here ctx ends while a ping is half received.
func TestReadContextEndsInsideControlFrame(t *testing.T) {
	firstErr := make(chan error, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/patient", func(conn *ginws.Conn, c *gin.Context) error {
			ctx, cancel := context.WithTimeout(c, 100*time.Millisecond)
			_, _, err := conn.ReadMessage(ctx)
			cancel()
			firstErr <- err
			return echoHandler(conn, c)
		})
	})
	c := dial(t, ts.wsURL("/patient"), nil)
	ping := maskedFrame(true, ws.OpPing, []byte("ping!"))
	const headerLen = 6
	_, err := c.nc.Write(ping[:headerLen])
	require.NoError(t, err)
	require.ErrorIs(t, <-firstErr, context.DeadlineExceeded)
	_, err = c.nc.Write(append(ping[headerLen:], maskedFrame(true, ws.OpText, []byte("after the timeout"))...))
	require.NoError(t, err)
	for {
		f := c.readFrame()
		if f.Header.OpCode == ws.OpPong {
			continue
		}
		require.Equal(t, ws.OpText, f.Header.OpCode)
		assert.Equal(t, "after the timeout", string(f.Payload))
		break
	}
}

// A handler writes one message with a context of its own (a 300 ms
// timeout) and then only reads. Long after that call returned, the
// context's timer fires while a broadcast is being written to the
// connection (the peer reads slowly): the broadcast goes on, bounded by
// the close timeout only.
func TestEndedWriteContextSparesBroadcast(t *testing.T) {
	const messages, size = 64, 16 << 10
	s := ginws.New(ginws.CloseTimeout(10 * time.Second))
	r := gin.New()
	s.Handle(r, "/room", func(conn *ginws.Conn, c *gin.Context) error {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := conn.WriteMessage(ctx, ginws.MessageText, []byte("hello")); err != nil {
			return err
		}
		for {
			if _, _, err := conn.ReadMessage(context.Background()); err != nil {
				return err
			}
		}
	})
	url := smallBufferServer(t, r, "/room")
	c := dialSlowReader(t, url, 64<<10)
	_, m := c.readMessage()
	require.Equal(t, "hello", string(m))
	require.Eventually(t, func() bool { return s.Len() == 1 }, 5*time.Second, time.Millisecond)

	// 1 MiB the client does not read for a second: the flusher waits in
	// writev meanwhile, well within the close timeout.
	msg := make([]byte, size)
	for i := range messages {
		binary.BigEndian.PutUint32(msg, uint32(i))
		require.Equal(t, 1, s.Broadcast(ginws.ToAll(), ginws.MessageBinary, msg))
	}
	time.Sleep(time.Second)
	for want := range messages {
		_, m := c.readMessage()
		require.Equal(t, want, int(binary.BigEndian.Uint32(m)))
	}
	require.Equal(t, 1, s.Len(), "the connection is still live")
	_ = c.nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
}

// readWithOwnContext reads one message with a context of its own, which
// ends as soon as the read has returned (the usual defer cancel()).
func readWithOwnContext(conn *ginws.Conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := conn.ReadMessage(ctx)
	return err
}

// A handler reads its first message with a context of its own, cancels
// it once the read has returned (the usual defer cancel()), and from then
// on only writes: ginws reads control frames for it and answers pings.
func TestEndedReadContextSparesPump(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/w", func(conn *ginws.Conn, c *gin.Context) error {
			if err := readWithOwnContext(conn); err != nil {
				return err
			}
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-conn.Done():
					return nil
				case <-tick.C:
					if err := conn.WriteMessage(context.Background(), ginws.MessageText, []byte("tick")); err != nil {
						return nil
					}
				}
			}
		})
	})
	c := dial(t, ts.wsURL("/w"), nil)
	c.send(ws.OpText, []byte("hi"))
	_, m := c.readMessage() // the handler writes: the pump has been started by now
	require.Equal(t, "tick", string(m))
	c.send(ws.OpPing, []byte("p"))
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		f := c.readFrame()
		if f.Header.OpCode == ws.OpPong {
			_ = c.nc.Close()
			return
		}
	}
	t.Fatal("no pong within 10 s while the handler writes")
}

// The same with keepalive: a peer that answers every ping is not dropped
// as idle, because its pongs are read.
func TestEndedReadContextKeepsLivePeer(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/w", func(conn *ginws.Conn, c *gin.Context) error {
			if err := readWithOwnContext(conn); err != nil {
				return err
			}
			<-conn.Done() // only the keepalive writes from now on
			return nil
		})
	}, ginws.PingInterval(200*time.Millisecond), ginws.IdleTimeout(1500*time.Millisecond))
	c := dial(t, ts.wsURL("/w"), nil)
	c.send(ws.OpText, []byte("hi"))
	end := time.Now().Add(3 * time.Second) // twice the idle timeout
	pings := 0
	for time.Now().Before(end) {
		require.NoError(t, c.nc.SetReadDeadline(end))
		h, err := ws.ReadHeader(c.r)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				break
			}
			t.Fatalf("connection dropped after %d pings answered: %v", pings, err)
		}
		p := make([]byte, h.Length)
		_, err = io.ReadFull(c.r, p)
		require.NoError(t, err)
		switch h.OpCode {
		case ws.OpPing:
			pings++
			c.send(ws.OpPong, p)
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			t.Fatalf("a peer that answered %d pings was closed: %d %q", pings, code, reason)
		}
	}
	_ = c.nc.Close()
}

// A handler that only writes closes the connection while the pump reads
// for it; the peer had a data message in flight and answers the close at
// once. The close handshake ends with the peer's answer, not with the
// close timeout (a minute here: the test fails on its own deadline first).
func TestCloseWhilePumpMeetsData(t *testing.T) {
	ended := make(chan error, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/w", func(conn *ginws.Conn, c *gin.Context) error {
			conn.OnClose(func(_ *ginws.Conn, err error) { ended <- err })
			if err := conn.WriteMessage(c, ginws.MessageText, []byte("hello")); err != nil {
				return err
			}
			time.Sleep(150 * time.Millisecond) // the pump waits for frames
			return conn.Close()
		}, ginws.CloseTimeout(time.Minute))
	})
	c := dial(t, ts.wsURL("/w"), nil)
	_, p := c.readMessage()
	require.Equal(t, "hello", string(p))
	f := c.readFrame()
	require.Equal(t, ws.OpClose, f.Header.OpCode)
	// The answer comes once Close has found the pump reading and waits.
	time.Sleep(100 * time.Millisecond)
	wire := append(maskedFrame(true, ws.OpText, []byte("in flight")),
		maskedFrame(true, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))...)
	_, err := c.nc.Write(wire)
	require.NoError(t, err)
	select {
	case err := <-ended:
		var ce *ginws.CloseError
		require.True(t, errors.As(err, &ce), "ended by %v", err)
		assert.Equal(t, ginws.StatusNormalClosure, ce.Code)
	case <-time.After(20 * time.Second):
		t.Fatal("the close handshake did not end with the peer's answer")
	}
}

// TestPeerCloseWhileServerCloseWaits: the server has begun closing
// (CloseWith, as Shutdown or a Range over the connections does) but its close
// frame waits for the write lock behind a message still going out; then the
// peer's close arrives. The peer must still get a close frame. withServerClose
// false is the control: the same race without the server's CloseWith.
func TestPeerCloseWhileServerCloseWaits(t *testing.T) {
	for _, withServerClose := range []bool{false, true} {
		t.Run(map[bool]string{false: "control", true: "serverCloseWaiting"}[withServerClose], func(t *testing.T) {
			big := make([]byte, 1<<20)
			s := ginws.New()
			r := gin.New()
			s.Handle(r, "/w", func(conn *ginws.Conn, _ *gin.Context) error {
				// A writer holds the write lock: the peer does not read yet.
				go func() { _ = conn.WriteMessage(context.Background(), ginws.MessageBinary, big) }()
				for {
					if _, _, err := conn.ReadMessage(context.Background()); err != nil {
						return err
					}
				}
			})
			url := smallBufferServer(t, r, "/w")
			shutdownAtEnd(t, s)
			c := dial(t, url, nil)
			require.Eventually(t, func() bool { return s.Len() == 1 }, 5*time.Second, time.Millisecond)
			time.Sleep(200 * time.Millisecond) // the writer is stuck in its write

			closeDone := make(chan struct{})
			if withServerClose {
				go func() {
					defer close(closeDone)
					s.Range(ginws.ToAll(), func(conn *ginws.Conn) bool {
						_ = conn.CloseWith(ginws.StatusGoingAway, "bye") // waits for the write lock
						return true
					})
				}()
				time.Sleep(100 * time.Millisecond)
			} else {
				close(closeDone)
			}
			c.sendClose(ws.StatusNormalClosure, "") // the peer closes
			time.Sleep(100 * time.Millisecond)      // the handler reads it

			// The peer now reads: the rest of the message, then a close frame.
			require.NoError(t, c.nc.SetReadDeadline(time.Now().Add(10*time.Second)))
			var got int64
			for {
				h, err := ws.ReadHeader(c.r)
				if err != nil {
					t.Fatalf("no close frame from the server: read %d of %d message bytes, then %v", got, len(big), err)
				}
				n, err := io.CopyN(io.Discard, c.r, h.Length)
				got += n
				if err != nil {
					t.Fatalf("no close frame from the server: read %d of %d message bytes, then %v", got, len(big), err)
				}
				if h.OpCode == ws.OpClose {
					t.Logf("close frame after %d message bytes", got-n)
					break
				}
			}
			<-closeDone
		})
	}
}

// TestReadWhilePumpDrainsToClose: this side is closing and the pump reads
// through the peer's last message to its close; the handler reads
// meanwhile. The pump is not kicked out of a message it is inflating: the
// handler's read ends with the peer's close, compressed or not.
func TestReadWhilePumpDrainsToClose(t *testing.T) {
	for _, compressed := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "compressed"}[compressed], func(t *testing.T) {
			readErr := make(chan error, 1)
			var opts []ginws.Option
			if compressed {
				opts = append(opts, ginws.Compression(ginws.DeflateOptions{}))
			}
			ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
				s.Handle(r, "/w", func(conn *ginws.Conn, c *gin.Context) error {
					if err := conn.WriteMessage(c, ginws.MessageText, []byte("hello")); err != nil {
						return err
					}
					go func() {
						time.Sleep(150 * time.Millisecond) // the pump reads by now
						_ = conn.CloseWith(ginws.StatusGoingAway, "bye")
					}()
					time.Sleep(700 * time.Millisecond) // the peer's message is half in
					for {
						if _, _, err := conn.ReadMessage(context.Background()); err != nil {
							readErr <- err
							return err
						}
					}
				})
			}, opts...)
			c := deflDial(t, ts, "/w", map[bool]string{false: "", true: "permessage-deflate"}[compressed])
			_, first, _ := c.readMessage()
			require.Equal(t, "hello", string(first))
			f := c.readFrame()
			require.Equal(t, ws.OpClose, f.op)

			// A message the peer had begun before it saw our close: its
			// header and half of its payload now, the rest later.
			p := deflRandom(64 << 10)
			var wire []byte
			if compressed {
				wire = deflFrame(true, 4, ws.OpBinary, c.compress(p))
			} else {
				wire = maskedFrame(true, ws.OpBinary, p)
			}
			half := len(wire) / 2
			_, _ = c.nc.Write(wire[:half])
			time.Sleep(900 * time.Millisecond) // the handler reads (and kicks the pump) meanwhile
			_, _ = c.nc.Write(wire[half:])     // errors show in what the handler's read returned
			_, _ = c.nc.Write(maskedFrame(true, ws.OpClose, ws.NewCloseFrameBody(ws.StatusGoingAway, "")))

			select {
			case err := <-readErr:
				var ce *ginws.CloseError
				require.True(t, errors.As(err, &ce), "the handler's read ended with %v, not the peer's close", err)
				require.Equal(t, ginws.StatusGoingAway, ce.Code, "ended with %v", err)
			case <-time.After(15 * time.Second):
				t.Fatal("the handler's read did not end")
			}
		})
	}
}
