package ginwstest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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
	"github.com/ginws/ginws/ginwstest"
	"github.com/ginws/ginws/internal/frame"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	goleak.VerifyTestMain(m)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func echo(conn *ginws.Conn, c *gin.Context) error {
	for {
		t, p, err := conn.ReadMessage(c)
		if err != nil {
			return err
		}
		if err := conn.WriteMessage(c, t, p); err != nil {
			return err
		}
	}
}

// newEngine returns an engine with a fresh ginws.Server, shut down when
// the test ends.
func newEngine(t *testing.T, setup func(r *gin.Engine, s *ginws.Server), opts ...ginws.Option) (*gin.Engine, *ginws.Server) {
	t.Helper()
	s := ginws.New(opts...)
	r := gin.New()
	setup(r, s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, s.Shutdown(ctx))
	})
	return r, s
}

func dial(t *testing.T, h http.Handler, target string, opts ...ginwstest.DialOption) *ginwstest.Conn {
	t.Helper()
	c, resp, err := ginwstest.Dial(testCtx(t), h, target, opts...)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	return c
}

func TestEcho(t *testing.T) {
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/echo", echo) })
	ctx := testCtx(t)
	c := dial(t, r, "/echo")

	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, four times the pipe's buffer
	for _, m := range []struct {
		typ ginws.MessageType
		p   []byte
	}{
		{ginws.MessageText, []byte("hello")},
		{ginws.MessageBinary, []byte{0, 1, 2, 255}},
		{ginws.MessageText, nil},
		{ginws.MessageBinary, big},
	} {
		require.NoError(t, c.WriteMessage(ctx, m.typ, m.p))
		typ, p, err := c.ReadMessage(ctx)
		require.NoError(t, err)
		assert.Equal(t, m.typ, typ)
		assert.True(t, bytes.Equal(m.p, p), "echoed %d bytes, want %d", len(p), len(m.p))
	}
	require.NoError(t, c.Close())
	<-c.Done()
	_, _, err := c.ReadMessage(ctx)
	assert.Equal(t, ginws.StatusNormalClosure, ginws.CloseStatus(err), "reads after Close report the server's answer: %v", err)
	assert.ErrorIs(t, c.WriteMessage(ctx, ginws.MessageText, []byte("late")), ginws.ErrClosed)
}

// An event-driven handler (Conn.OnMessage) works over the in-memory
// connection too, where a goroutine reads for it.
func TestOnMessage(t *testing.T) {
	closed := make(chan error, 1)
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/events", func(conn *ginws.Conn, c *gin.Context) error {
			conn.OnClose(func(_ *ginws.Conn, err error) { closed <- err })
			conn.OnMessage(func(conn *ginws.Conn, t ginws.MessageType, p []byte) error {
				return conn.WriteMessage(context.Background(), t, append([]byte("re: "), p...))
			})
			return nil
		})
	})
	ctx := testCtx(t)
	c := dial(t, r, "/events")
	for i := range 10 {
		msg := fmt.Sprintf("message %d", i)
		require.NoError(t, c.WriteMessage(ctx, ginws.MessageText, []byte(msg)))
		_, p, err := c.ReadMessage(ctx)
		require.NoError(t, err)
		assert.Equal(t, "re: "+msg, string(p))
	}
	require.NoError(t, c.Close())
	select {
	case err := <-closed:
		assert.Equal(t, ginws.StatusNormalClosure, ginws.CloseStatus(err))
	case <-ctx.Done():
		t.Fatal("OnClose was not called")
	}
}

// A streaming echo answers while the message is still arriving: writing a
// message larger than the buffers needs the reply read at the same time,
// as on a TCP connection.
func TestStreamingEchoLargerThanBuffers(t *testing.T) {
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/stream", func(conn *ginws.Conn, _ *gin.Context) error {
			_, err := io.Copy(conn, conn)
			return err
		})
	})
	ctx := testCtx(t)
	c := dial(t, r, "/stream", ginwstest.BufferSize(16<<10))
	msg := bytes.Repeat([]byte{7}, 1<<20)
	errc := make(chan error, 1)
	go func() { errc <- c.WriteMessage(ctx, ginws.MessageBinary, msg) }()
	var got []byte
	for len(got) < len(msg) {
		typ, p, err := c.ReadMessage(ctx)
		require.NoError(t, err)
		require.Equal(t, ginws.MessageBinary, typ)
		got = append(got, p...)
	}
	require.NoError(t, <-errc)
	assert.True(t, bytes.Equal(msg, got))
}

