// Package redis is a ginws Backplane over Redis pub/sub
// (github.com/redis/go-redis/v9), in a module of its own so that ginws
// users who do not need it never download its dependencies.
//
//	bp, err := redis.New("redis://127.0.0.1:6379")
//	cl, err := ginws.NewCluster(ws, bp)
//	cl.Broadcast(ginws.ToRoom("lobby"), ginws.MessageText, msg)
//
// Redis pub/sub delivers at most once: a message published while a
// subscriber is disconnected is lost for that subscriber. The backplane
// keeps one subscriber connection, reconnects it on its own with a
// capped backoff after a broker restart and subscribes again; it checks
// an idle connection with a PING every HealthCheck interval, so a broker
// that vanished without closing the connection is noticed too. Publish
// sends a batch in one pipeline on the client's connection pool.
package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ginws/ginws/ginws"
)

// Errors of Publish and Subscribe.
var (
	// ErrClosed: the backplane was closed.
	ErrClosed = errors.New("ginws redis backplane: closed")
	// ErrNotConnected: Publish while the connection to the broker is
	// known to be lost (State is BackplaneReconnecting). The messages
	// are not sent: nobody would receive them, and waiting for the
	// broker would hold the publisher.
	ErrNotConnected = errors.New("ginws redis backplane: not connected to the broker")
	// ErrMessageTooLarge: a message over MaxMessage is not published.
	ErrMessageTooLarge = errors.New("ginws redis backplane: message too large")
)

// Defaults of the options.
const (
	DefaultHealthCheck = 5 * time.Second
	// DefaultMaxMessage is half Redis's default hard limit of a pub/sub
	// client's output buffer (client-output-buffer-limit pubsub 32mb):
	// a message over that limit makes the server drop every subscriber.
	DefaultMaxMessage = 16 << 20
	minBackoff        = 50 * time.Millisecond
	maxBackoff        = time.Second
)

// Option configures a Backplane.
type Option func(*config)

type config struct {
	health  time.Duration
	maxMsg  int
	onState func(ginws.BackplaneState)
}

// HealthCheck sets how long the subscriber connection may stay silent
// before it is pinged; a ping not answered within another interval
// counts as a lost connection (DefaultHealthCheck when d <= 0).
func HealthCheck(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			d = DefaultHealthCheck
		}
		c.health = d
	}
}

// MaxMessage is the largest message Publish sends (DefaultMaxMessage
// when n <= 0); a larger one fails with ErrMessageTooLarge, the others
// of the call are sent. Keep it below the server's
// client-output-buffer-limit for pubsub clients: a message over that
// limit makes Redis disconnect every subscriber of the channel.
func MaxMessage(n int) Option {
	return func(c *config) {
		if n <= 0 {
			n = DefaultMaxMessage
		}
		c.maxMsg = n
	}
}

// OnStateChange calls f with every new state of the subscriber
// connection, from the backplane's goroutine: f must not block. It is
// called just after State reports the new state.
func OnStateChange(f func(ginws.BackplaneState)) Option {
	return func(c *config) { c.onState = f }
}

// Backplane is a ginws.Backplane and ginws.BackplaneStater over Redis
// pub/sub. Safe for concurrent use.
type Backplane struct {
	client goredis.UniversalClient
	owned  bool
	cfg    config
	state  atomic.Int32

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	ps      *goredis.PubSub
	subs    map[string][]*subscription
	confirm map[string][]chan struct{} // Subscribe calls waiting for the server's confirmation
	gates   map[string]*gate           // see lockTopic
	closed  bool
}

// gate orders a channel's SUBSCRIBE and UNSUBSCRIBE commands: the
// decision to send one (first subscription, last one gone) and the sending
// happen under its lock, so that they reach the server in the order the
// subscription list changed. n counts the holders and waiters.
type gate struct {
	mu sync.Mutex
	n  int
}

