package ginws_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

// memBroker is an in-memory Backplane shared by the instances of a test:
// Publish delivers synchronously to every subscription, one call at a
// time per subscription, like a broker that never loses a message.
type memBroker struct {
	mu    sync.Mutex
	subs  map[string][]*memSub
	log   [][]byte      // every message published, in order
	fail  error         // Publish returns it
	block chan struct{} // Publish waits until it is closed
	state ginws.BackplaneState
}

type memSub struct {
	mu      sync.Mutex
	deliver func([]byte)
	done    bool
}

func newMemBroker() *memBroker {
	return &memBroker{subs: make(map[string][]*memSub), state: ginws.BackplaneConnected}
}

func (b *memBroker) Publish(ctx context.Context, topic string, msgs ...[]byte) error {
	b.mu.Lock()
	block, fail := b.block, b.fail
	b.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		return fail
	}
	for _, m := range msgs {
		b.inject(topic, m)
	}
	return nil
}

// inject delivers raw to every subscription of topic, as if published.
func (b *memBroker) inject(topic string, raw []byte) {
	m := append([]byte(nil), raw...) // Publish must not keep msgs
	b.mu.Lock()
	b.log = append(b.log, m)
	subs := append([]*memSub(nil), b.subs[topic]...)
	b.mu.Unlock()
	for _, s := range subs {
		s.mu.Lock()
		if !s.done {
			s.deliver(m)
		}
		s.mu.Unlock()
	}
}

func (b *memBroker) Subscribe(topic string, deliver func([]byte)) (func() error, error) {
	s := &memSub{deliver: deliver}
	b.mu.Lock()
	b.subs[topic] = append(b.subs[topic], s)
	b.mu.Unlock()
	return func() error {
		b.mu.Lock()
		list := b.subs[topic]
		for i, x := range list {
			if x == s {
				b.subs[topic] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		b.mu.Unlock()
		s.mu.Lock()
		s.done = true
		s.mu.Unlock()
		return nil
	}, nil
}

func (b *memBroker) State() ginws.BackplaneState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

func (b *memBroker) set(f func(b *memBroker)) {
	b.mu.Lock()
	f(b)
	b.mu.Unlock()
}

func (b *memBroker) published() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]byte(nil), b.log...)
}

// instance is one server of a cluster: /chat sends every text message to
// the /chat clients of all instances, /room joins the rooms in its query.
type instance struct {
	*testServer
	cl *ginws.Cluster
}

func newInstance(t *testing.T, bp ginws.Backplane, opts ...ginws.ClusterOption) *instance {
	t.Helper()
	in := &instance{}
	in.testServer = newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/chat", func(conn *ginws.Conn, c *gin.Context) error {
			for {
				typ, p, err := conn.ReadMessage(c)
				if err != nil {
					return err
				}
				if _, err := in.cl.Broadcast(ginws.ToRoute("/chat"), typ, p); err != nil {
					return err
				}
			}
		})
		s.Handle(r, "/room", roomHandler)
	}, ginws.SendQueue(1<<14)) // tests send without pacing
	cl, err := ginws.NewCluster(in.ws, bp, opts...)
	require.NoError(t, err)
	in.cl = cl
	t.Cleanup(func() {
		if cl.State() == ginws.BackplaneClosed {
			return // the test shut it down
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, cl.Shutdown(ctx))
	})
	return in
}

// text reads the next message and checks it is text.
func (c *client) text() string {
	c.t.Helper()
	op, p := c.readMessage()
	require.Equal(c.t, ws.OpText, op)
	return string(p)
}

// quiet checks nothing arrives for a while.
func (c *client) quiet(d time.Duration) {
	c.t.Helper()
	require.NoError(c.t, c.nc.SetReadDeadline(time.Now().Add(d)))
	var b [1]byte
	n, err := c.r.Read(b[:])
	require.Zero(c.t, n, "unexpected data")
	var ne interface{ Timeout() bool }
	require.True(c.t, errors.As(err, &ne) && ne.Timeout(), "want a timeout, got %v", err)
}