func TestMiddlewareRejects(t *testing.T) {
	auth := func(c *gin.Context) {
		if c.GetHeader("Authorization") != "Bearer good" {
			c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "no token"})
			return
		}
		c.Set("user", "ann")
		c.Header("X-Request-Id", "r1")
		c.Next()
	}
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r.Group("/api", auth), "/ws", func(conn *ginws.Conn, c *gin.Context) error {
			return conn.WriteMessage(c, ginws.MessageText, []byte(c.GetString("user")))
		})
	})
	ctx := testCtx(t)

	c, resp, err := ginwstest.Dial(ctx, r, "/api/ws")
	require.ErrorIs(t, err, ginwstest.ErrBadHandshake)
	assert.Nil(t, c)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Equal(t, "401 Unauthorized", resp.Status)
	assert.Contains(t, resp.Header.Get("Content-Type"), "application/json")
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.JSONEq(t, `{"error":"no token"}`, string(body))

	c, resp, err = ginwstest.Dial(ctx, r, "/api/ws", ginwstest.Header(http.Header{"Authorization": {"Bearer good"}}))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	assert.Equal(t, "r1", resp.Header.Get("X-Request-Id"), "a header set by middleware is in the 101 response")
	_, p, err := c.ReadMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, "ann", string(p))
	_, _, err = c.ReadMessage(ctx)
	assert.Equal(t, ginws.StatusNormalClosure, ginws.CloseStatus(err), "the handler returned: %v", err)
}

func TestHandshakeRefusals(t *testing.T) {
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		r.GET("/http", func(c *gin.Context) { c.String(http.StatusOK, "plain") })
		s.Handle(r, "/verify", echo, ginws.VerifyClient(func(c *gin.Context) bool {
			return c.Query("ticket") == "ok"
		}))
		s.Handle(r, "/origin", echo, ginws.OriginPatterns("*.trusted.example"))
		s.Handle(r, "/proto", echo, ginws.Subprotocols("chat.v2", "chat.v1"))
	})
	ctx := testCtx(t)
	for _, tc := range []struct {
		name   string
		target string
		opts   []ginwstest.DialOption
		status int
	}{
		{"no route", "/nowhere", nil, http.StatusNotFound},
		{"plain route", "/http", nil, http.StatusOK},
		{"verify", "/verify?ticket=bad", nil, http.StatusForbidden},
		{"cross origin", "/origin", []ginwstest.DialOption{ginwstest.Header(http.Header{"Origin": {"https://evil.example"}})}, http.StatusForbidden},
		{"bad version", "/verify?ticket=ok", []ginwstest.DialOption{ginwstest.Header(http.Header{"Sec-Websocket-Version": {"8"}})}, http.StatusUpgradeRequired},
		{"malformed subprotocols", "/proto", []ginwstest.DialOption{ginwstest.Header(http.Header{"Sec-Websocket-Protocol": {"chat, @"}})}, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, resp, err := ginwstest.Dial(ctx, r, tc.target, tc.opts...)
			require.ErrorIs(t, err, ginwstest.ErrBadHandshake)
			assert.Nil(t, c)
			assert.Equal(t, tc.status, resp.StatusCode)
		})
	}

	t.Run("accepted", func(t *testing.T) {
		dial(t, r, "/verify?ticket=ok")
		dial(t, r, "/origin", ginwstest.Header(http.Header{"Origin": {"https://app.trusted.example"}}))
		dial(t, r, "/origin", ginwstest.Header(http.Header{"Origin": {"http://" + ginwstest.DefaultHost}}))
		dial(t, r, "ws://ws.example.org/origin", ginwstest.Header(http.Header{"Origin": {"https://ws.example.org"}}))
		c := dial(t, r, "/proto", ginwstest.Subprotocols("chat.v1", "chat.v2"))
		assert.Equal(t, "chat.v2", c.Subprotocol(), "the server's preference wins")
		c = dial(t, r, "/proto", ginwstest.Subprotocols("other"))
		assert.Equal(t, "", c.Subprotocol())
	})
}

