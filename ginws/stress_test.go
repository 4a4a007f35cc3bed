package ginws_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ginws/ginws/ginws"
	"github.com/ginws/ginws/internal/loopback"
)

// TestStress runs a few hundred connections through the public API at
// once, at random: handlers that echo (ReadMessage, NextReader, io.Copy),
// only write, go event-driven (OnMessage, after reading part of a
// message or not), join, leave and broadcast to rooms, close from other
// goroutines, fail or panic; Broadcast, Range, Count and CloseWith from
// outside the handlers; clients that talk (fragments with pings between
// them), ping, close in the middle of a message, break the protocol,
// vanish, reset, stop reading, or only listen, with or without
// permessage-deflate; and two Shutdowns at once in the middle of it all.
// The seed is printed (GINWS_STRESS_SEED picks one, GINWS_STRESS_ROUNDS
// runs several). It asserts outcomes only: Shutdown returned nil, every
// handler returned, every OnClose ran once, no handler reported an error
// it did not make on purpose, every client that answers the close got a
// close frame or EOF and never left the server waiting for its answer
// (the close timeout is a hang guard of seconds), and no goroutine is
// left.
func TestStress(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	seed := time.Now().UnixNano()
	if v := os.Getenv("GINWS_STRESS_SEED"); v != "" {
		var err error
		seed, err = strconv.ParseInt(v, 10, 64)
		require.NoError(t, err)
	}
	rounds := 1
	if v := os.Getenv("GINWS_STRESS_ROUNDS"); v != "" {
		var err error
		rounds, err = strconv.Atoi(v)
		require.NoError(t, err)
	}
	for i := range rounds {
		s := seed + int64(i)
		if !t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) { stressRound(t, s) }) {
			t.Logf("reproduce with GINWS_STRESS_SEED=%d", s)
			break
		}
	}
	goleak.VerifyNone(t, leaks)
}

const stressConns = 300

var (
	errStressBoom  = errors.New("stress: handler failed on purpose")
	stressRooms    = []string{"a", "b", "c"}
	stressRoutes   = []string{"/echo", "/copy", "/next", "/writer", "/event", "/room", "/closer", "/fail", "/prefix"}
	stressCodes    = []ginws.StatusCode{1000, 1001, 1003, 1008, 1011, 4000}
	stressPanicVal = "stress: handler panicked on purpose"
)

type stressState struct {
	srv *ginws.Server

	started, returned atomic.Int64

	mu         sync.Mutex
	onClose    map[*ginws.Conn]int // OnClose calls, for the connections that set it
	ends       map[string]error    // how each connection ended, by its client's seed
	unexpected []string
}

func (st *stressState) failf(format string, args ...any) {
	st.mu.Lock()
	st.unexpected = append(st.unexpected, fmt.Sprintf(format, args...))
	st.mu.Unlock()
}

func (st *stressState) ended(id string, err error) {
	st.mu.Lock()
	st.ends[id] = err
	st.mu.Unlock()
}

// stressRand returns the random source of one connection's handler: its
// client's seed travels in the query string.
func stressRand(c *gin.Context) *rand.Rand {
	n, _ := strconv.ParseUint(c.Query("r"), 10, 64)
	return rand.New(rand.NewPCG(n, 1))
}

