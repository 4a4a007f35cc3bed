package redis_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ginws/ginws/backplane/redis"
	"github.com/ginws/ginws/backplane/redis/redistest"
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

// states records the OnStateChange calls.
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

func newBackplane(t *testing.T, url string, opts ...redis.Option) *redis.Backplane {
	t.Helper()
	b, err := redis.New(url, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

func waitState(t *testing.T, b *redis.Backplane, want ginws.BackplaneState) {
	t.Helper()
	require.Eventually(t, func() bool { return b.State() == want }, 15*time.Second, 5*time.Millisecond, "state %v, want %v", b.State(), want)
}

func publish(t *testing.T, b *redis.Backplane, topic string, msgs ...string) {
	t.Helper()
	bs := make([][]byte, len(msgs))
	for i, m := range msgs {
		bs[i] = []byte(m)
	}
	require.NoError(t, b.Publish(context.Background(), topic, bs...))
}

// settle publishes until in receives, since SUBSCRIBE is confirmed
// asynchronously, then a marker after which nothing of the probing is in
// flight any more. It returns how many messages in has then.
func settle(t *testing.T, pub *redis.Backplane, topic string, in *inbox) int {
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
	srv := redistest.Start(t)
	pub, sub := newBackplane(t, srv.URL), newBackplane(t, srv.URL)
	var a, a2, other inbox
	cancelA, err := sub.Subscribe("a", a.deliver)
	require.NoError(t, err)
	_, err = sub.Subscribe("a", a2.deliver) // a second subscription to one channel
	require.NoError(t, err)
	_, err = sub.Subscribe("other", other.deliver)
	require.NoError(t, err)
	waitState(t, sub, ginws.BackplaneConnected)
	probes := settle(t, pub, "a", &a)

	batch := make([]string, 500)
	for i := range batch {
		batch[i] = fmt.Sprintf("m%d", i)
	}
	publish(t, pub, "a", batch...)
	publish(t, pub, "a", "single")
	publish(t, pub, "a") // nothing
	got := a.waitLen(t, probes+len(batch)+1)[probes:]
	require.Equal(t, append(batch, "single"), got[:len(batch)+1], "in order, once")
	assert.Len(t, a2.waitLen(t, probes+len(batch)+1), probes+len(batch)+1)
	assert.Empty(t, other.get())

	require.NoError(t, cancelA())
	require.NoError(t, cancelA(), "twice")
	publish(t, pub, "a", "after cancel")
	publish(t, pub, "other", "to other")
	other.waitLen(t, 1)
	assert.Len(t, a.get(), probes+len(batch)+1, "no delivery after cancel")
	assert.Len(t, a2.waitLen(t, probes+len(batch)+2), probes+len(batch)+2)
}

// TestBrokerRestart: the subscriber reports the loss, reconnects on its
// own after the broker comes back, subscribes again, and delivery
// resumes; publishing fails while the broker is down.
func TestBrokerRestart(t *testing.T) {
	srv := redistest.Start(t)
	var st states
	sub := newBackplane(t, srv.URL, redis.OnStateChange(st.add))
	pub := newBackplane(t, srv.URL)
	var in inbox
	_, err := sub.Subscribe("t", in.deliver)
	require.NoError(t, err)
	waitState(t, sub, ginws.BackplaneConnected)
	require.Eventually(t, func() bool { publish(t, pub, "t", "probe"); return len(in.get()) > 0 }, 10*time.Second, 20*time.Millisecond)

	srv.Kill()
	waitState(t, sub, ginws.BackplaneReconnecting)
	waitState(t, pub, ginws.BackplaneReconnecting)
	start := time.Now()
	require.ErrorIs(t, pub.Publish(context.Background(), "t", []byte("lost")), redis.ErrNotConnected)
	assert.Less(t, time.Since(start), time.Second, "fails at once while the broker is known to be down, not after the %v health check", redis.DefaultHealthCheck)

	srv.Restart()
	waitState(t, sub, ginws.BackplaneConnected)
	waitState(t, pub, ginws.BackplaneConnected) // the two reconnect on their own schedules
	n := len(in.get())
	require.Eventually(t, func() bool { publish(t, pub, "t", "back"); return len(in.get()) > n }, 10*time.Second, 20*time.Millisecond)
	for _, m := range in.get() {
		assert.NotEqual(t, "lost", m)
	}
	// OnStateChange is called just after State changes.
	want := []ginws.BackplaneState{ginws.BackplaneConnected, ginws.BackplaneReconnecting, ginws.BackplaneConnected}
	require.Eventually(t, func() bool { return len(st.get()) >= len(want) }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, want, st.get())
}

// TestStartWhileDown: made while no broker listens, the backplane keeps
// trying and subscribes once one starts.
func TestStartWhileDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	sub := newBackplane(t, srv.URL)
	var in inbox
	_, err := sub.Subscribe("t", in.deliver)
	require.NoError(t, err, "Subscribe does not need the broker")
	time.Sleep(100 * time.Millisecond)
	assert.Equal(t, ginws.BackplaneConnecting, sub.State())

	srv.Restart()
	waitState(t, sub, ginws.BackplaneConnected)
	pub := newBackplane(t, srv.URL)
	require.Eventually(t, func() bool { publish(t, pub, "t", "x"); return len(in.get()) > 0 }, 10*time.Second, 20*time.Millisecond)
}

// TestHungBroker: a broker that stops answering without closing the
// connection is noticed by the health check; the connection is replaced
// once it answers again.
func TestHungBroker(t *testing.T) {
	srv := redistest.Start(t)
	sub := newBackplane(t, srv.URL, redis.HealthCheck(100*time.Millisecond))
	var in inbox
	_, err := sub.Subscribe("t", in.deliver)
	require.NoError(t, err)
	waitState(t, sub, ginws.BackplaneConnected)

	srv.Pause()
	waitState(t, sub, ginws.BackplaneReconnecting)
	srv.Resume()
	waitState(t, sub, ginws.BackplaneConnected)
	pub := newBackplane(t, srv.URL)
	require.Eventually(t, func() bool { publish(t, pub, "t", "x"); return len(in.get()) > 0 }, 10*time.Second, 20*time.Millisecond)
}

// hungBroker listens on loopback as a broker that accepts connections and
// never answers. The connections it accepted come on the channel (those
// beyond its room are dropped from it) and are closed when the test ends.
func hungBroker(t *testing.T) (addr string, accepted <-chan net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ch := make(chan net.Conn, 16)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
			select {
			case ch <- c:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String(), ch
}

// TestPublishBoundedByContext: a Publish to a server that accepts the
// connection and never answers returns when its context ends, not when
// go-redis's own timeouts (or the health check) allow.
func TestPublishBoundedByContext(t *testing.T) {
	addr, _ := hungBroker(t)
	// go-redis's own timeouts, and the health check, are far longer than
	// the context: only the context can end the Publish in time.
	url := "redis://" + addr + "/?dial_timeout=60s&read_timeout=60s&write_timeout=60s"
	b, err := redis.New(url, redis.HealthCheck(60*time.Second))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Publish(ctx, "t", []byte("a"), []byte("b")) }()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(15 * time.Second):
		t.Fatal("Publish waits past its context")
	}
	require.NoError(t, b.Close()) // at once too (TestCloseHungBroker)
}