// lockTopic takes topic's gate and returns its unlock. Other channels'
// commands do not wait for it, which matters when the server is slow.
func (b *Backplane) lockTopic(topic string) (unlock func()) {
	b.mu.Lock()
	g := b.gates[topic]
	if g == nil {
		g = &gate{}
		b.gates[topic] = g
	}
	g.n++
	b.mu.Unlock()
	g.mu.Lock()
	return func() {
		g.mu.Unlock()
		b.mu.Lock()
		if g.n--; g.n == 0 {
			delete(b.gates, topic)
		}
		b.mu.Unlock()
	}
}

type subscription struct {
	mu      sync.Mutex
	deliver func([]byte)
	done    bool
}

// New connects to the Redis server at url (redis://[user:password@]host:port[/db],
// or rediss:// for TLS; see go-redis's ParseURL for the query options).
// It does not wait for the server: a server that is down is retried in
// the background and reported by State.
func New(url string, opts ...Option) (*Backplane, error) {
	o, err := goredis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	// Without it go-redis bounds its socket I/O by its own timeouts only,
	// and a Publish given a short context waits as long as they allow.
	o.ContextTimeoutEnabled = true
	// A connection being set up holds the subscriber's lock while go-redis
	// waits for the server's answer (HELLO), which a context cannot end:
	// with a broker that hangs, Close would wait for ReadTimeout. Every
	// connection of the client is closed when Close begins instead.
	ctx, cancel := context.WithCancel(context.Background())
	dial := goredis.NewDialer(o)
	o.Dialer = func(dctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		return closeOnDone(ctx, c), nil
	}
	b := newBackplane(ctx, cancel, goredis.NewClient(o), opts)
	b.owned = true
	return b, nil
}

// closeOnDone returns c, closed when ctx ends. It keeps c's SyscallConn
// (go-redis checks a pooled connection's socket through it) only when c
// has one: go-redis deliberately does not look under a TLS connection.
func closeOnDone(ctx context.Context, c net.Conn) net.Conn {
	w := doneConn{Conn: c, stop: context.AfterFunc(ctx, func() { _ = c.Close() })}
	if sc, ok := c.(syscall.Conn); ok {
		return &doneSysConn{doneConn: w, sc: sc}
	}
	return &w
}

type doneConn struct {
	net.Conn
	stop func() bool
}

func (c *doneConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// NetConn returns the connection c wraps.
func (c *doneConn) NetConn() net.Conn { return c.Conn }

type doneSysConn struct {
	doneConn
	sc syscall.Conn
}

func (c *doneSysConn) SyscallConn() (syscall.RawConn, error) { return c.sc.SyscallConn() }

// NewClient uses a go-redis client the caller made (and closes: Close
// leaves it open). One extra connection is taken for the subscriptions.
// Make the client with ContextTimeoutEnabled set in its options, or
// go-redis does not bound Publish by its context (nor a Cluster's
// publish timeout).
func NewClient(c goredis.UniversalClient, opts ...Option) *Backplane {
	ctx, cancel := context.WithCancel(context.Background())
	return newBackplane(ctx, cancel, c, opts)
}

// newBackplane starts a Backplane on c; Close calls cancel.
func newBackplane(ctx context.Context, cancel context.CancelFunc, c goredis.UniversalClient, opts []Option) *Backplane {
	cfg := config{health: DefaultHealthCheck, maxMsg: DefaultMaxMessage}
	for _, o := range opts {
		o(&cfg)
	}
	b := &Backplane{
		client:  c,
		cfg:     cfg,
		done:    make(chan struct{}),
		subs:    make(map[string][]*subscription),
		confirm: make(map[string][]chan struct{}),
		gates:   make(map[string]*gate),
	}
	b.ctx, b.cancel = ctx, cancel
	b.ps = c.Subscribe(b.ctx)
	go b.run()
	return b
}

// State is the state of the subscriber connection.
func (b *Backplane) State() ginws.BackplaneState { return ginws.BackplaneState(b.state.Load()) }

func (b *Backplane) setState(s ginws.BackplaneState) {
	if old := ginws.BackplaneState(b.state.Swap(int32(s))); old != s && b.cfg.onState != nil {
		b.cfg.onState(s)
	}
}

// lost records a lost connection: still connecting if it never was up.
func (b *Backplane) lost() {
	if b.State() != ginws.BackplaneConnecting {
		b.setState(ginws.BackplaneReconnecting)
	}
}

// Publish sends msgs to channel topic in one pipeline, in order. While
// the subscriber connection is down it fails at once with
// ErrNotConnected.
func (b *Backplane) Publish(ctx context.Context, topic string, msgs ...[]byte) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if b.State() == ginws.BackplaneReconnecting {
		return ErrNotConnected
	}
	var tooLarge error
	for i, m := range msgs {
		if len(m) <= b.cfg.maxMsg {
			continue
		}
		tooLarge = fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(m), b.cfg.maxMsg)
		keep := append([][]byte(nil), msgs[:i]...)
		for _, m := range msgs[i+1:] {
			if len(m) <= b.cfg.maxMsg {
				keep = append(keep, m)
			}
		}
		msgs = keep
		break
	}
	return errors.Join(tooLarge, b.publish(ctx, topic, msgs))
}