func isDeadline(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func stressPayload(r *rand.Rand) []byte {
	n := r.IntN(300)
	if r.IntN(10) == 0 {
		n = 2000 + r.IntN(8000)
	}
	p := make([]byte, n)
	for i := range p {
		p[i] = 'a' + byte(r.IntN(26))
	}
	return p
}

func (st *stressState) setup(r *gin.Engine, s *ginws.Server, rr *rand.Rand) {
	wrap := func(h ginws.Handler) ginws.Handler {
		return func(conn *ginws.Conn, c *gin.Context) error {
			id := c.Query("r")
			conn.OnClose(func(_ *ginws.Conn, err error) { st.ended(id, err) })
			st.started.Add(1)
			defer st.returned.Add(1)
			return h(conn, c)
		}
	}
	s.Handle(r, "/echo", wrap(func(conn *ginws.Conn, c *gin.Context) error {
		r := stressRand(c)
		if r.IntN(2) == 0 {
			conn.Join(stressRooms[r.IntN(len(stressRooms))])
		}
		if r.IntN(3) == 0 {
			_ = conn.SetReadDeadline(time.Now().Add(time.Duration(r.IntN(200)) * time.Millisecond))
		}
		for {
			t, p, err := conn.ReadMessage(c)
			if isDeadline(err) && !errors.Is(err, ginws.ErrClosed) {
				// Before a message began: the connection is usable. (In one,
				// it was dropped, and the next read says so.)
				_ = conn.SetReadDeadline(time.Time{})
				continue
			}
			if err != nil {
				return err
			}
			if err := conn.WriteMessage(c, t, p); err != nil {
				return err
			}
		}
	}))
	s.Handle(r, "/copy", wrap(func(conn *ginws.Conn, c *gin.Context) error {
		_, err := io.Copy(conn, conn)
		return err
	}), ginws.ObjectMode(true))
	s.Handle(r, "/next", wrap(func(conn *ginws.Conn, c *gin.Context) error {
		for {
			t, rd, err := conn.NextReader(c)
			if err != nil {
				return err
			}
			p, err := io.ReadAll(rd)
			if err != nil {
				return err
			}
			if err := conn.WriteMessage(c, t, p); err != nil {
				return err
			}
		}
	}))
	s.Handle(r, "/writer", wrap(func(conn *ginws.Conn, c *gin.Context) error {
		r := stressRand(c)
		conn.Join(stressRooms[r.IntN(len(stressRooms))])
		for range r.IntN(40) {
			var err error
			switch r.IntN(4) {
			case 0:
				err = conn.Ping(c, []byte("srv"))
			case 1:
				_, err = conn.Write(stressPayload(r))
			default:
				err = conn.WriteMessage(c, ginws.MessageText, stressPayload(r))
			}
			if err != nil {
				return err
			}
			time.Sleep(time.Duration(r.IntN(15)) * time.Millisecond)
		}
		switch r.IntN(3) {
		case 0:
			<-conn.Done()
			return nil
		case 1:
			return conn.CloseWith(stressCodes[r.IntN(len(stressCodes))], "writer done")
		}
		return nil
	}), ginws.IdleTimeout(time.Second), ginws.Compression(ginws.DeflateOptions{Threshold: 1, ServerContextTakeover: true}))
	s.Handle(r, "/prefix", wrap(func(conn *ginws.Conn, c *gin.Context) error {
		// Part of a message through the byte stream, then the connection
		// is handed to OnMessage, or closed, with the rest unread.
		r := stressRand(c)
		var b [5]byte
		if _, err := conn.Read(b[:1+r.IntN(len(b)-1)]); err != nil {
			return err
		}
		if r.IntN(2) == 0 {
			return nil
		}
		panicAt := -1
		if r.IntN(3) == 0 {
			panicAt = r.IntN(3)
		}
		n := 0
		conn.OnMessage(func(conn *ginws.Conn, t ginws.MessageType, p []byte) error {
			n++
			if n == panicAt {
				panic(stressPanicVal)
			}
			return conn.WriteMessage(context.Background(), t, p)
		})
		return nil
	}), ginws.ObjectMode(rr.IntN(2) == 0))
	s.Handle(r, "/event", wrap(func(conn *ginws.Conn, c *gin.Context) error {
		r := stressRand(c)
		if r.IntN(2) == 0 {
			// A login message first.
			if _, _, err := conn.ReadMessage(c); err != nil {
				return err
			}
		}
		conn.Join(stressRooms[r.IntN(len(stressRooms))])
		st.mu.Lock()
		st.onClose[conn] = 0
		st.mu.Unlock()
		id := c.Query("r")
		conn.OnClose(func(conn *ginws.Conn, err error) {
			st.ended(id, err)
			st.mu.Lock()
			st.onClose[conn]++
			st.mu.Unlock()
		})
		failAt := -1
		if r.IntN(4) == 0 {
			failAt = r.IntN(5)
		}
		room := stressRooms[r.IntN(len(stressRooms))]
		n := 0
		conn.OnMessage(func(conn *ginws.Conn, t ginws.MessageType, p []byte) error {
			n++
			switch {
			case n == failAt:
				return errStressBoom
			case n%3 == 0:
				s.Broadcast(ginws.ToRoom(room), t, p)
				return nil
			case n%7 == 0:
				return conn.CloseWith(4001, "event done")
			}
			return conn.WriteMessage(conn.Context(), t, p)
		})
		return nil
	}))
	s.Handle(r, "/room", wrap(func(conn *ginws.Conn, c *gin.Context) error {
		r := stressRand(c)
		conn.Set("id", r.Uint64())
		for {
			t, p, err := conn.ReadMessage(c)
			if err != nil {
				return err
			}
			room := stressRooms[r.IntN(len(stressRooms))]
			switch r.IntN(4) {
			case 0:
				conn.Join(room)
			case 1:
				conn.Leave(room)
			case 2:
				s.Broadcast(ginws.ToRoom(room), t, p)
			default:
				s.Broadcast(ginws.ToRoute("/room"), t, p)
			}
		}
	}))
	s.Handle(r, "/closer", wrap(func(conn *ginws.Conn, c *gin.Context) error {
		r := stressRand(c)
		var wg sync.WaitGroup
		defer wg.Wait()
		for range 1 + r.IntN(4) {
			op, delay := r.IntN(6), time.Duration(r.IntN(150))*time.Millisecond
			code := stressCodes[r.IntN(len(stressCodes))]
			p := stressPayload(r)
			wg.Go(func() {
				time.Sleep(delay)
				switch op {
				case 0:
					_ = conn.Close()
				case 1:
					_ = conn.CloseWith(code, "closer")
				case 2:
					_ = conn.Ping(context.Background(), nil)
				case 3:
					_, _ = conn.Write(p)
				default:
					_ = conn.WriteMessage(context.Background(), ginws.MessageBinary, p)
				}
			})
		}
		for {
			if _, _, err := conn.ReadMessage(c); err != nil {
				return err
			}
		}
	}))
	s.Handle(r, "/fail", wrap(func(conn *ginws.Conn, c *gin.Context) error {
		r := stressRand(c)
		for range r.IntN(3) {
			if _, _, err := conn.ReadMessage(c); err != nil {
				return err
			}
		}
		if r.IntN(2) == 0 {
			panic(stressPanicVal)
		}
		return errStressBoom
	}))
}

func (st *stressState) errorHandler(err error, _ *ginws.Conn, _ *gin.Context) {
	if pe, ok := errors.AsType[*ginws.PanicError](err); ok && pe.Value == stressPanicVal {
		return
	}
	if errors.Is(err, errStressBoom) {
		return
	}
	st.failf("handler reported: %v", err)
}

// stirrer broadcasts, ranges, counts and closes connections from outside
// their handlers until stop is closed.
func (st *stressState) stirrer(seed uint64, stop <-chan struct{}, closers *sync.WaitGroup) {
	r := rand.New(rand.NewPCG(seed, 2))
	for {
		select {
		case <-stop:
			return
		default:
		}
		p := stressPayload(r)
		switch r.IntN(6) {
		case 0:
			st.srv.Broadcast(ginws.ToAll(), ginws.MessageBinary, p)
		case 1:
			st.srv.Broadcast(ginws.ToRoom(stressRooms[r.IntN(len(stressRooms))]), ginws.MessageText, p)
		case 2:
			st.srv.Broadcast(ginws.ToRoute(stressRoutes[r.IntN(len(stressRoutes))]), ginws.MessageText, p)
		case 3:
			_ = st.srv.Count(ginws.ToAll().Where(func(c *ginws.Conn) bool { _, ok := c.Get("id"); return ok }))
		case 4:
			st.srv.Range(ginws.ToAll(), func(c *ginws.Conn) bool {
				c.Set("seen", true)
				if r.IntN(40) == 0 {
					code := stressCodes[r.IntN(len(stressCodes))]
					closers.Go(func() { _ = c.CloseWith(code, "from outside") })
				}
				return true
			})
		default:
			_ = st.srv.Len()
		}
		time.Sleep(time.Duration(r.IntN(5)) * time.Millisecond)
	}
}

// stressClient is one peer. Its reader answers pings and the server's
// close, and records how the connection ended.
type stressClient struct {
	kind  string
	route string
	id    string // the seed in its query string
	nc    net.Conn
	r     io.Reader

	wmu       sync.Mutex
	closeSent bool

	sawClose atomic.Bool
	readEnd  chan error // the error the reader ended with
}

func (c *stressClient) write(fin bool, op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return net.ErrClosed
	}
	c.closeSent = op == ws.OpClose
	f := ws.NewFrame(op, fin, append([]byte(nil), p...))
	return ws.WriteFrame(c.nc, ws.MaskFrameInPlace(f))
}

