// Package nats is a ginws Backplane over NATS core publish/subscribe
// (github.com/nats-io/nats.go), in a module of its own so that ginws
// users who do not need it never download its dependencies.
//
//	bp, err := nats.New("nats://127.0.0.1:4222")
//	cl, err := ginws.NewCluster(ws, bp)
//	cl.Broadcast(ginws.ToRoom("lobby"), ginws.MessageText, msg)
//
// NATS core delivers at most once. The connection made by New retries
// forever (also when the server is down at start), every 250 ms with
// jitter, and subscribes again after a reconnect. While disconnected,
// nats.go keeps published messages in its reconnect buffer (8 MiB by
// default) and sends them after the reconnect: messages of an outage
// may arrive late rather than be lost; past the buffer, Publish fails.
// Subscribers that were cut off miss what was published meanwhile.
package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/ginws/ginws/ginws"
)

// ErrClosed is returned by Publish and Subscribe after Close.
var ErrClosed = errors.New("ginws nats backplane: closed")

// Option configures a Backplane.
type Option func(*config)

type config struct {
	onState func(ginws.BackplaneState)
	nats    []natsgo.Option
}

// OnStateChange calls f with every new state of the connection, from
// the backplane's goroutine: f must not block. It is called just after
// State reports the new state.
func OnStateChange(f func(ginws.BackplaneState)) Option {
	return func(c *config) { c.onState = f }
}

// NATSOptions are passed to nats.Connect by New after the backplane's
// own (retry forever, 250 ms reconnect wait), so they can override them.
func NATSOptions(opts ...natsgo.Option) Option {
	return func(c *config) { c.nats = append(c.nats, opts...) }
}

// Backplane is a ginws.Backplane and ginws.BackplaneStater over NATS.
// Safe for concurrent use.
type Backplane struct {
	nc    *natsgo.Conn
	owned bool
	cfg   config
	state atomic.Int32

	events chan natsgo.Status
	done   chan struct{}

	mu     sync.Mutex
	subs   map[*subscription]struct{}
	closed bool
}

type subscription struct {
	mu      sync.Mutex
	sub     *natsgo.Subscription
	deliver func([]byte)
	done    bool
}

// New connects to the NATS server(s) at url (a comma-separated list of
// nats:// URLs). It does not wait for a server: one that is down is
// retried in the background and reported by State.
func New(url string, opts ...Option) (*Backplane, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	nopts := append([]natsgo.Option{
		natsgo.Name("ginws"),
		natsgo.RetryOnFailedConnect(true),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(250 * time.Millisecond),
		natsgo.ReconnectJitter(100*time.Millisecond, time.Second),
		// A write to a broker that stopped reading blocks Publish (which
		// cannot take a context) until this timeout, nats.go's default a
		// minute: bound it like a Cluster's publish.
		natsgo.FlusherTimeout(ginws.DefaultClusterPublishTimeout),
		// Errors (a slow consumer) surface as gaps in ginws's counters.
		natsgo.ErrorHandler(func(*natsgo.Conn, *natsgo.Subscription, error) {}),
	}, cfg.nats...)
	nc, err := natsgo.Connect(url, nopts...)
	if err != nil {
		return nil, err
	}
	b := newBackplane(nc, cfg)
	b.owned = true
	return b, nil
}

// NewConn uses a connection the caller made (and closes: Close leaves it
// open). Give it natsgo.MaxReconnects(-1) so it never gives up.
func NewConn(nc *natsgo.Conn, opts ...Option) *Backplane {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	return newBackplane(nc, cfg)
}

func newBackplane(nc *natsgo.Conn, cfg config) *Backplane {
	b := &Backplane{
		nc:     nc,
		cfg:    cfg,
		events: nc.StatusChanged(),
		done:   make(chan struct{}),
		subs:   make(map[*subscription]struct{}),
	}
	b.update()
	go b.watch()
	return b
}

// watch follows the connection's status until Close.
func (b *Backplane) watch() {
	defer close(b.done)
	for range b.events {
		b.update()
	}
}