// TestCloseHungBroker: Close while the broker hangs (it accepts
// connections and never answers) returns at once, not when go-redis's
// ReadTimeout ends the setup of the subscriber connection under way.
func TestCloseHungBroker(t *testing.T) {
	addr, accepted := hungBroker(t)
	// go-redis's timeouts are far longer than the hang guard below.
	url := "redis://" + addr + "/?dial_timeout=60s&read_timeout=60s&write_timeout=60s"
	b, err := redis.New(url, redis.HealthCheck(60*time.Second))
	require.NoError(t, err)
	var sub net.Conn
	select {
	case sub = <-accepted: // the subscriber connection
	case <-time.After(15 * time.Second):
		t.Fatal("the backplane does not connect")
	}
	// Its setup (HELLO) has reached the broker and waits for an answer.
	require.NoError(t, sub.SetReadDeadline(time.Now().Add(15*time.Second)))
	_, err = sub.Read(make([]byte, 64))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- b.Close() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		_ = sub.Close() // the broker goes away: go-redis gives up
		<-done
		t.Fatal("Close waited for go-redis's timeouts")
	}
	assert.Equal(t, ginws.BackplaneClosed, b.State())
}

func TestClose(t *testing.T) {
	srv := redistest.Start(t)
	b, err := redis.New(srv.URL)
	require.NoError(t, err)
	var in inbox
	cancel, err := b.Subscribe("t", in.deliver)
	require.NoError(t, err)
	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "twice")
	assert.Equal(t, ginws.BackplaneClosed, b.State())
	require.ErrorIs(t, b.Publish(context.Background(), "t", []byte("x")), redis.ErrClosed)
	_, err = b.Subscribe("t", in.deliver)
	require.ErrorIs(t, err, redis.ErrClosed)
	require.NoError(t, cancel())

	_, err = redis.New("http://not-redis")
	require.Error(t, err)
}