func waitLen(t *testing.T, s *ginws.Server, n int) {
	t.Helper()
	waitCount(t, s, ginws.ToAll(), n)
}

// waitCount waits until sel selects n connections of s: a connection is
// counted once upgraded, and in its rooms once its handler has joined them.
func waitCount(t *testing.T, s *ginws.Server, sel ginws.Selector, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return s.Count(sel) == n }, 5*time.Second, 5*time.Millisecond)
}

// TestClusterChat: three instances, two clients each; every message of
// every client reaches every client exactly once, and each sender's
// messages arrive in order everywhere.
func TestClusterChat(t *testing.T) {
	bp := newMemBroker()
	var insts []*instance
	var clients []*client
	for range 3 {
		in := newInstance(t, bp)
		insts = append(insts, in)
		for range 2 {
			clients = append(clients, dial(t, in.wsURL("/chat"), nil))
		}
		waitLen(t, in.ws, 2)
	}
	const perClient = 50
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			for j := range perClient {
				c.send(ws.OpText, fmt.Appendf(nil, "%d:%d", i, j))
			}
		})
	}
	wg.Wait()
	for ci, c := range clients {
		next := make([]int, len(clients))
		for range perClient * len(clients) {
			var from, seq int
			_, err := fmt.Sscanf(c.text(), "%d:%d", &from, &seq)
			require.NoError(t, err)
			require.Equal(t, next[from], seq, "client %d: sender %d out of order or duplicated", ci, from)
			next[from]++
		}
		c.quiet(50 * time.Millisecond) // nothing twice
	}
	total := uint64(perClient * len(clients))
	for i, in := range insts {
		own := uint64(2 * perClient)
		// The counters move after the deliveries the clients have seen
		// (Published after the broker returns, which is after it delivered).
		require.Eventually(t, func() bool {
			st := in.cl.Stats()
			return st.Received == total-own && st.Delivered == 2*(total-own) &&
				st.Published == own && st.Echoes == own
		}, 5*time.Second, 5*time.Millisecond, "instance %d: %+v", i, in.cl.Stats())
		st := in.cl.Stats()
		assert.Equal(t, own, st.Published, "instance %d", i)
		assert.Equal(t, own, st.Echoes, "instance %d: its own messages come back and are ignored", i)
		assert.Equal(t, total-own, st.Received, "instance %d", i)
		assert.Equal(t, 2*(total-own), st.Delivered, "instance %d", i)
		assert.Zero(t, st.Dropped+st.Failed+st.Stale+st.Missed+st.Invalid, "instance %d: %+v", i, st)
		assert.Equal(t, ginws.BackplaneConnected, in.cl.State())
		assert.Len(t, in.cl.ID(), 32)
	}
}