func (b *Backplane) update() {
	b.mu.Lock()
	defer b.mu.Unlock() // one update at a time, so callbacks come in order
	if b.closed {
		return
	}
	var s ginws.BackplaneState
	switch b.nc.Status() {
	case natsgo.CONNECTED, natsgo.DRAINING_SUBS, natsgo.DRAINING_PUBS:
		s = ginws.BackplaneConnected
	case natsgo.CLOSED:
		s = ginws.BackplaneClosed
	default: // CONNECTING, RECONNECTING, DISCONNECTED
		s = ginws.BackplaneReconnecting
		if b.State() == ginws.BackplaneConnecting { // never connected yet
			s = ginws.BackplaneConnecting
		}
	}
	b.setState(s)
}

func (b *Backplane) setState(s ginws.BackplaneState) {
	if old := ginws.BackplaneState(b.state.Swap(int32(s))); old != s && b.cfg.onState != nil {
		b.cfg.onState(s)
	}
}

// State is the state of the connection.
func (b *Backplane) State() ginws.BackplaneState { return ginws.BackplaneState(b.state.Load()) }

// defaultMaxPayload is nats-server's default max_payload, the limit
// Publish applies before it has learnt the server's: nats.go does not
// check a message it keeps for the first connect, and the server closes
// the connection of a client that sends one over its limit (for good:
// nats.go does not reconnect after that error).
const defaultMaxPayload = 1 << 20

// Publish sends msgs to subject topic, in order. It does not wait for
// the server: nats.go buffers and flushes in the background (and keeps
// the messages in its reconnect buffer while reconnecting). A write to
// a broker that does not read blocks until nats.go's FlusherTimeout (set
// by New to DefaultClusterPublishTimeout); the messages left when ctx
// ends are not sent.
func (b *Backplane) Publish(ctx context.Context, topic string, msgs ...[]byte) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return ErrClosed
	}
	limit := b.nc.MaxPayload() // 0 until the first connect
	if limit <= 0 {
		limit = defaultMaxPayload
	}
	var errs []error
	for i, m := range msgs {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("%d messages not sent: %w", len(msgs)-i, err))
			break
		}
		if int64(len(m)) > limit {
			errs = append(errs, fmt.Errorf("%w: %d bytes, server limit %d", natsgo.ErrMaxPayload, len(m), limit))
			continue
		}
		if err := b.nc.Publish(topic, m); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Subscribe calls deliver with every message on subject topic. While
// connected it returns once the server has the subscription; while the
// server is down it returns at once: nats.go subscribes on (re)connect.
func (b *Backplane) Subscribe(topic string, deliver func(msg []byte)) (func() error, error) {
	s := &subscription{deliver: deliver}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	sub, err := b.nc.Subscribe(topic, func(m *natsgo.Msg) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.done {
			s.deliver(m.Data)
		}
	})
	if err != nil {
		b.mu.Unlock()
		return nil, err
	}
	s.sub = sub
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	if b.nc.IsConnected() {
		// A round trip: the server has the subscription when Subscribe
		// returns. Offline, nats.go subscribes on (re)connect.
		_ = b.nc.FlushTimeout(5 * time.Second)
	}
	var once sync.Once
	var uerr error
	return func() error {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, s)
			b.mu.Unlock()
			uerr = sub.Unsubscribe()
			if errors.Is(uerr, natsgo.ErrConnectionClosed) || errors.Is(uerr, natsgo.ErrBadSubscription) {
				uerr = nil // gone with the connection
			}
			s.mu.Lock() // waits for a delivery in progress
			s.done = true
			s.mu.Unlock()
		})
		return uerr
	}, nil
}

// Close stops the subscriptions and, when New made the connection,
// closes it. Deliveries in progress finish first.
func (b *Backplane) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := b.subs
	b.subs = nil
	b.mu.Unlock()
	for s := range subs {
		_ = s.sub.Unsubscribe()
		s.mu.Lock()
		s.done = true
		s.mu.Unlock()
	}
	b.nc.RemoveStatusListener(b.events)
	<-b.done
	if b.owned {
		b.nc.Close()
	}
	b.setState(ginws.BackplaneClosed)
	return nil
}

var _ ginws.BackplaneStater = (*Backplane)(nil)
var _ ginws.Backplane = (*Backplane)(nil)