// TestCluster: two ginws instances in this process, one Redis: a
// Broadcast on one reaches the other's connections through the broker.
// (backplane/e2e runs separate processes and restarts the broker.)
func TestCluster(t *testing.T) {
	// No connections: the counters show what each instance receives.
	srv := redistest.Start(t)
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

// TestLargeMessage: a message too large for Redis's pub/sub client output
// buffer (client-output-buffer-limit pubsub, 32 MiB by default) makes the
// server drop every subscriber of the channel: it must be refused by
// Publish, as NATS's max_payload is, not cost every instance its
// subscription and the messages that follow.
func TestLargeMessage(t *testing.T) {
	srv := redistest.Start(t)
	var st states
	sub := newBackplane(t, srv.URL, redis.OnStateChange(st.add))
	var in inbox
	_, err := sub.Subscribe("t", in.deliver)
	require.NoError(t, err)
	waitState(t, sub, ginws.BackplaneConnected)
	pub := newBackplane(t, srv.URL)
	_ = pub.Publish(context.Background(), "t", []byte("before"), make([]byte, 40<<20), []byte("after"))
	require.Eventually(t, func() bool {
		publish(t, pub, "t", "marker")
		got := in.get()
		return len(got) > 0 && got[len(got)-1] == "marker"
	}, 10*time.Second, 20*time.Millisecond)
	var small []string
	for _, m := range in.get() {
		if len(m) < 100 && m != "marker" {
			small = append(small, m)
		}
	}
	assert.Equal(t, []string{"before", "after"}, small, "the messages around the large one")
	assert.NotContains(t, st.get(), ginws.BackplaneReconnecting, "the subscriber lost its connection")
}

// TestSubscribeWhileLastUnsubscribes: a channel's last subscription ends
// while a new one begins. Whatever the order the two reach the server in,
// the new subscription receives: the channel's UNSUBSCRIBE never follows
// the SUBSCRIBE that the new one needs.
func TestSubscribeWhileLastUnsubscribes(t *testing.T) {
	srv := redistest.Start(t)
	pub, sub := newBackplane(t, srv.URL), newBackplane(t, srv.URL)
	waitState(t, sub, ginws.BackplaneConnected)
	for i := range 100 {
		topic := fmt.Sprintf("t%d", i%4)
		var old, in inbox
		cancelOld, err := sub.Subscribe(topic, old.deliver)
		require.NoError(t, err)
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			<-start
			assert.NoError(t, cancelOld())
		})
		var cancel func() error
		wg.Go(func() {
			<-start
			var err error
			cancel, err = sub.Subscribe(topic, in.deliver)
			assert.NoError(t, err)
		})
		close(start)
		wg.Wait()
		require.Eventually(t, func() bool {
			publish(t, pub, topic, "probe")
			return len(in.get()) > 0
		}, 5*time.Second, 20*time.Millisecond, "round %d: the new subscription receives nothing", i)
		require.NoError(t, cancel())
	}
}