// TestOffersMadeThroughHeader: Header puts any header on the upgrade
// request, Sec-WebSocket-Protocol and Sec-WebSocket-Extensions too. The
// server sees those offers and accepts one; the client must check the 101
// against what it sent, not against the Subprotocols and Compression
// options alone, or Dial refuses a valid answer as one "the client did
// not offer".
func TestOffersMadeThroughHeader(t *testing.T) {
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/proto", echo, ginws.Subprotocols("chat.v2"))
		s.Handle(r, "/deflate", echo, ginws.Compression(ginws.DeflateOptions{Threshold: 1}))
	})
	ctx := testCtx(t)
	c := dial(t, r, "/proto", ginwstest.Header(http.Header{"Sec-WebSocket-Protocol": {"chat.v1, chat.v2"}}))
	assert.Equal(t, "chat.v2", c.Subprotocol())

	c = dial(t, r, "/deflate", ginwstest.Header(http.Header{"Sec-WebSocket-Extensions": {"permessage-deflate; client_max_window_bits"}}))
	assert.True(t, c.Compression())
	msg := strings.Repeat("compress me ", 100)
	require.NoError(t, c.WriteMessage(ctx, ginws.MessageText, []byte(msg)))
	_, p, err := c.ReadMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, msg, string(p))
}

func TestGinContext(t *testing.T) {
	type seen struct {
		User, ClientIP, Room, Host, Path, Route string
		TLS                                     bool
		ConnRemote                              string
	}
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		r.Use(func(c *gin.Context) { c.Set("user", "ann"); c.Next() })
		s.Handle(r, "/rooms/:room", func(conn *ginws.Conn, c *gin.Context) error {
			b, _ := json.Marshal(seen{
				User:       c.GetString("user"),
				ClientIP:   c.ClientIP(),
				Room:       c.Param("room") + "?" + c.Query("as"),
				Host:       c.Request.Host,
				Path:       c.Request.URL.Path,
				Route:      conn.Route(),
				TLS:        c.Request.TLS != nil,
				ConnRemote: conn.RemoteAddr().String(),
			})
			return conn.WriteMessage(c, ginws.MessageText, b)
		})
	})
	ctx := testCtx(t)
	read := func(c *ginwstest.Conn) seen {
		_, p, err := c.ReadMessage(ctx)
		require.NoError(t, err)
		var s seen
		require.NoError(t, json.Unmarshal(p, &s))
		return s
	}

	got := read(dial(t, r, "/rooms/42?as=guest"))
	assert.Equal(t, seen{User: "ann", ClientIP: "192.0.2.1", Room: "42?guest", Host: "example.com",
		Path: "/rooms/42", Route: "/rooms/:room", ConnRemote: ginwstest.DefaultRemoteAddr}, got)

	got = read(dial(t, r, "wss://chat.example.net/rooms/7", ginwstest.RemoteAddr("203.0.113.9:5555")))
	assert.Equal(t, seen{User: "ann", ClientIP: "203.0.113.9", Room: "7?", Host: "chat.example.net",
		Path: "/rooms/7", Route: "/rooms/:room", TLS: true, ConnRemote: "203.0.113.9:5555"}, got)
}

func TestCloseFromClient(t *testing.T) {
	ended := make(chan error, 1)
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/ws", func(conn *ginws.Conn, c *gin.Context) error {
			_, _, err := conn.ReadMessage(c)
			ended <- err
			return err
		})
	})
	c := dial(t, r, "/ws")
	require.NoError(t, c.CloseWith(4001, "bye"))
	// CloseWith returned: the handler has returned too.
	err := <-ended
	var ce *ginws.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, ginws.StatusCode(4001), ce.Code)
	assert.Equal(t, "bye", ce.Reason)

	_, _, err = c.ReadMessage(testCtx(t))
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, ginws.StatusCode(4001), ce.Code, "ginws echoes the code")
	assert.NoError(t, c.Close(), "a second close only waits")
	assert.Error(t, c.CloseWith(1005, ""), "1005 is never sent")
}