// TestClusterSelections: rooms, routes and all select on every instance;
// a Where selection is refused, not narrowed differently per instance.
func TestClusterSelections(t *testing.T) {
	bp := newMemBroker()
	a, b := newInstance(t, bp), newInstance(t, bp)
	redA := dial(t, a.wsURL("/room?room=red"), nil)
	blueB := dial(t, b.wsURL("/room?room=blue"), nil)
	redB := dial(t, b.wsURL("/room?room=red&room=blue"), nil)
	chatB := dial(t, b.wsURL("/chat"), nil)
	waitLen(t, a.ws, 1)
	waitLen(t, b.ws, 3)
	// The handlers join their rooms after the upgrade.
	waitCount(t, a.ws, ginws.ToRoom("red"), 1)
	waitCount(t, b.ws, ginws.ToRoom("red"), 1)
	waitCount(t, b.ws, ginws.ToRoom("blue"), 2)

	n, err := a.cl.Broadcast(ginws.ToRoom("red"), ginws.MessageText, []byte("to red"))
	require.NoError(t, err)
	assert.Equal(t, 1, n, "local count")
	assert.Equal(t, "to red", redA.text())
	assert.Equal(t, "to red", redB.text())

	_, err = a.cl.Broadcast(ginws.ToRoom("blue"), ginws.MessageBinary, []byte{0, 1, 2})
	require.NoError(t, err)
	op, p := blueB.readMessage()
	assert.Equal(t, ws.OpBinary, op)
	assert.Equal(t, []byte{0, 1, 2}, p)
	op, p = redB.readMessage()
	assert.Equal(t, ws.OpBinary, op)
	assert.Equal(t, []byte{0, 1, 2}, p)

	_, err = a.cl.Broadcast(ginws.ToRoute("/chat"), ginws.MessageText, []byte("to chat"))
	require.NoError(t, err)
	assert.Equal(t, "to chat", chatB.text())

	_, err = b.cl.Broadcast(ginws.ToAll(), ginws.MessageText, []byte("to all"))
	require.NoError(t, err)
	for _, c := range []*client{redA, blueB, redB, chatB} {
		assert.Equal(t, "to all", c.text())
	}

	n, err = a.cl.Broadcast(ginws.ToRoom("red").Where(func(*ginws.Conn) bool { return true }), ginws.MessageText, []byte("x"))
	require.ErrorIs(t, err, ginws.ErrLocalSelector)
	assert.Zero(t, n)
	n, err = a.cl.Broadcast(ginws.ToAll(), ginws.MessageType(9), []byte("x"))
	require.NoError(t, err)
	assert.Zero(t, n)
	for _, c := range []*client{redA, blueB, redB, chatB} {
		c.quiet(30 * time.Millisecond)
	}
	assert.Len(t, bp.published(), 4)
}