func (c *stressClient) read() {
	var err error
	defer func() { c.readEnd <- err }()
	for {
		_ = c.nc.SetReadDeadline(time.Now().Add(20 * time.Second)) // a hang guard
		var h ws.Header
		h, err = ws.ReadHeader(c.r)
		if err != nil {
			return
		}
		p := make([]byte, h.Length)
		if _, err = io.ReadFull(c.r, p); err != nil {
			return
		}
		switch h.OpCode {
		case ws.OpPing:
			_ = c.write(true, ws.OpPong, p)
		case ws.OpClose:
			c.sawClose.Store(true)
			code, _ := ws.ParseCloseFrameData(p)
			if len(p) == 0 {
				code = ws.StatusNormalClosure
			}
			_ = c.write(true, ws.OpClose, ws.NewCloseFrameBody(code, ""))
		}
	}
}

// run plays the client's part; it returns once the client has nothing
// left to do but read.
func (c *stressClient) run(r *rand.Rand) {
	send := func() error {
		p := stressPayload(r)
		op := ws.OpText
		if r.IntN(2) == 0 {
			op = ws.OpBinary
		}
		if len(p) < 2 || r.IntN(3) != 0 {
			return c.write(true, op, p)
		}
		// Fragmented, with a ping between the fragments now and then.
		cut := 1 + r.IntN(len(p)-1)
		if err := c.write(false, op, p[:cut]); err != nil {
			return err
		}
		if r.IntN(2) == 0 {
			if err := c.write(true, ws.OpPing, []byte("between")); err != nil {
				return err
			}
		}
		return c.write(true, ws.OpContinuation, p[cut:])
	}
	pause := func() { time.Sleep(time.Duration(r.IntN(20)) * time.Millisecond) }
	switch c.kind {
	case "talk":
		for range r.IntN(12) {
			if send() != nil {
				return
			}
			pause()
		}
		if r.IntN(2) == 0 {
			_ = c.write(true, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
		}
	case "ping":
		for range r.IntN(10) {
			if c.write(true, ws.OpPing, []byte("hi")) != nil {
				return
			}
			pause()
		}
	case "midclose":
		for range r.IntN(3) {
			if send() != nil {
				return
			}
		}
		if c.write(false, ws.OpBinary, []byte("first half")) != nil {
			return
		}
		pause()
		if r.IntN(2) == 0 {
			_ = c.write(true, ws.OpPing, nil)
		}
		_ = c.write(true, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "mid"))
	case "bad":
		// A continuation frame with no message to continue: 1002.
		for range r.IntN(3) {
			if send() != nil {
				return
			}
		}
		_ = c.write(true, ws.OpContinuation, []byte("orphan"))
	case "vanish", "reset":
		for range r.IntN(5) {
			if send() != nil {
				break
			}
			pause()
		}
		if c.kind == "reset" {
			_ = c.nc.(*net.TCPConn).SetLinger(0)
		}
		_ = c.nc.Close()
	case "deaf":
		for range r.IntN(5) {
			if send() != nil {
				return
			}
		}
	case "passive":
	}
}