func (b *Backplane) publish(ctx context.Context, topic string, msgs [][]byte) error {
	switch len(msgs) {
	case 0:
		return nil
	case 1:
		return b.client.Publish(ctx, topic, msgs[0]).Err()
	}
	pipe := b.client.Pipeline()
	for _, m := range msgs {
		pipe.Publish(ctx, topic, m)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// Subscribe calls deliver with every message on channel topic. When
// the server is reachable it returns once the server has confirmed the
// subscription (or after the HealthCheck interval); when it is not, at
// once: the subscription is made whenever the subscriber connection is
// (re)established.
func (b *Backplane) Subscribe(topic string, deliver func(msg []byte)) (func() error, error) {
	s := &subscription{deliver: deliver}
	unlock := b.lockTopic(topic)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		unlock()
		return nil, ErrClosed
	}
	first := len(b.subs[topic]) == 0
	b.subs[topic] = append(b.subs[topic], s)
	ps := b.ps
	var confirmed chan struct{}
	if first || len(b.confirm[topic]) > 0 {
		// The first subscription, or one that comes while the first
		// waits: both wait for the server's confirmation.
		confirmed = make(chan struct{})
		b.confirm[topic] = append(b.confirm[topic], confirmed)
	}
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.health)
	defer cancel()
	sent := !first
	if first {
		// The channel is recorded even if the server is down, and
		// subscribed again on every reconnect.
		sent = ps.Subscribe(ctx, topic) == nil
		if !sent {
			b.dropConfirm(topic, confirmed) // none is coming before a reconnect
		}
	}
	unlock()
	if confirmed != nil && sent {
		select {
		case <-confirmed:
		case <-ctx.Done():
			b.dropConfirm(topic, confirmed)
		}
	}
	var once sync.Once
	return func() error {
		once.Do(func() { b.unsubscribe(topic, s) })
		return nil
	}, nil
}

// dropConfirm stops waiting for topic's confirmation on c, so that later
// subscriptions do not wait for one that is not coming.
func (b *Backplane) dropConfirm(topic string, c chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	list := slices.DeleteFunc(b.confirm[topic], func(x chan struct{}) bool { return x == c })
	if len(list) == 0 {
		delete(b.confirm, topic)
	} else {
		b.confirm[topic] = list
	}
}