func TestCloseFromServer(t *testing.T) {
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/ws", func(conn *ginws.Conn, c *gin.Context) error {
			if err := conn.WriteMessage(c, ginws.MessageText, []byte("last")); err != nil {
				return err
			}
			return conn.CloseWith(4002, "done")
		})
		s.Handle(r, "/return", func(*ginws.Conn, *gin.Context) error { return nil })
	})
	ctx := testCtx(t)
	c := dial(t, r, "/ws")
	_, p, err := c.ReadMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, "last", string(p))
	_, _, err = c.ReadMessage(ctx)
	var ce *ginws.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, &ginws.CloseError{Code: 4002, Reason: "done"}, ce)
	<-c.Done()
	_, _, err2 := c.ReadMessage(ctx)
	assert.Equal(t, err, err2, "the close is sticky")
	assert.ErrorAs(t, c.WriteMessage(ctx, ginws.MessageText, nil), &ce)
	assert.NoError(t, c.Close())

	c = dial(t, r, "/return")
	_, _, err = c.ReadMessage(ctx)
	assert.Equal(t, ginws.StatusNormalClosure, ginws.CloseStatus(err))
}

func TestHandlerPanicCloses1011(t *testing.T) {
	reported := make(chan error, 1)
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/panic", func(conn *ginws.Conn, c *gin.Context) error {
			if _, _, err := conn.ReadMessage(c); err != nil {
				return err
			}
			panic("boom")
		}, ginws.ErrorHandler(func(err error, _ *ginws.Conn, _ *gin.Context) { reported <- err }))
	})
	ctx := testCtx(t)
	c := dial(t, r, "/panic")
	require.NoError(t, c.WriteMessage(ctx, ginws.MessageText, []byte("go")))
	_, _, err := c.ReadMessage(ctx)
	var ce *ginws.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, ginws.StatusInternalError, ce.Code)
	var pe *ginws.PanicError
	require.ErrorAs(t, <-reported, &pe)
	assert.Equal(t, "boom", pe.Value)
}

// A panic that escapes the http.Handler (no Recovery) is reported, not
// turned into a crash of the test binary.
func TestPanicOutsideGinws(t *testing.T) {
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("before the upgrade") })
	c, resp, err := ginwstest.Dial(testCtx(t), h, "/")
	assert.Nil(t, c)
	assert.Nil(t, resp)
	var pe *ginwstest.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "before the upgrade", pe.Value)
}

// TestPanicErrorsMatch: a handler that aborts with http.ErrAbortHandler,
// or panics with an error, fails Dial with an error that errors.Is finds
// that value in, as the package's errors are meant to be tested.
func TestPanicErrorsMatch(t *testing.T) {
	errBroken := errors.New("broken")
	for _, v := range []error{http.ErrAbortHandler, errBroken} {
		h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(v) })
		c, resp, err := ginwstest.Dial(testCtx(t), h, "/")
		assert.Nil(t, c)
		assert.Nil(t, resp)
		assert.ErrorIs(t, err, v)
	}
}

func TestPings(t *testing.T) {
	// The client sends no data for longer than the idle timeout: only its
	// answers to the server's pings keep the connection open. (The idle
	// timeout is generous: a loaded machine can stall a process for
	// hundreds of milliseconds.)
	const idle = time.Second
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/ws", echo, ginws.PingInterval(20*time.Millisecond), ginws.IdleTimeout(idle))
	})
	ctx := testCtx(t)
	var pings atomic.Int32
	start := time.Now()
	enough := make(chan struct{})
	var once sync.Once
	pongs := make(chan string, 1)
	c := dial(t, r, "/ws",
		ginwstest.OnPing(func([]byte) {
			if pings.Add(1) >= 5 && time.Since(start) > idle*3/2 {
				once.Do(func() { close(enough) })
			}
		}),
		ginwstest.OnPong(func(p []byte) {
			select {
			case pongs <- string(p):
			default:
			}
		}))

	done := make(chan error, 1)
	go func() {
		_, p, err := c.ReadMessage(ctx) // answers the server's pings while it waits
		if err == nil && string(p) != "after pings" {
			err = fmt.Errorf("read %q", p)
		}
		done <- err
	}()
	select {
	case <-enough:
	case err := <-done:
		t.Fatalf("after %d pings: %v", pings.Load(), err)
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	require.NoError(t, c.Ping(ctx, []byte("are you there")))
	require.NoError(t, c.WriteMessage(ctx, ginws.MessageText, []byte("after pings")))
	require.NoError(t, <-done)
	// The pong may come after the echo: when the server's keepalive ping
	// holds the write lock as the pong is due, the pong waits for the lock
	// and the echo can take it first. Read on until the pong has come.
	for got := false; !got; {
		select {
		case p := <-pongs:
			assert.Equal(t, "are you there", p)
			got = true
		default:
			require.NoError(t, c.WriteMessage(ctx, ginws.MessageText, []byte("more")))
			_, _, err := c.ReadMessage(ctx)
			require.NoError(t, err)
		}
	}
	assert.Error(t, c.Ping(ctx, make([]byte, 126)))
}