// checked reports whether the client's ending is asserted: it reads to
// the end and answers the close, so it must get a close frame or EOF.
func (c *stressClient) checked() bool {
	switch c.kind {
	case "talk", "ping", "midclose", "bad", "passive":
		return true
	}
	return false
}

var stressKinds = []string{"talk", "talk", "talk", "ping", "midclose", "bad", "vanish", "reset", "deaf", "passive"}

func stressRound(t *testing.T, seed int64) {
	st := &stressState{onClose: make(map[*ginws.Conn]int), ends: make(map[string]error)}
	s := ginws.New(
		ginws.SendQueue(4),
		ginws.SendQueueBytes(16<<10),
		// Long enough that a peer that answers every close (the checked
		// clients) never runs into it, even under -race on a loaded
		// machine: one that does shows a lost close handshake.
		ginws.CloseTimeout(2*time.Second),
		ginws.PingInterval(100*time.Millisecond),
		ginws.IdleTimeout(3*time.Second),
		ginws.ErrorHandler(st.errorHandler),
		ginws.Compression(ginws.DeflateOptions{Threshold: 64}),
	)
	st.srv = s
	engine := gin.New()
	r := rand.New(rand.NewPCG(uint64(seed), 0))
	st.setup(engine, s, r)
	// Small send buffers: a peer that stops reading holds up its writes,
	// and its broadcast queue overflows, within a few messages.
	hs := httptest.NewUnstartedServer(engine)
	hs.Listener = loopback.SmallSendBuffers(hs.Listener, 8<<10)
	hs.Start()
	url := "ws://" + hs.Listener.Addr().String()

	shutdownAfter := time.Duration(250+r.IntN(400)) * time.Millisecond

	stop := make(chan struct{})
	var closers, stirrers sync.WaitGroup
	for i := range 2 {
		seed := r.Uint64() + uint64(i)
		stirrers.Go(func() { st.stirrer(seed, stop, &closers) })
	}

	var shutting atomic.Bool
	clients := make([]*stressClient, stressConns)
	var dialErrs []string
	var dmu sync.Mutex
	var runs sync.WaitGroup
	for i := range clients {
		kind := stressKinds[r.IntN(len(stressKinds))]
		route := stressRoutes[r.IntN(len(stressRoutes))]
		delay := time.Duration(r.IntN(500)) * time.Millisecond
		cseed := r.Uint64()
		deflate := r.IntN(2) == 0
		runs.Go(func() {
			time.Sleep(delay)
			d := ws.Dialer{Timeout: 10 * time.Second}
			if deflate {
				// The server compresses what it sends; the client reads
				// frames without looking into them.
				d.Extensions = []httphead.Option{{Name: []byte("permessage-deflate")}}
			}
			nc, br, _, err := d.Dial(context.Background(), fmt.Sprintf("%s%s?r=%d", url, route, cseed))
			if err != nil {
				var se ws.StatusError
				if errors.As(err, &se) && int(se) == 503 && shutting.Load() {
					return // refused: Shutdown has begun
				}
				dmu.Lock()
				dialErrs = append(dialErrs, fmt.Sprintf("client %d (%s to %s): %v", i, kind, route, err))
				dmu.Unlock()
				return
			}
			c := &stressClient{kind: kind, route: route, id: strconv.FormatUint(cseed, 10), nc: nc, r: nc, readEnd: make(chan error, 1)}
			if br != nil {
				c.r = io.MultiReader(br, nc)
			}
			clients[i] = c
			if kind != "deaf" {
				go c.read()
			}
			c.run(rand.New(rand.NewPCG(cseed, 3)))
		})
	}

	time.Sleep(shutdownAfter)
	shutting.Store(true)
	// Two at once: both wait for everything.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	second := make(chan error, 1)
	go func() { second <- s.Shutdown(ctx) }()
	err := s.Shutdown(ctx)
	require.NoError(t, <-second, "the second Shutdown")
	cancel()
	close(stop)
	stirrers.Wait()
	closers.Wait()
	runs.Wait()
	require.NoError(t, err, "Shutdown")

	// Dials that were answered after Shutdown returned are refused too;
	// Shutdown has closed everything it accepted.
	require.Equal(t, st.started.Load(), st.returned.Load(), "handlers that did not return")
	require.Zero(t, s.Len(), "connections left in the Server")

	outcomes := map[string]int{}
	for i, c := range clients {
		if c == nil {
			continue
		}
		if c.kind == "deaf" {
			_ = c.nc.Close()
			continue
		}
		var err error
		select {
		case err = <-c.readEnd:
		case <-time.After(20 * time.Second):
			t.Fatalf("client %d (%s to %s) still reading 20 s after Shutdown", i, c.kind, c.route)
		}
		_ = c.nc.Close()
		switch {
		case c.sawClose.Load():
			outcomes["close frame"]++
		case errors.Is(err, io.EOF):
			outcomes["EOF"]++
		default:
			outcomes["other"]++
		}
		if !c.checked() {
			continue
		}
		st.mu.Lock()
		end := st.ends[c.id]
		st.mu.Unlock()
		if errors.Is(end, ginws.ErrCloseTimeout) {
			t.Errorf("client %d (%s to %s): the server did not see its answer to the close: %v", i, c.kind, c.route, end)
			continue
		}
		if c.sawClose.Load() || errors.Is(err, io.EOF) {
			continue
		}
		if errors.Is(end, os.ErrDeadlineExceeded) || errors.Is(end, ginws.ErrIdleTimeout) {
			// The /echo handler's read deadline passed in the middle of a
			// message, or the client was slow to answer pings: either
			// drops the connection, as documented.
			continue
		}
		t.Errorf("client %d (%s to %s) got neither a close frame nor EOF: %v; the server's end: %v", i, c.kind, c.route, err, end)
	}
	hs.Close()

	st.mu.Lock()
	defer st.mu.Unlock()
	for conn, n := range st.onClose {
		if n != 1 {
			t.Errorf("OnClose of %s ran %d times", conn.Route(), n)
		}
	}
	for _, e := range st.unexpected {
		t.Error(e)
	}
	for _, e := range dialErrs {
		t.Error(e)
	}
	n := 0
	for _, c := range clients {
		if c != nil {
			n++
		}
	}
	t.Logf("seed %d: %d connections, %d handlers, Shutdown after %v; clients: %v", seed, n, st.started.Load(), shutdownAfter, outcomes)
}