// TestClusterBrokerDown: while Publish fails, local delivery goes on and
// the failures are counted and reported; the other instance counts the
// gap when delivery resumes.
func TestClusterBrokerDown(t *testing.T) {
	bp := newMemBroker()
	var errs atomic.Int32
	a := newInstance(t, bp, ginws.ClusterErrorHandler(func(error) { errs.Add(1) }))
	b := newInstance(t, bp)
	ca, cb := dial(t, a.wsURL("/chat"), nil), dial(t, b.wsURL("/chat"), nil)
	waitLen(t, a.ws, 1)
	waitLen(t, b.ws, 1)

	ca.send(ws.OpText, []byte("before"))
	assert.Equal(t, "before", ca.text())
	assert.Equal(t, "before", cb.text())

	bp.set(func(b *memBroker) { b.fail = errors.New("broker down"); b.state = ginws.BackplaneReconnecting })
	assert.Equal(t, ginws.BackplaneReconnecting, a.cl.State())
	for i := range 3 {
		ca.send(ws.OpText, fmt.Appendf(nil, "outage %d", i))
		assert.Equal(t, fmt.Sprintf("outage %d", i), ca.text(), "local delivery does not need the broker")
	}
	// Failed is counted before the error handler is called.
	require.Eventually(t, func() bool { return a.cl.Stats().Failed == 3 && errs.Load() > 0 }, 5*time.Second, 5*time.Millisecond)
	cb.quiet(30 * time.Millisecond)

	bp.set(func(b *memBroker) { b.fail = nil; b.state = ginws.BackplaneConnected })
	ca.send(ws.OpText, []byte("after"))
	assert.Equal(t, "after", ca.text())
	assert.Equal(t, "after", cb.text())
	// The counters move after the delivery the client has seen.
	require.Eventually(t, func() bool { return b.cl.Stats().Received == 2 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, uint64(3), b.cl.Stats().Missed, "b saw the gap of a's failed messages")
}

// TestClusterQueueFull: a broker that does not answer never blocks
// Broadcast; past the queue, messages are dropped for the other
// instances and counted; the queued ones go out in order afterwards.
func TestClusterQueueFull(t *testing.T) {
	bp := newMemBroker()
	release := make(chan struct{})
	bp.set(func(b *memBroker) { b.block = release })
	a := newInstance(t, bp, ginws.ClusterQueue(4))
	b := newInstance(t, bp)
	cb := dial(t, b.wsURL("/chat"), nil)
	waitLen(t, b.ws, 1)

	const sent = 300
	start := time.Now()
	var full int
	for i := range sent {
		_, err := a.cl.Broadcast(ginws.ToRoute("/chat"), ginws.MessageText, fmt.Appendf(nil, "m%d", i))
		if errors.Is(err, ginws.ErrClusterQueueFull) {
			full++
		} else {
			require.NoError(t, err)
		}
	}
	assert.Less(t, time.Since(start), time.Second, "Broadcast must not wait for the broker")
	// At most one batch waits in the blocked Publish, four more in the queue.
	assert.Greater(t, full, 0)
	assert.LessOrEqual(t, sent-full, 4+128)
	assert.Equal(t, uint64(full), a.cl.Stats().Dropped)

	bp.set(func(b *memBroker) { b.block = nil })
	close(release)
	last := -1
	for range sent - full {
		var i int
		_, err := fmt.Sscanf(cb.text(), "m%d", &i)
		require.NoError(t, err)
		require.Greater(t, i, last, "in order")
		last = i
	}
	cb.quiet(30 * time.Millisecond)
}

// TestClusterStaleAndInvalid replays a's messages to b out of order,
// twice, and mixed with foreign bytes: b delivers each at most once, in
// order, and counts the rest.
func TestClusterStaleAndInvalid(t *testing.T) {
	recorder := newMemBroker()
	a := newInstance(t, recorder)
	for i := 1; i <= 4; i++ {
		_, err := a.cl.Broadcast(ginws.ToRoute("/chat"), ginws.MessageText, fmt.Appendf(nil, "m%d", i))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return len(recorder.published()) == 4 }, 5*time.Second, 5*time.Millisecond)
	m := recorder.published()

	bp := newMemBroker()
	var invalid atomic.Int32
	b := newInstance(t, bp, ginws.ClusterErrorHandler(func(err error) {
		if strings.Contains(err.Error(), "not a ginws cluster message") {
			invalid.Add(1)
		}
	}))
	cb := dial(t, b.wsURL("/chat"), nil)
	waitLen(t, b.ws, 1)
	for _, raw := range [][]byte{m[0], m[0], m[2], m[1], []byte("hello"), m[3][:10], m[3], m[2]} {
		bp.inject(ginws.DefaultClusterTopic, raw)
	}
	assert.Equal(t, "m1", cb.text())
	assert.Equal(t, "m3", cb.text())
	assert.Equal(t, "m4", cb.text())
	cb.quiet(30 * time.Millisecond)
	st := b.cl.Stats()
	assert.Equal(t, uint64(3), st.Received)
	assert.Equal(t, uint64(3), st.Stale, "m1 again, m2 after m3, m3 again")
	assert.Equal(t, uint64(1), st.Missed, "m2")
	assert.Equal(t, uint64(2), st.Invalid)
	assert.Equal(t, int32(2), invalid.Load())

	// The wire format: "gw", version, id (16), seq (8), kind, name length,
	// name, type, payload. Every damaged header is refused.
	fresh := append([]byte(nil), m[3]...)
	fresh[26]++ // a sequence number not delivered yet
	require.Equal(t, byte(1), fresh[27], "route")
	mutate := func(i int, v byte) []byte {
		b := append([]byte(nil), fresh...)
		b[i] = v
		return b
	}
	var bad [][]byte
	for n := range len(fresh) - len("m4") {
		bad = append(bad, fresh[:n]) // cut before the type byte ends
	}
	bad = append(bad,
		mutate(0, 'x'), mutate(2, 2), // magic, version
		append(append(append([]byte(nil), fresh[:19]...), make([]byte, 8)...), fresh[27:]...), // seq 0
		mutate(27, 7), mutate(28, 200), // kind, name length
		mutate(len(fresh)-3, 9), // type
	)
	for _, raw := range bad {
		bp.inject(ginws.DefaultClusterTopic, raw)
	}
	assert.Equal(t, uint64(2+len(bad)), b.cl.Stats().Invalid)
	bp.inject(ginws.DefaultClusterTopic, fresh)
	assert.Equal(t, "m4", cb.text(), "the undamaged one")
	cb.quiet(30 * time.Millisecond)
}