func TestReadTimeoutLeavesConnUsable(t *testing.T) {
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/echo", echo) })
	ctx := testCtx(t)
	c := dial(t, r, "/echo")
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	_, _, err := c.ReadMessage(short)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = c.ReadMessage(canceled)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, c.WriteMessage(canceled, ginws.MessageText, nil), context.Canceled)

	require.NoError(t, c.WriteMessage(ctx, ginws.MessageText, []byte("still here")))
	_, p, err := c.ReadMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, "still here", string(p))
}

func TestConcurrentWriters(t *testing.T) {
	const writers, each = 8, 200
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/count", func(conn *ginws.Conn, c *gin.Context) error {
			// Answer every message while also pushing messages of its own.
			var wg sync.WaitGroup
			defer wg.Wait()
			wg.Go(func() {
				for i := range each {
					if conn.WriteMessage(c, ginws.MessageText, fmt.Appendf(nil, "server %d", i)) != nil {
						return
					}
				}
			})
			for {
				_, p, err := conn.ReadMessage(c)
				if err != nil {
					return err
				}
				if err := conn.WriteMessage(c, ginws.MessageText, p); err != nil {
					return err
				}
			}
		})
	})
	ctx := testCtx(t)
	c := dial(t, r, "/count", ginwstest.BufferSize(4<<10))
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				assert.NoError(t, c.WriteMessage(ctx, ginws.MessageText, fmt.Appendf(nil, "client %d %d", w, i)))
			}
		})
	}
	got := map[string]int{}
	for range writers*each + each {
		_, p, err := c.ReadMessage(ctx)
		require.NoError(t, err)
		got[strings.Fields(string(p))[0]]++
	}
	wg.Wait()
	assert.Equal(t, map[string]int{"client": writers * each, "server": each}, got)
}

func TestShutdownClosesWith1001(t *testing.T) {
	r, s := newEngine(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/echo", echo) })
	ctx := testCtx(t)
	c := dial(t, r, "/echo")
	read := make(chan error, 1)
	go func() {
		_, _, err := c.ReadMessage(ctx)
		read <- err
	}()
	require.NoError(t, s.Shutdown(ctx))
	assert.Equal(t, ginws.StatusGoingAway, ginws.CloseStatus(<-read))

	_, resp, err := ginwstest.Dial(ctx, r, "/echo")
	require.ErrorIs(t, err, ginwstest.ErrBadHandshake)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}

func TestHandlerThatDoesNotReturn(t *testing.T) {
	release := make(chan struct{})
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/stuck", func(*ginws.Conn, *gin.Context) error {
			<-release // ignores its connection
			return nil
		})
	})
	c, _, err := ginwstest.Dial(testCtx(t), r, "/stuck", ginwstest.CloseTimeout(50*time.Millisecond))
	require.NoError(t, err)
	assert.ErrorIs(t, c.Close(), ginwstest.ErrHandlerRunning)
	close(release)
	// Close again: it only waits for the handler, 50 ms at a time.
	assert.Eventually(t, func() bool { return c.Close() == nil }, 10*time.Second, time.Millisecond)
}

func TestDialContextEnds(t *testing.T) {
	entered := make(chan struct{})
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		slow := func(c *gin.Context) {
			close(entered)
			<-c.Request.Context().Done() // canceled when the dial gives up
			c.AbortWithStatus(http.StatusGatewayTimeout)
		}
		s.Handle(r.Group("/", slow), "/slow", echo)
	})
	ctx, cancel := context.WithCancel(testCtx(t))
	go func() { <-entered; cancel() }()
	c, resp, err := ginwstest.Dial(ctx, r, "/slow")
	assert.ErrorIs(t, err, context.Canceled)
	assert.Nil(t, c)
	assert.Nil(t, resp)
}

