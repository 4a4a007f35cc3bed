package nats_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ginws/ginws/backplane/nats"
	"github.com/ginws/ginws/backplane/nats/natstest"
	"github.com/ginws/ginws/ginws"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// inbox collects what a subscription delivers.
type inbox struct {
	mu   sync.Mutex
	msgs []string
}

func (in *inbox) deliver(msg []byte) {
	in.mu.Lock()
	in.msgs = append(in.msgs, string(msg))
	in.mu.Unlock()
}

func (in *inbox) get() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.msgs...)
}

func (in *inbox) waitLen(t *testing.T, n int) []string {
	t.Helper()
	require.Eventually(t, func() bool { return len(in.get()) >= n }, 10*time.Second, 5*time.Millisecond, "got %d of %d", len(in.get()), n)
	return in.get()
}

type states struct {
	mu  sync.Mutex
	seq []ginws.BackplaneState
}

func (s *states) add(st ginws.BackplaneState) {
	s.mu.Lock()
	s.seq = append(s.seq, st)
	s.mu.Unlock()
}

func (s *states) get() []ginws.BackplaneState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ginws.BackplaneState(nil), s.seq...)
}

func newBackplane(t *testing.T, url string, opts ...nats.Option) *nats.Backplane {
	t.Helper()
	b, err := nats.New(url, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

func waitState(t *testing.T, b *nats.Backplane, want ginws.BackplaneState) {
	t.Helper()
	require.Eventually(t, func() bool { return b.State() == want }, 15*time.Second, 5*time.Millisecond, "state %v, want %v", b.State(), want)
}

func publish(t *testing.T, b *nats.Backplane, topic string, msgs ...string) {
	t.Helper()
	bs := make([][]byte, len(msgs))
	for i, m := range msgs {
		bs[i] = []byte(m)
	}
	require.NoError(t, b.Publish(context.Background(), topic, bs...))
}

// settle publishes until in receives (the subscription reaches the
// server asynchronously), then a marker after which nothing of the
// probing is in flight. It returns how many messages in has then.
func settle(t *testing.T, pub *nats.Backplane, topic string, in *inbox) int {
	t.Helper()
	require.Eventually(t, func() bool {
		publish(t, pub, topic, "probe")
		return len(in.get()) > 0
	}, 10*time.Second, 20*time.Millisecond)
	publish(t, pub, topic, "marker")
	require.Eventually(t, func() bool {
		got := in.get()
		return len(got) > 0 && got[len(got)-1] == "marker"
	}, 10*time.Second, 5*time.Millisecond)
	return len(in.get())
}

func TestPublishSubscribe(t *testing.T) {
	srv := natstest.Start(t)
	pub, sub := newBackplane(t, srv.URL), newBackplane(t, srv.URL)
	waitState(t, sub, ginws.BackplaneConnected)
	var a, a2, other inbox
	cancelA, err := sub.Subscribe("a", a.deliver)
	require.NoError(t, err)
	_, err = sub.Subscribe("a", a2.deliver)
	require.NoError(t, err)
	_, err = sub.Subscribe("other", other.deliver)
	require.NoError(t, err)
	probes := settle(t, pub, "a", &a)

	batch := make([]string, 500)
	for i := range batch {
		batch[i] = fmt.Sprintf("m%d", i)
	}
	publish(t, pub, "a", batch...)
	publish(t, pub, "a", "single")
	publish(t, pub, "a")
	got := a.waitLen(t, probes+len(batch)+1)[probes:]
	require.Equal(t, append(batch, "single"), got[:len(batch)+1], "in order, once")
	a2.waitLen(t, probes+len(batch)+1)
	assert.Empty(t, other.get())

	require.NoError(t, cancelA())
	require.NoError(t, cancelA(), "twice")
	publish(t, pub, "a", "after cancel")
	publish(t, pub, "other", "to other")
	other.waitLen(t, 1)
	a2.waitLen(t, probes+len(batch)+2)
	assert.Len(t, a.get(), probes+len(batch)+1, "no delivery after cancel")

	big := make([]byte, 2<<20) // over the server's 1 MiB default
	err = pub.Publish(context.Background(), "a", []byte("ok"), big)
	require.ErrorIs(t, err, natsgo.ErrMaxPayload)
	assert.True(t, strings.Contains(err.Error(), "server limit"), err)
}

// TestBrokerRestart: the connection reports the loss, reconnects on its
// own after the server comes back, subscribes again, and delivery
// resumes.
func TestBrokerRestart(t *testing.T) {
	srv := natstest.Start(t)
	var st states
	sub := newBackplane(t, srv.URL, nats.OnStateChange(st.add))
	pub := newBackplane(t, srv.URL)
	var in inbox
	_, err := sub.Subscribe("t", in.deliver)
	require.NoError(t, err)
	waitState(t, sub, ginws.BackplaneConnected)
	settle(t, pub, "t", &in)

	srv.Stop()
	waitState(t, sub, ginws.BackplaneReconnecting)
	waitState(t, pub, ginws.BackplaneReconnecting)
	publish(t, pub, "t", "buffered") // kept in nats.go's reconnect buffer

	srv.Restart()
	waitState(t, sub, ginws.BackplaneConnected)
	waitState(t, pub, ginws.BackplaneConnected)
	n := len(in.get())
	require.Eventually(t, func() bool { publish(t, pub, "t", "back"); return len(in.get()) > n }, 10*time.Second, 20*time.Millisecond)
	// "buffered" may have been delivered before n was taken, after it, or
	// (when the subscriber subscribed again after the publisher flushed
	// it) not at all; if delivered, it comes before every "back".
	got := in.get()
	buffered, back := slices.Index(got, "buffered"), slices.Index(got, "back")
	require.GreaterOrEqual(t, back, 0)
	assert.Less(t, buffered, back, "a buffered message, if delivered, comes before what followed it")
	if buffered >= 0 {
		assert.NotContains(t, got[buffered+1:], "buffered", "delivered at most once")
	}
	// OnStateChange is called just after State changes.
	want := []ginws.BackplaneState{ginws.BackplaneReconnecting, ginws.BackplaneConnected}
	require.Eventually(t, func() bool {
		got := st.get()
		return len(got) >= 2 && slices.Equal(got[len(got)-2:], want)
	}, 5*time.Second, 5*time.Millisecond, "state changes: %v", st.get())
}

// TestStartWhileDown: made while no server listens, the backplane keeps
// trying and subscribes once one starts.
func TestStartWhileDown(t *testing.T) {
	srv := natstest.Start(t)
	srv.Stop()
	sub := newBackplane(t, srv.URL)
	var in inbox
	_, err := sub.Subscribe("t", in.deliver)
	require.NoError(t, err, "Subscribe does not need the server")
	time.Sleep(100 * time.Millisecond)
	assert.Equal(t, ginws.BackplaneConnecting, sub.State())

	srv.Restart()
	waitState(t, sub, ginws.BackplaneConnected)
	pub := newBackplane(t, srv.URL)
	settle(t, pub, "t", &in)
}

func TestClose(t *testing.T) {
	srv := natstest.Start(t)
	b, err := nats.New(srv.URL)
	require.NoError(t, err)
	var in inbox
	cancel, err := b.Subscribe("t", in.deliver)
	require.NoError(t, err)
	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "twice")
	assert.Equal(t, ginws.BackplaneClosed, b.State())
	require.ErrorIs(t, b.Publish(context.Background(), "t", []byte("x")), nats.ErrClosed)
	_, err = b.Subscribe("t", in.deliver)
	require.ErrorIs(t, err, nats.ErrClosed)
	require.NoError(t, cancel())

	// A connection the caller made stays open.
	nc, err := natsgo.Connect(srv.URL)
	require.NoError(t, err)
	defer nc.Close()
	b = nats.NewConn(nc)
	assert.Equal(t, ginws.BackplaneConnected, b.State())
	require.NoError(t, b.Close())
	assert.True(t, nc.IsConnected())
}

// TestCluster: two ginws instances in this process, one NATS server: a
// Broadcast on one reaches the other through the broker, and its own
// echo is ignored. (backplane/e2e runs separate processes and restarts
// the broker.)
func TestCluster(t *testing.T) {
	srv := natstest.Start(t)
	var cls [2]*ginws.Cluster
	for i := range cls {
		b := newBackplane(t, srv.URL)
		cl, err := ginws.NewCluster(ginws.New(), b)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, cl.Shutdown(context.Background())) })
		cls[i] = cl
		waitState(t, b, ginws.BackplaneConnected)
	}
	require.Eventually(t, func() bool {
		_, err := cls[0].Broadcast(ginws.ToAll(), ginws.MessageText, []byte("hi"))
		require.NoError(t, err)
		return cls[1].Stats().Received > 0
	}, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return cls[0].Stats().Echoes > 0 }, 10*time.Second, 5*time.Millisecond)
	assert.Zero(t, cls[0].Stats().Received, "its own messages are not delivered twice")
	assert.Equal(t, ginws.BackplaneConnected, cls[1].State())
}

