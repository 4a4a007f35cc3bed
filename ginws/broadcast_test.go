package ginws_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// roomHandler joins the rooms named in the query and tags the connection
// with its id, then waits for the end.
func roomHandler(conn *ginws.Conn, c *gin.Context) error {
	conn.Set("id", c.Query("id"))
	for _, room := range c.QueryArray("room") {
		conn.Join(room)
	}
	for {
		if _, _, err := conn.ReadMessage(c); err != nil {
			return err
		}
	}
}

func TestBroadcastSelection(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/a", roomHandler)
		s.Handle(r.Group("/g"), "/b", roomHandler)
	})
	s := ts.ws
	type peer struct {
		c           *client
		route, room string
		id          int
	}
	var peers []peer
	for i := range 24 {
		route := []string{"/a", "/g/b"}[i%2]
		room := []string{"red", "blue", "green"}[i%3]
		c := dial(t, ts.wsURL(fmt.Sprintf("%s?id=%d&room=%s", route, i, room)), nil)
		peers = append(peers, peer{c, route, room, i})
	}
	// Connections count once upgraded; the handlers set "id" and join
	// their rooms after that.
	require.Eventually(t, func() bool {
		return s.Count(ginws.ToRoom("red")) == 8 && s.Count(ginws.ToRoom("blue")) == 8 &&
			s.Count(ginws.ToRoom("green")) == 8
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 24, s.Len())
	assert.Equal(t, 12, s.Count(ginws.ToRoute("/g/b")))
	byID := func(f func(id int) bool) func(*ginws.Conn) bool {
		return func(c *ginws.Conn) bool {
			v, _ := c.Get("id")
			var id int
			fmt.Sscan(v.(string), &id)
			return f(id)
		}
	}
	cases := []struct {
		name  string
		sel   ginws.Selector
		match func(p peer) bool
	}{
		{"all", ginws.ToAll(), func(peer) bool { return true }},
		{"route", ginws.ToRoute("/a"), func(p peer) bool { return p.route == "/a" }},
		{"group route", ginws.ToRoute("/g/b"), func(p peer) bool { return p.route == "/g/b" }},
		{"room", ginws.ToRoom("blue"), func(p peer) bool { return p.room == "blue" }},
		{"room and attribute", ginws.ToRoom("green").Where(byID(func(id int) bool { return id > 10 })),
			func(p peer) bool { return p.room == "green" && p.id > 10 }},
		{"no such room", ginws.ToRoom("none"), func(peer) bool { return false }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := 0
			for _, p := range peers {
				if tc.match(p) {
					want++
				}
			}
			assert.Equal(t, want, s.Broadcast(tc.sel, ginws.MessageText, []byte(tc.name)))
			// A marker to everyone shows who got the selected message before it.
			s.Broadcast(ginws.ToAll(), ginws.MessageText, []byte("marker"))
			for _, p := range peers {
				_, m := p.c.readMessage()
				if tc.match(p) {
					assert.Equal(t, tc.name, string(m), "peer %d", p.id)
					_, m = p.c.readMessage()
				}
				assert.Equal(t, "marker", string(m), "peer %d", p.id)
			}
		})
	}
}

func TestBroadcastJoinLeaveUnderLoad(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/room", roomHandler) })
	s := ts.ws
	const stayers, broadcasters, each = 20, 4, 200
	type stayer struct {
		nc   net.Conn
		next [broadcasters]int
	}
	var stay []*stayer
	for i := range stayers {
		c := dial(t, ts.wsURL(fmt.Sprintf("/room?id=s%d&room=lobby", i)), nil)
		stay = append(stay, &stayer{nc: c.nc})
	}
	require.Eventually(t, func() bool { return s.Count(ginws.ToRoom("lobby")) == stayers }, 5*time.Second, 10*time.Millisecond)

	stop := make(chan struct{})
	var churn sync.WaitGroup
	for w := range 4 { // connections that come and go while broadcasts run
		churn.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := tryDial(t, ts.wsURL(fmt.Sprintf("/room?id=c%d-%d&room=lobby", w, i)), nil)
				if err == nil {
					time.Sleep(time.Millisecond)
					_ = c.nc.Close()
				}
			}
		})
	}
	var readers sync.WaitGroup
	errs := make(chan error, stayers)
	for _, st := range stay {
		readers.Go(func() {
			for range broadcasters * each {
				_ = st.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
				m, err := wsutil.ReadServerBinary(st.nc)
				if err != nil {
					errs <- err
					return
				}
				b, i := int(m[0]), int(binary.BigEndian.Uint32(m[1:]))
				if st.next[b] != i {
					errs <- fmt.Errorf("broadcaster %d: got %d, want %d", b, i, st.next[b])
					return
				}
				st.next[b]++
			}
		})
	}
	var bc sync.WaitGroup
	for b := range broadcasters {
		bc.Go(func() {
			msg := make([]byte, 5+100)
			for i := range each {
				msg[0] = byte(b)
				binary.BigEndian.PutUint32(msg[1:], uint32(i))
				s.Broadcast(ginws.ToRoom("lobby"), ginws.MessageBinary, msg[:5+i%100])
			}
		})
	}
	bc.Wait()
	readers.Wait()
	close(stop)
	churn.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, st := range stay {
		require.NoError(t, st.nc.Close())
	}
	require.Eventually(t, func() bool { return s.Len() == 0 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, 0, s.Count(ginws.ToRoom("lobby")))
}