func (b *Backplane) unsubscribe(topic string, s *subscription) {
	unlock := b.lockTopic(topic)
	b.mu.Lock()
	list := b.subs[topic]
	for i, x := range list {
		if x == s {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	last := len(list) == 0
	if last {
		delete(b.subs, topic)
	} else {
		b.subs[topic] = list
	}
	ps, closed := b.ps, b.closed
	b.mu.Unlock()
	if last && !closed {
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.health)
		_ = ps.Unsubscribe(ctx, topic)
		cancel()
	}
	unlock()
	s.mu.Lock() // waits for a delivery in progress
	s.done = true
	s.mu.Unlock()
}

func (b *Backplane) dispatch(topic string, msg []byte) {
	b.mu.Lock()
	list := b.subs[topic]
	b.mu.Unlock()
	for _, s := range list { // list is never modified in place
		s.mu.Lock()
		if !s.done {
			s.deliver(msg)
		}
		s.mu.Unlock()
	}
}

// run receives on the subscriber connection until Close. go-redis
// reconnects and subscribes again inside Receive after a connection error;
// run only paces the retries, pings an idle connection and replaces one
// that does not answer.
func (b *Backplane) run() {
	defer close(b.done)
	backoff := minBackoff
	retry := func() bool { // after a failure: report it, wait, go on unless closed
		b.lost()
		select {
		case <-time.After(backoff):
		case <-b.ctx.Done():
			return false
		}
		backoff = min(2*backoff, maxBackoff)
		return true
	}
	pinged := false
	probe := true // connect now, and learn the state without waiting for traffic
	for {
		b.mu.Lock()
		ps := b.ps
		b.mu.Unlock()
		if probe {
			// Connects and subscribes again if needed; the answer comes
			// after the subscriptions' and says the connection is ready.
			if err := ps.Ping(b.ctx); err != nil {
				if b.ctx.Err() != nil || !retry() {
					return
				}
				continue
			}
			probe = false
		}
		msg, err := ps.ReceiveTimeout(b.ctx, b.cfg.health)
		if b.ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if pinged { // no answer for a whole interval
					b.lost()
					b.renew()
					pinged, probe = false, true
					continue
				}
				pinged = ps.Ping(b.ctx) == nil
				continue
			}
			pinged, probe = false, true
			if !retry() {
				return
			}
			continue
		}
		backoff, pinged = minBackoff, false
		switch m := msg.(type) {
		case *goredis.Message:
			b.setState(ginws.BackplaneConnected)
			b.dispatch(m.Channel, []byte(m.Payload))
		case *goredis.Pong:
			// A ping goes out after the subscriptions on a new
			// connection: they are all in place.
			b.setState(ginws.BackplaneConnected)
		case *goredis.Subscription:
			if m.Kind == "subscribe" {
				b.confirmed(m.Channel)
			}
		}
	}
}

func (b *Backplane) confirmed(topic string) {
	b.mu.Lock()
	for _, c := range b.confirm[topic] {
		close(c)
	}
	delete(b.confirm, topic)
	b.mu.Unlock()
}

// renew replaces the subscriber connection with a new one, subscribed
// to the same channels.
func (b *Backplane) renew() {
	b.mu.Lock()
	old := b.ps
	topics := make([]string, 0, len(b.subs))
	for t := range b.subs {
		topics = append(topics, t)
	}
	b.ps = b.client.Subscribe(b.ctx)
	ps := b.ps
	b.mu.Unlock()
	_ = old.Close()
	if len(topics) > 0 {
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.health)
		_ = ps.Subscribe(ctx, topics...)
		cancel()
	}
}

// Close stops the subscriptions and, when New made the client, closes
// it. Deliveries in progress finish first. With a client from New it does
// not wait for a broker that hangs; with one from NewClient, a connection
// being set up to such a broker holds it up to the client's ReadTimeout.
func (b *Backplane) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	ps := b.ps
	var subs []*subscription
	for _, list := range b.subs {
		subs = append(subs, list...)
	}
	b.mu.Unlock()
	b.cancel()
	err := ps.Close()
	<-b.done
	for _, s := range subs {
		s.mu.Lock()
		s.done = true
		s.mu.Unlock()
	}
	b.setState(ginws.BackplaneClosed)
	if b.owned {
		err = errors.Join(err, b.client.Close())
	}
	return err
}

var _ ginws.BackplaneStater = (*Backplane)(nil)
var _ ginws.Backplane = (*Backplane)(nil)