// TestClusterShutdown: queued messages are still published; afterwards
// Broadcast is local only, nothing more is received, State is closed.
func TestClusterShutdown(t *testing.T) {
	bp := newMemBroker()
	a, b := newInstance(t, bp), newInstance(t, bp)
	ca, cb := dial(t, a.wsURL("/chat"), nil), dial(t, b.wsURL("/chat"), nil)
	waitLen(t, a.ws, 1)
	waitLen(t, b.ws, 1)

	for i := range 100 {
		_, err := a.cl.Broadcast(ginws.ToRoute("/chat"), ginws.MessageText, fmt.Appendf(nil, "m%d", i))
		require.NoError(t, err)
	}
	require.NoError(t, a.cl.Shutdown(context.Background()))
	require.NoError(t, a.cl.Shutdown(context.Background()), "twice")
	assert.Equal(t, ginws.BackplaneClosed, a.cl.State())
	assert.Equal(t, uint64(100), a.cl.Stats().Published)
	for i := range 100 {
		want := fmt.Sprintf("m%d", i)
		assert.Equal(t, want, ca.text())
		assert.Equal(t, want, cb.text())
	}

	n, err := a.cl.Broadcast(ginws.ToRoute("/chat"), ginws.MessageText, []byte("local"))
	require.ErrorIs(t, err, ginws.ErrClusterClosed)
	assert.Equal(t, 1, n)
	assert.Equal(t, "local", ca.text())

	_, err = b.cl.Broadcast(ginws.ToRoute("/chat"), ginws.MessageText, []byte("from b"))
	require.NoError(t, err)
	assert.Equal(t, "from b", cb.text())
	ca.quiet(50 * time.Millisecond) // a unsubscribed
	cb.quiet(10 * time.Millisecond)
}

// TestClusterShutdownTimeout: a broker that hangs cannot hold Shutdown
// past its context; what was left is counted as dropped.
func TestClusterShutdownTimeout(t *testing.T) {
	bp := newMemBroker()
	block := make(chan struct{})
	defer close(block)
	bp.set(func(b *memBroker) { b.block = block })
	a := newInstance(t, bp)
	for range 10 {
		_, err := a.cl.Broadcast(ginws.ToAll(), ginws.MessageText, []byte("x"))
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, a.cl.Shutdown(ctx), context.DeadlineExceeded)
	// The Publish under way counts its messages when it returns.
	require.Eventually(t, func() bool { st := a.cl.Stats(); return st.Dropped+st.Failed == 10 }, 5*time.Second, 5*time.Millisecond)
	assert.Zero(t, a.cl.Stats().Published)
}

// stuckPublish is a memBroker whose Publish, once entered, waits for
// release whatever its context says, as nats.go's Publish does while its
// write to a broker that stopped reading blocks (up to its write timeout).
type stuckPublish struct {
	*memBroker
	entered, release chan struct{}
}

func (b *stuckPublish) Publish(context.Context, string, ...[]byte) error {
	b.entered <- struct{}{}
	<-b.release
	return errors.New("write timeout")
}