// TestOversizeBeforeFirstConnect: a message over the server's max_payload
// published while the backplane has never been connected (nats.go does
// not know the limit yet and keeps it in its reconnect buffer) must not
// cost the backplane its connection: once the server is up, the
// backplane connects, stays connected, and delivers.
func TestOversizeBeforeFirstConnect(t *testing.T) {
	srv := natstest.Start(t)
	srv.Stop()
	var st states
	pub := newBackplane(t, srv.URL, nats.OnStateChange(st.add))
	big := make([]byte, 2<<20) // over the server's 1 MiB default
	_ = pub.Publish(context.Background(), "t", []byte("before"), big)

	srv.Restart()
	sub := newBackplane(t, srv.URL)
	var in inbox
	_, err := sub.Subscribe("t", in.deliver)
	require.NoError(t, err)
	waitState(t, sub, ginws.BackplaneConnected)
	delivered := assert.Eventually(t, func() bool {
		_ = pub.Publish(context.Background(), "t", []byte("after"))
		got := in.get()
		return len(got) > 0 && got[len(got)-1] == "after"
	}, 10*time.Second, 20*time.Millisecond, "nothing delivered after the server came up")
	assert.NotContains(t, st.get(), ginws.BackplaneClosed, "the publisher's connection was closed for good")
	assert.True(t, delivered, "publisher state %v", pub.State())
}