func TestBroadcastStalledReader(t *testing.T) {
	const healthy, messages, size = 1000, 200, 1024
	// A long close timeout: the stalled peer resumes reading only after the
	// healthy ones are done, and must then still find its close frame.
	s := ginws.New(ginws.SendQueue(32), ginws.CloseTimeout(time.Minute))
	r := gin.New()
	s.Handle(r, "/room", roomHandler)
	url := smallBufferServer(t, r, "/room")

	// The stalled client reads nothing until the end.
	d := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
		}
		return c, err
	}}
	stalled, _, _, err := d.Dial(context.Background(), url)
	require.NoError(t, err)
	defer stalled.Close()

	var got atomic.Int64
	var readers sync.WaitGroup
	conns := make([]net.Conn, healthy)
	for i := range conns {
		conns[i], _, _, err = ws.Dial(context.Background(), url)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return s.Len() == healthy+1 }, 10*time.Second, 10*time.Millisecond)
	errs := make(chan error, healthy)
	for _, nc := range conns {
		readers.Go(func() {
			defer nc.Close()
			for want := range messages {
				_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
				m, err := wsutil.ReadServerBinary(nc)
				if err != nil {
					errs <- err
					return
				}
				if n := int(binary.BigEndian.Uint32(m)); n != want || len(m) != size {
					errs <- fmt.Errorf("got message %d (%d bytes), want %d", n, len(m), want)
					return
				}
				got.Add(1)
			}
		})
	}
	// Rounds of 16, each waited for by the healthy clients: they keep pace,
	// the stalled one falls further behind every round.
	msg := make([]byte, size)
	for i := range messages {
		binary.BigEndian.PutUint32(msg, uint32(i))
		s.Broadcast(ginws.ToAll(), ginws.MessageBinary, msg)
		if (i+1)%16 == 0 {
			sent := int64(healthy * (i + 1))
			require.Eventually(t, func() bool { return got.Load() == sent || len(errs) > 0 }, 30*time.Second, time.Millisecond)
		}
	}
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	assert.Equal(t, int64(healthy*messages), got.Load(), "every healthy client got every message in order")

	// The stalled client now reads: what was on its way, then a close 1008.
	n := 0
	var code ws.StatusCode
	sc := &client{t: t, nc: stalled, r: stalled}
	for {
		f := sc.readFrame()
		if f.Header.OpCode == ws.OpClose {
			code, _ = ws.ParseCloseFrameData(f.Payload)
			break
		}
		n++
	}
	assert.Equal(t, ws.StatusPolicyViolation, code)
	assert.Less(t, n, messages, "the stalled client was cut off before the end")
	_ = stalled.Close()
	require.Eventually(t, func() bool { return s.Len() == 0 }, 10*time.Second, 10*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
}

// A burst of broadcasts that queued up for slow readers leaves nothing
// behind once they have caught up: the queue's chunks go back to their
// pools as they are written, and a writev takes one chunk, so the iovec
// array the runtime keeps per socket stays small. When the queue was a
// slice kept between bursts and written in one writev, an idle connection
// kept about 80 KiB after a burst of 1,000.
func TestBroadcastBurstLeavesNoQueue(t *testing.T) {
	const conns, messages, size = 20, 1000, 1024
	s := ginws.New()
	r := gin.New()
	s.Handle(r, "/room", roomHandler)
	url := smallBufferServer(t, r, "/room")
	ncs := make([]net.Conn, conns)
	for i := range ncs {
		nc, _, _, err := ws.Dial(context.Background(), url)
		require.NoError(t, err)
		ncs[i] = nc
	}
	require.Eventually(t, func() bool { return s.Len() == conns }, 10*time.Second, 10*time.Millisecond)
	before := heapInUse()

	// The clients read nothing until the burst is queued: the sockets'
	// buffers (the server's send buffers are small) take part of it and the
	// rest waits in each connection's queue.
	msg := make([]byte, size)
	for range messages {
		require.Equal(t, conns, s.Broadcast(ginws.ToAll(), ginws.MessageBinary, msg))
	}
	errs := make(chan error, conns)
	for _, nc := range ncs {
		go func() {
			for range messages {
				_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
				if _, err := wsutil.ReadServerBinary(nc); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range conns {
		require.NoError(t, <-errs)
	}
	per := heapGrowthPerConn(before, conns, 8<<10)
	assert.Less(t, per, float64(8<<10), "heap per connection after a burst of %d broadcasts", messages)
	t.Logf("heap per connection after the burst: %.0f B", per)
	assert.Equal(t, conns, s.Len())
	for _, nc := range ncs {
		_ = nc.Close()
	}
	require.Eventually(t, func() bool { return s.Len() == 0 }, 10*time.Second, 10*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
}

// TestSendQueueBytes: a peer that stops reading holds no more broadcast
// bytes than SendQueueBytes (the frame being written included), however
// few messages that is, and is closed as too slow past it.
func TestSendQueueBytes(t *testing.T) {
	const budget, size = 1 << 20, 256 << 10
	s := ginws.New(ginws.SendQueueBytes(budget))
	r := gin.New()
	s.Handle(r, "/room", func(conn *ginws.Conn, c *gin.Context) error {
		_, _, err := conn.ReadMessage(c) // until the end
		return err
	})
	url := smallBufferServer(t, r, "/room")
	shutdownAtEnd(t, s)
	dialSlowReader(t, url, 4<<10) // and never reads
	require.Eventually(t, func() bool { return s.Len() == 1 }, 5*time.Second, time.Millisecond)
	msg := make([]byte, size)
	queued := 0
	for s.Broadcast(ginws.ToAll(), ginws.MessageBinary, msg) == 1 {
		queued++
		require.LessOrEqual(t, queued, budget/size+2, "queued past the byte budget")
	}
	// Each frame is a few bytes over size: three fit, and what the kernel
	// took of the first may have made room for one or two more.
	assert.GreaterOrEqual(t, queued, budget/size-1)
}