// rawServer is a handler that hijacks and speaks whatever bytes a test
// gives it: a misbehaving server, for the client's checks.
func rawServer(t *testing.T, respond func(key string) string, frames []byte, then func(rw *bufio.ReadWriter)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, rw, err := http.NewResponseController(w).Hijack()
		if !assert.NoError(t, err) {
			return
		}
		defer nc.Close()
		_, _ = rw.WriteString(respond(r.Header.Get("Sec-WebSocket-Key")))
		_, _ = rw.Write(frames)
		_ = rw.Flush()
		if then != nil {
			then(rw)
		}
	})
}

func accept(key string) string {
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		string(frame.AppendAccept(nil, key)) + "\r\n\r\n"
}

func serverFrame(op ws.OpCode, p []byte) []byte { return frame.AppendFrame(nil, true, 0, op, p, nil) }

func TestServerViolations(t *testing.T) {
	ctx := testCtx(t)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  error
	}{
		{"invalid UTF-8", serverFrame(ws.OpText, []byte{0xff}), ginws.ErrInvalidUTF8},
		{"masked", frame.AppendFrame(nil, true, 0, ws.OpText, []byte("x"), &[4]byte{1, 2, 3, 4}), ginws.ErrProtocol},
		{"reserved opcode", serverFrame(3, nil), ginws.ErrProtocol},
		{"bad close code", serverFrame(ws.OpClose, []byte{0x03, 0xe8 - 1}), ginws.ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer := make(chan []byte, 1)
			h := rawServer(t, accept, tc.frame, func(rw *bufio.ReadWriter) {
				hdr, err := ws.ReadHeader(rw)
				if assert.NoError(t, err) && assert.True(t, hdr.Masked) {
					p := make([]byte, hdr.Length)
					_, _ = io.ReadFull(rw, p)
					ws.Cipher(p, hdr.Mask, 0)
					answer <- p
				}
			})
			c, _, err := ginwstest.Dial(ctx, h, "/")
			require.NoError(t, err)
			_, _, err = c.ReadMessage(ctx)
			require.ErrorIs(t, err, tc.want)
			require.NoError(t, c.Close())
			code, _ := ws.ParseCloseFrameData(<-answer)
			assert.Equal(t, ginws.CloseStatus(err), ginws.StatusCode(code), "the client closes with the code of the rule")
		})
	}
}

func TestServerDropsConnection(t *testing.T) {
	h := rawServer(t, accept, serverFrame(ws.OpBinary, []byte("one")), nil) // then closes, no close frame
	ctx := testCtx(t)
	c, _, err := ginwstest.Dial(ctx, h, "/")
	require.NoError(t, err)
	_, p, err := c.ReadMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, "one", string(p))
	_, _, err = c.ReadMessage(ctx)
	assert.Equal(t, ginws.StatusAbnormalClosure, ginws.CloseStatus(err))
	assert.ErrorIs(t, err, io.EOF)
	assert.NoError(t, c.Close())
}

func TestBadHandshakeResponses(t *testing.T) {
	ctx := testCtx(t)
	for _, tc := range []struct {
		name    string
		respond func(key string) string
		status  int
	}{
		{"wrong accept", func(string) string { return accept("dGhlIHNhbXBsZSBub25jZQ==") }, 101},
		{"unoffered subprotocol", func(key string) string {
			return strings.Replace(accept(key), "\r\n\r\n", "\r\nSec-WebSocket-Protocol: x\r\n\r\n", 1)
		}, 101},
		{"unoffered extension", func(key string) string {
			return strings.Replace(accept(key), "\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", 1)
		}, 101},
		{"hijacked, then refused", func(string) string {
			return "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 4\r\n\r\nslow"
		}, 429},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, resp, err := ginwstest.Dial(ctx, rawServer(t, tc.respond, nil, nil), "/")
			require.ErrorIs(t, err, ginwstest.ErrBadHandshake)
			assert.Nil(t, c)
			assert.Equal(t, tc.status, resp.StatusCode)
			if tc.status == 429 {
				b, _ := io.ReadAll(resp.Body)
				assert.Equal(t, "slow", string(b))
			}
		})
	}
}

func TestReadLimit(t *testing.T) {
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/echo", echo) })
	ctx := testCtx(t)
	c := dial(t, r, "/echo", ginwstest.ReadLimit(10))
	require.NoError(t, c.WriteMessage(ctx, ginws.MessageText, []byte("eleven byte")))
	_, _, err := c.ReadMessage(ctx)
	assert.ErrorIs(t, err, ginws.ErrMessageTooBig)
}