// TestClusterShutdownStuckPublish: a Publish that does not return when
// its context ends cannot hold Shutdown past its context; the queued
// messages are dropped at once, the stuck ones fail when it returns.
func TestClusterShutdownStuckPublish(t *testing.T) {
	bp := &stuckPublish{memBroker: newMemBroker(), entered: make(chan struct{}, 1), release: make(chan struct{})}
	var release sync.Once
	t.Cleanup(func() { release.Do(func() { close(bp.release) }) })
	cl, err := ginws.NewCluster(ginws.New(), bp)
	require.NoError(t, err)
	_, err = cl.Broadcast(ginws.ToAll(), ginws.MessageText, []byte("stuck"))
	require.NoError(t, err)
	<-bp.entered // the publisher is in Publish with that one
	for range 3 {
		_, err = cl.Broadcast(ginws.ToAll(), ginws.MessageText, []byte("queued"))
		require.NoError(t, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() { done <- cl.Shutdown(ctx) }()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown waits for a Publish past its context")
	}
	assert.Equal(t, ginws.BackplaneClosed, cl.State())
	assert.Equal(t, uint64(3), cl.Stats().Dropped, "the queued messages")
	release.Do(func() { close(bp.release) })
	require.Eventually(t, func() bool { return cl.Stats().Failed == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Zero(t, cl.Stats().Published)
}

// hangingUnsubscribe is a memBroker whose unsubscribe waits for release,
// as a real broker's does when the broker hangs.
type hangingUnsubscribe struct {
	*memBroker
	release, ended chan struct{}
}

func (b *hangingUnsubscribe) Subscribe(topic string, deliver func([]byte)) (func() error, error) {
	cancel, err := b.memBroker.Subscribe(topic, deliver)
	return func() error {
		defer close(b.ended)
		<-b.release
		return cancel()
	}, err
}

// TestClusterShutdownUnsubscribeTimeout: an unsubscribe that hangs cannot
// hold Shutdown past its context either, and nothing is delivered once
// Shutdown has returned.
func TestClusterShutdownUnsubscribeTimeout(t *testing.T) {
	bp := &hangingUnsubscribe{memBroker: newMemBroker(), release: make(chan struct{}), ended: make(chan struct{})}
	s := ginws.New()
	cl, err := ginws.NewCluster(s, bp)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cl.Shutdown(ctx) }()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown waits for the backplane past its context")
	}
	other, err := ginws.NewCluster(ginws.New(), bp.memBroker)
	require.NoError(t, err)
	_, err = other.Broadcast(ginws.ToAll(), ginws.MessageText, []byte("late"))
	require.NoError(t, err)
	require.NoError(t, other.Shutdown(context.Background()))
	assert.Zero(t, cl.Stats().Received, "delivered after Shutdown returned")
	close(bp.release)
	<-bp.ended
}

// TestClusterConcurrentPublishers: goroutines of several instances
// broadcast at once; each goroutine's messages reach a client of every
// instance exactly once and in order (run with -race).
func TestClusterConcurrentPublishers(t *testing.T) {
	bp := newMemBroker()
	insts := []*instance{newInstance(t, bp), newInstance(t, bp), newInstance(t, bp)}
	var clients []*client
	for _, in := range insts {
		clients = append(clients, dial(t, in.wsURL("/room?room=r"), nil))
		waitCount(t, in.ws, ginws.ToRoom("r"), 1)
	}
	const goroutines, each = 4, 200
	var wg sync.WaitGroup
	for i, in := range insts {
		for g := range goroutines {
			wg.Go(func() {
				for j := range each {
					_, err := in.cl.Broadcast(ginws.ToRoom("r"), ginws.MessageText, fmt.Appendf(nil, "%d/%d:%d", i, g, j))
					assert.NoError(t, err)
				}
			})
		}
	}
	for _, c := range clients {
		next := map[string]int{}
		for range len(insts) * goroutines * each {
			s := c.text()
			pub, seq, _ := strings.Cut(s, ":")
			require.Equal(t, fmt.Sprint(next[pub]), seq, "publisher %s", pub)
			next[pub]++
		}
		c.quiet(30 * time.Millisecond)
	}
	wg.Wait()
}

// failingSubscribe is a Backplane whose Subscribe fails.
type failingSubscribe struct{ *memBroker }

func (*failingSubscribe) Subscribe(string, func([]byte)) (func() error, error) {
	return nil, errors.New("no broker")
}

func TestNewClusterSubscribeError(t *testing.T) {
	_, err := ginws.NewCluster(ginws.New(), &failingSubscribe{newMemBroker()}, ginws.ClusterTopic("t"))
	require.ErrorContains(t, err, `cluster subscribe "t": no broker`)
	assert.Equal(t, "reconnecting", ginws.BackplaneReconnecting.String())
	assert.Equal(t, "BackplaneState(9)", ginws.BackplaneState(9).String())
}