// stuckServer is a NATS server that completes the handshake and then
// never reads again, as a broker that hangs: what its clients write
// fills the socket buffers, and then their writes block.
func stuckServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				_, _ = fmt.Fprintf(c, "INFO {\"server_id\":\"stuck\",\"version\":\"2.10.0\",\"proto\":1,\"max_payload\":%d}\r\n", 64<<20)
				r := bufio.NewReader(c)
				for { // CONNECT, then PING: answer, then read no more
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if strings.HasPrefix(line, "PING") {
						_, _ = c.Write([]byte("PONG\r\n"))
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-accepting
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return "nats://" + ln.Addr().String()
}

// TestPublishBoundedByContext: a Publish to a broker that stops reading
// returns when its context ends (the Cluster's ClusterPublishTimeout),
// not when nats.go's one-minute write timeout gives up.
func TestPublishBoundedByContext(t *testing.T) {
	b := newBackplane(t, stuckServer(t))
	waitState(t, b, ginws.BackplaneConnected)
	msgs := make([][]byte, 256) // 64 MiB: more than the socket buffers hold
	for i := range msgs {
		msgs[i] = make([]byte, 256<<10)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Publish(ctx, "t", msgs...) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Publish waits past its context for a broker that does not read")
	}
}

// TestClusterShutdownHungBroker: Cluster.Shutdown returns when its
// context ends, even while the NATS broker has stopped reading and the
// Cluster's publisher is stuck writing to it.
func TestClusterShutdownHungBroker(t *testing.T) {
	b := newBackplane(t, stuckServer(t))
	waitState(t, b, ginws.BackplaneConnected)
	cl, err := ginws.NewCluster(ginws.New(), b, ginws.ClusterPublishTimeout(200*time.Millisecond))
	require.NoError(t, err)
	p := make([]byte, 256<<10)
	for range 256 { // 64 MiB: more than the socket buffers hold
		_, err := cl.Broadcast(ginws.ToAll(), ginws.MessageBinary, p)
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cl.Shutdown(ctx) }()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(15 * time.Second):
		t.Fatal("Cluster.Shutdown waits past its context for a NATS broker that does not read")
	}
}