func TestDialErrors(t *testing.T) {
	ctx := testCtx(t)
	h := http.NotFoundHandler()
	for _, target := range []string{"ftp://example.com/", "ws:///nohost", "://"} {
		_, _, err := ginwstest.Dial(ctx, h, target)
		assert.Error(t, err, target)
	}
	_, _, err := ginwstest.Dial(ctx, h, "/", ginwstest.RemoteAddr("not an address"))
	assert.Error(t, err)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = ginwstest.Dial(canceled, h, "/")
	assert.True(t, errors.Is(err, context.Canceled))
}

func TestCompression(t *testing.T) {
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/plain", echo)
		s.Handle(r, "/deflate", echo, ginws.Compression(ginws.DeflateOptions{Threshold: 1}))
		s.Handle(r, "/takeover", echo, ginws.Compression(ginws.DeflateOptions{Threshold: 1, ServerContextTakeover: true}))
	})
	ctx := testCtx(t)
	msg := func(i int) []byte {
		return []byte(strings.Repeat(fmt.Sprintf(`{"id":%d,"name":"gopher","tags":["a","b"]}`, i), 50))
	}
	for _, tc := range []struct {
		path   string
		params []string
		ext    string
	}{
		{"/plain", nil, ""},
		{"/deflate", nil, "permessage-deflate; server_no_context_takeover"},
		{"/takeover", nil, "permessage-deflate"},
		{"/takeover", []string{"server_no_context_takeover"}, "permessage-deflate; server_no_context_takeover"},
		{"/deflate", []string{"client_max_window_bits", "client_no_context_takeover"}, "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
	} {
		t.Run(tc.path+strings.Join(tc.params, ","), func(t *testing.T) {
			c, resp, err := ginwstest.Dial(ctx, r, tc.path, ginwstest.Compression(tc.params...))
			require.NoError(t, err)
			defer func() { assert.NoError(t, c.Close()) }()
			assert.Equal(t, tc.ext, resp.Header.Get("Sec-WebSocket-Extensions"))
			assert.Equal(t, tc.ext != "", c.Compression())
			// Several similar messages: with context takeover, each one
			// refers back to the ones before.
			for i := range 5 {
				require.NoError(t, c.WriteMessage(ctx, ginws.MessageText, msg(i)))
				typ, p, err := c.ReadMessage(ctx)
				require.NoError(t, err)
				assert.Equal(t, ginws.MessageText, typ)
				assert.Equal(t, string(msg(i)), string(p))
			}
			require.NoError(t, c.WriteMessage(ctx, ginws.MessageBinary, nil))
			_, p, err := c.ReadMessage(ctx)
			require.NoError(t, err)
			assert.Empty(t, p)
		})
	}
}

// The server's compressed frames are really compressed: a raw server
// sends one, and a client that did not offer compression refuses it.
func TestCompressedFrames(t *testing.T) {
	ctx := testCtx(t)
	z := frame.GetCompressor(1)
	payload, _ := z.Compress(nil, []byte("hello hello hello"), -1)
	frame.PutCompressor(z)
	compressed := frame.AppendFrame(nil, true, frame.RSV1, ws.OpText, payload, nil)
	withExt := func(key string) string {
		return strings.Replace(accept(key), "\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n", 1)
	}

	c, _, err := ginwstest.Dial(ctx, rawServer(t, withExt, compressed, drain), "/",
		ginwstest.Compression(), ginwstest.CloseTimeout(50*time.Millisecond)) // it never answers the close
	require.NoError(t, err)
	_, p, err := c.ReadMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, "hello hello hello", string(p))
	assert.NoError(t, c.Close())

	c, _, err = ginwstest.Dial(ctx, rawServer(t, accept, compressed, drain), "/")
	require.NoError(t, err)
	_, _, err = c.ReadMessage(ctx)
	assert.ErrorIs(t, err, ginws.ErrProtocol, "RSV1 without the extension")
	assert.NoError(t, c.Close())
}

// drain reads what the client sends until it closes.
func drain(rw *bufio.ReadWriter) { _, _ = io.Copy(io.Discard, rw) }

// closeAfterOneRead starts a read, closes while it is in flight, and then
// lets the handler send one message, which that read returns; the test
// reads no more. The close timeout is a minute: a Close that waits for it
// fails the test's own deadline first.
func closeAfterOneRead(t *testing.T, secondClose bool) {
	start := make(chan struct{})
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/ws", func(conn *ginws.Conn, c *gin.Context) error {
			<-start
			if err := conn.WriteMessage(c, ginws.MessageText, []byte("data")); err != nil {
				return err
			}
			return echo(conn, c)
		})
	})
	ctx := testCtx(t)
	c, _, err := ginwstest.Dial(ctx, r, "/ws", ginwstest.CloseTimeout(time.Minute))
	require.NoError(t, err)
	read := make(chan error, 1)
	go func() {
		_, p, err := c.ReadMessage(ctx)
		if err == nil && string(p) != "data" {
			err = fmt.Errorf("read %q", p)
		}
		read <- err
	}()
	time.Sleep(50 * time.Millisecond) // the read is in flight
	closed := make(chan error, 2)
	go func() { closed <- c.Close() }()
	time.Sleep(50 * time.Millisecond) // our close frame is out
	close(start)
	require.NoError(t, <-read, "the read in flight returns the data message")
	waits := 1
	if secondClose {
		go func() { closed <- c.Close() }()
		waits++
	}
	for range waits {
		select {
		case err := <-closed:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Fatal("Close waits for the close timeout: nobody reads the server's close frame")
		}
	}
}

// TestCloseWhileReadReturnsData: the close reads the server's answer
// itself once the read in flight has returned.
func TestCloseWhileReadReturnsData(t *testing.T) { closeAfterOneRead(t, false) }

// TestSecondCloseAfterReadReturnsData: so does a second Close meanwhile.
func TestSecondCloseAfterReadReturnsData(t *testing.T) { closeAfterOneRead(t, true) }

// TestRequestURLAsFromNetwork: the handler's request URL is the path and
// query only, as net/http's server gives it, not the dialed absolute URL.
func TestRequestURLAsFromNetwork(t *testing.T) {
	got := make(chan string, 1)
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/ws", func(conn *ginws.Conn, c *gin.Context) error {
			u := c.Request.URL
			got <- fmt.Sprintf("%q %q %q %q", u.Scheme, u.Host, u.Path, u.RawQuery)
			return nil
		})
	})
	ctx := testCtx(t)
	c, _, err := ginwstest.Dial(ctx, r, "/ws?room=1")
	require.NoError(t, err)
	assert.Equal(t, `"" "" "/ws" "room=1"`, <-got)
	_ = c.Close()
}

// The closes cross while the client's Close waits for the write lock
// behind a long write: the server's close frame reaches a read in
// progress on the client. One close frame must still go out from the
// client (its Close's or the answer), so the server sees the handshake
// completed with 1000, not a connection lost without a close frame.
func TestCrossingCloseBehindLongWrite(t *testing.T) {
	closed := make(chan error, 1)
	serverGo := make(chan struct{})
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/x", func(conn *ginws.Conn, c *gin.Context) error {
			conn.OnClose(func(_ *ginws.Conn, err error) { closed <- err })
			if _, _, err := conn.ReadMessage(c); err != nil {
				return err
			}
			<-serverGo
			return nil // closes with 1000, reading (and dropping) what arrives
		})
	})
	ctx := testCtx(t)
	c, _, err := ginwstest.Dial(ctx, r, "/x", ginwstest.BufferSize(16<<10))
	require.NoError(t, err)
	read := make(chan error, 1)
	go func() {
		_, _, err := c.ReadMessage(ctx)
		read <- err
	}()
	require.NoError(t, c.WriteMessage(ctx, ginws.MessageText, []byte("start")))
	wrote := make(chan error, 1)
	go func() { // the server reads nothing until it closes: this write waits
		wrote <- c.WriteMessage(ctx, ginws.MessageBinary, make([]byte, 1<<20))
	}()
	time.Sleep(100 * time.Millisecond)
	closeDone := make(chan error, 1)
	go func() { closeDone <- c.Close() }() // waits for the write lock
	time.Sleep(100 * time.Millisecond)
	close(serverGo)
	assert.Equal(t, ginws.StatusNormalClosure, ginws.CloseStatus(<-read))
	select {
	case err := <-closed:
		assert.Equal(t, ginws.StatusNormalClosure, ginws.CloseStatus(err), "the server's end: %v", err)
	case <-ctx.Done():
		t.Fatal("the server's connection did not end")
	}
	<-wrote
	assert.NoError(t, <-closeDone)
}
