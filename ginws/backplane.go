package ginws

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Backplane carries broadcasts between the instances of an application
// (processes, each with its own Server) through a message broker. ginws
// defines the interface; adapters live in modules of their own, so an
// application that does not use them never downloads their dependencies:
// github.com/ginws/ginws/backplane/redis (Redis pub/sub) and
// github.com/ginws/ginws/backplane/nats (NATS core). A Cluster drives it.
type Backplane interface {
	// Publish hands msgs, in this order, to the broker for every
	// instance subscribed to topic. A Cluster calls it from one goroutine
	// at a time, with a context bounded by ClusterPublishTimeout. It must
	// not keep msgs after it returns. It returns nil when every message
	// was handed to the broker; an error when any may not have been.
	Publish(ctx context.Context, topic string, msgs ...[]byte) error

	// Subscribe calls deliver with every message published on topic, by
	// any instance (this one too, or not: a Cluster ignores its own), one
	// call at a time and in the order the broker delivers them, until
	// cancel is called; after cancel returns, deliver is not called
	// again. deliver must not keep msg after it returns. The subscription
	// survives broker restarts: the backplane reconnects and subscribes
	// again on its own, and Subscribe succeeds while the broker is down.
	Subscribe(topic string, deliver func(msg []byte)) (cancel func() error, err error)
}

// BackplaneState is the state of a backplane's connection to its broker.
type BackplaneState int32

// Backplane states.
const (
	// BackplaneConnecting: not connected yet since the backplane was made.
	BackplaneConnecting BackplaneState = iota
	// BackplaneConnected: connected and subscribed.
	BackplaneConnected
	// BackplaneReconnecting: the connection was lost; the backplane
	// retries on its own. Messages published meanwhile may be lost, local
	// delivery goes on.
	BackplaneReconnecting
	// BackplaneClosed: closed for good.
	BackplaneClosed
)

// String returns the state in lower case ("connected"), and
// BackplaneState(n) for other values.
func (s BackplaneState) String() string {
	switch s {
	case BackplaneConnecting:
		return "connecting"
	case BackplaneConnected:
		return "connected"
	case BackplaneReconnecting:
		return "reconnecting"
	case BackplaneClosed:
		return "closed"
	}
	return fmt.Sprintf("BackplaneState(%d)", int32(s))
}

// BackplaneStater is a Backplane that reports the state of its
// connection. Both adapters are.
type BackplaneStater interface {
	State() BackplaneState
}

// Errors of Cluster.Broadcast.
var (
	// ErrLocalSelector: a selection narrowed with Where cannot be sent to
	// other instances (a function does not travel). Nothing was sent.
	ErrLocalSelector = errors.New("ginws: a Where selection cannot be broadcast across instances")
	// ErrClusterQueueFull: the message was delivered locally but not
	// published, because ClusterQueue messages already wait for a slow
	// or unreachable broker. Counted in ClusterStats.Dropped.
	ErrClusterQueueFull = errors.New("ginws: cluster publish queue full: message not sent to other instances")
	// ErrClusterClosed: the Cluster was shut down; the message was
	// delivered locally only.
	ErrClusterClosed = errors.New("ginws: cluster shut down: message not sent to other instances")
)

// Defaults of the Cluster options.
const (
	DefaultClusterTopic          = "ginws"
	DefaultClusterQueue          = 4096
	DefaultClusterPublishTimeout = 5 * time.Second
)

// ClusterOption configures a Cluster.
type ClusterOption func(*clusterConfig)

type clusterConfig struct {
	topic   string
	queue   int
	timeout time.Duration
	onError func(error)
}

// ClusterTopic is the broker topic (Redis channel, NATS subject) the
// Cluster publishes on and subscribes to; every instance of one
// application must use the same (DefaultClusterTopic, "ginws", when
// empty). Different topics make separate clusters on one broker.
func ClusterTopic(name string) ClusterOption {
	return func(c *clusterConfig) {
		if name == "" {
			name = DefaultClusterTopic
		}
		c.topic = name
	}
}

// ClusterQueue bounds how many messages may wait to be published
// (DefaultClusterQueue when n <= 0). Past that, Broadcast still
// delivers locally but drops the message for the other instances,
// returns ErrClusterQueueFull and counts it in ClusterStats.Dropped:
// a slow or unreachable broker never blocks a handler.
func ClusterQueue(n int) ClusterOption {
	return func(c *clusterConfig) {
		if n <= 0 {
			n = DefaultClusterQueue
		}
		c.queue = n
	}
}

// ClusterPublishTimeout bounds one Backplane.Publish call
// (DefaultClusterPublishTimeout when d <= 0).
func ClusterPublishTimeout(d time.Duration) ClusterOption {
	return func(c *clusterConfig) {
		if d <= 0 {
			d = DefaultClusterPublishTimeout
		}
		c.timeout = d
	}
}

// ClusterErrorHandler receives the errors of Publish calls and a
// description of every message from the broker that is not a ginws
// cluster message. It runs in the Cluster's goroutines: it must not
// block. By default errors are only counted (ClusterStats).
func ClusterErrorHandler(f func(error)) ClusterOption {
	return func(c *clusterConfig) { c.onError = f }
}

// ClusterStats counts what a Cluster did since it was made. A counter
// moves just after what it counts: a client can read a delivered message
// before Received and Delivered count it.
type ClusterStats struct {
	Published uint64 // messages handed to the backplane
	Failed    uint64 // messages of Publish calls that returned an error: lost, or some of them delivered
	Dropped   uint64 // messages never published: the queue was full, or the Cluster shut down first
	Received  uint64 // messages from other instances delivered here
	Delivered uint64 // local connections those were queued to
	Echoes    uint64 // this instance's own messages back from the broker, ignored
	Stale     uint64 // ignored: a sequence number not above the last one delivered from that instance (a duplicate or a reordered message)
	Missed    uint64 // gaps in other instances' sequence numbers: their messages that never arrived here
	Invalid   uint64 // ignored: not a ginws cluster message
}

// Cluster spans a Server's broadcasts across instances through a
// Backplane. Cluster.Broadcast delivers to the selected connections of
// this instance at once, exactly like Server.Broadcast, and publishes the
// message; every other instance of the cluster delivers it to its own
// selected connections with the same encode-once broadcast.
//
// Topics are selections: ToAll(), ToRoute(path) and ToRoom(name) travel
// with the message and select on each instance (route paths and room
// names must mean the same on every instance). A selection narrowed by
// Where stays local: Broadcast refuses it with ErrLocalSelector.
//
// Delivery semantics:
//
//   - At most once. No message is delivered twice to a connection: the
//     publishing instance delivers to its own connections directly and
//     ignores its own message when the broker echoes it back (every
//     message carries the instance's random id); a message from another
//     instance is ignored unless its sequence number is above the last
//     one delivered from that instance, so a broker that redelivers
//     cannot cause duplicates either. Nothing received is published again:
//     no echo loops.
//   - Ordered per publisher: the messages of one goroutine's Broadcasts
//     reach each connection, on every instance, in the order they were
//     sent. Messages of different publishers may interleave differently
//     on different instances.
//   - Broker loss: the local delivery of Broadcast never waits for the
//     broker. Messages wait in a bounded queue (ClusterQueue) while the
//     backplane publishes; when it is full they are dropped for the other
//     instances and counted. Messages published while an instance is cut
//     off from the broker are lost for it (Redis) or, within the client's
//     reconnect buffer, delivered late (NATS); receivers count the gaps
//     in ClusterStats.Missed. The backplane reconnects and subscribes again
//     on its own (see State); delivery resumes with the next message.
type Cluster struct {
	srv *Server
	bp  Backplane
	cfg clusterConfig
	id  [idLen]byte

	// mu orders sequence numbers with the queue.
	mu     sync.Mutex
	seq    uint64
	queue  chan *[]byte
	closed bool

	pubCtx    context.Context
	pubCancel context.CancelFunc
	pubDone   chan struct{}

	unsubscribe func() error
	shutOnce    sync.Once
	shutErr     error
	stopped     atomic.Bool // Shutdown is unsubscribing: nothing more is delivered

	rmu       sync.Mutex
	peers     map[[idLen]byte]*peer
	lastPrune time.Time

	published, failed, dropped                        atomic.Uint64
	received, delivered, echoes, stale, missed, invld atomic.Uint64
}

type peer struct {
	last uint64
	seen time.Time
}

// NewCluster subscribes to the cluster topic through bp and returns the
// Cluster that broadcasts for s across instances. Use its Broadcast where
// a single instance would call s.Broadcast. The Backplane stays the
// caller's: Shutdown the Cluster, then close the backplane.
func NewCluster(s *Server, bp Backplane, opts ...ClusterOption) (*Cluster, error) {
	cfg := clusterConfig{topic: DefaultClusterTopic, queue: DefaultClusterQueue, timeout: DefaultClusterPublishTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	cl := &Cluster{
		srv:     s,
		bp:      bp,
		cfg:     cfg,
		queue:   make(chan *[]byte, cfg.queue),
		pubDone: make(chan struct{}),
		peers:   make(map[[idLen]byte]*peer),
	}
	if _, err := rand.Read(cl.id[:]); err != nil {
		return nil, err
	}
	unsub, err := bp.Subscribe(cfg.topic, cl.receive)
	if err != nil {
		return nil, fmt.Errorf("ginws: cluster subscribe %q: %w", cfg.topic, err)
	}
	cl.unsubscribe = unsub
	cl.pubCtx, cl.pubCancel = context.WithCancel(context.Background())
	go cl.publishLoop()
	return cl, nil
}

// ID is this instance's random id in the cluster, in hex.
func (cl *Cluster) ID() string { return hex.EncodeToString(cl.id[:]) }

// Server is the Server the Cluster broadcasts for.
func (cl *Cluster) Server() *Server { return cl.srv }

// State is the backplane's connection state when it reports one (see
// BackplaneStater), BackplaneConnected when it does not, and
// BackplaneClosed after Shutdown.
func (cl *Cluster) State() BackplaneState {
	cl.mu.Lock()
	closed := cl.closed
	cl.mu.Unlock()
	if closed {
		return BackplaneClosed
	}
	if st, ok := cl.bp.(BackplaneStater); ok {
		return st.State()
	}
	return BackplaneConnected
}

// Stats returns the Cluster's counters.
func (cl *Cluster) Stats() ClusterStats {
	return ClusterStats{
		Published: cl.published.Load(),
		Failed:    cl.failed.Load(),
		Dropped:   cl.dropped.Load(),
		Received:  cl.received.Load(),
		Delivered: cl.delivered.Load(),
		Echoes:    cl.echoes.Load(),
		Stale:     cl.stale.Load(),
		Missed:    cl.missed.Load(),
		Invalid:   cl.invld.Load(),
	}
}

// Broadcast sends one message to the selected connections of every
// instance. It queues the message to this instance's connections at
// once (see Server.Broadcast) and returns how many, then queues it for
// the backplane and returns without waiting for the broker. err is
// ErrLocalSelector (nothing sent), or ErrClusterQueueFull or
// ErrClusterClosed (sent to this instance only). p may be reused when
// Broadcast returns. Like Server.Broadcast, only text and binary
// messages are sent; other types return 0, nil.
func (cl *Cluster) Broadcast(sel Selector, t MessageType, p []byte) (n int, err error) {
	if sel.where != nil {
		return 0, ErrLocalSelector
	}
	if t != MessageText && t != MessageBinary {
		return 0, nil
	}
	n = cl.srv.Broadcast(sel, t, p)
	env := encodeEnvelope(cl.id, sel, t, p)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	switch {
	case cl.closed:
		err = ErrClusterClosed
	case len(cl.queue) == cap(cl.queue):
		err = ErrClusterQueueFull
	default:
		cl.seq++
		setSeq(*env, cl.seq)
		cl.queue <- env // never blocks: mu is held and there is room
		return n, nil
	}
	cl.dropped.Add(1)
	putEnvelope(env)
	return n, err
}

const maxBatch = 128

// publishLoop hands queued messages to the backplane, many per call,
// until Shutdown closes the queue.
func (cl *Cluster) publishLoop() {
	defer close(cl.pubDone)
	batch := make([]*[]byte, 0, maxBatch)
	msgs := make([][]byte, 0, maxBatch)
	for first := range cl.queue {
		batch = append(batch[:0], first)
	more:
		for len(batch) < maxBatch {
			select {
			case b, ok := <-cl.queue:
				if !ok {
					break more
				}
				batch = append(batch, b)
			default:
				break more
			}
		}
		msgs = msgs[:0]
		for _, b := range batch {
			msgs = append(msgs, *b)
		}
		if cl.pubCtx.Err() != nil {
			cl.dropped.Add(uint64(len(batch)))
		} else {
			ctx, cancel := context.WithTimeout(cl.pubCtx, cl.cfg.timeout)
			err := cl.bp.Publish(ctx, cl.cfg.topic, msgs...)
			cancel()
			if err != nil {
				cl.failed.Add(uint64(len(batch)))
				cl.reportError(fmt.Errorf("ginws: cluster publish of %d messages: %w", len(batch), err))
			} else {
				cl.published.Add(uint64(len(batch)))
			}
		}
		clear(msgs)
		for i, b := range batch {
			putEnvelope(b)
			batch[i] = nil
		}
	}
}

func (cl *Cluster) reportError(err error) {
	if cl.cfg.onError != nil {
		cl.cfg.onError(err)
	}
}

// receive is the backplane's deliver function.
func (cl *Cluster) receive(msg []byte) {
	if cl.stopped.Load() {
		return
	}
	e, err := decodeEnvelope(msg)
	if err != nil {
		cl.invld.Add(1)
		cl.reportError(err)
		return
	}
	if e.from == cl.id {
		cl.echoes.Add(1) // delivered locally by Broadcast already
		return
	}
	now := time.Now()
	cl.rmu.Lock()
	p := cl.peers[e.from]
	switch {
	case p == nil:
		p = &peer{}
		cl.peers[e.from] = p
	case e.seq <= p.last:
		cl.rmu.Unlock()
		cl.stale.Add(1)
		return
	case e.seq > p.last+1:
		cl.missed.Add(e.seq - p.last - 1)
	}
	p.last, p.seen = e.seq, now
	cl.prunePeersLocked(now)
	cl.rmu.Unlock()

	n := cl.srv.Broadcast(e.sel, e.typ, e.payload)
	cl.received.Add(1)
	cl.delivered.Add(uint64(n))
}

// peerTTL is how long the last sequence number of an instance that sends
// nothing is kept. Instances get a new id when they restart.
const peerTTL = 10 * time.Minute

func (cl *Cluster) prunePeersLocked(now time.Time) {
	if now.Sub(cl.lastPrune) < time.Minute {
		return
	}
	cl.lastPrune = now
	for id, p := range cl.peers {
		if now.Sub(p.seen) > peerTTL {
			delete(cl.peers, id)
		}
	}
}

// Shutdown stops publishing: Broadcast delivers locally only from then
// on. Messages already queued are still handed to the backplane until ctx
// ends (the rest are dropped and counted; a Publish call still under way
// then ends on its own, as the backplane's timeouts allow, and its
// messages are counted when it returns); then the Cluster stops
// delivering what arrives and unsubscribes, waiting for the backplane no
// longer than ctx either (an unsubscribe still under way then ends on its
// own too). It does not close the backplane. It returns ctx.Err() if ctx
// ended first, and is safe to call more than once.
func (cl *Cluster) Shutdown(ctx context.Context) error {
	cl.shutOnce.Do(func() {
		cl.mu.Lock()
		cl.closed = true
		close(cl.queue)
		cl.mu.Unlock()
		var err error
		select {
		case <-cl.pubDone:
		case <-ctx.Done():
			err = ctx.Err()
			cl.pubCancel()
			// A Publish under way ends on its own, as the backplane's
			// timeouts allow (a Backplane need not return when its
			// context ends: nats.go's blocked write does not); what still
			// waits in the queue is dropped here. The queue is closed:
			// this ends at once, sharing the rest with publishLoop.
			for env := range cl.queue {
				cl.dropped.Add(1)
				putEnvelope(env)
			}
		}
		cl.pubCancel()
		cl.stopped.Store(true)
		unsub := make(chan error, 1)
		go func() { unsub <- cl.unsubscribe() }()
		select {
		case uerr := <-unsub:
			err = errors.Join(err, uerr)
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
		}
		cl.shutErr = err
	})
	return cl.shutErr
}

// The envelope: what a Cluster publishes.
//
//	magic "gw", version 1
//	instance id (16 bytes)
//	sequence number (8 bytes, big endian), from 1, per instance
//	selection: kind (0 all, 1 route, 2 room), name length (uvarint), name
//	message type (1 text, 2 binary)
//	payload (the rest)
const (
	idLen           = 16
	envelopeVersion = 1
	seqAt           = 3 + idLen
	selAll          = 0
	selRoute        = 1
	selRoom         = 2
)

var envelopePool = sync.Pool{New: func() any { return new([]byte) }}

// encodeEnvelope builds the envelope with sequence number 0; setSeq sets it
// once the message has its place in the queue.
func encodeEnvelope(id [idLen]byte, sel Selector, t MessageType, p []byte) *[]byte {
	kind, name := byte(selAll), ""
	switch {
	case sel.byRoom:
		kind, name = selRoom, sel.room
	case sel.byRoute:
		kind, name = selRoute, sel.route
	}
	bp := envelopePool.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, 'g', 'w', envelopeVersion)
	b = append(b, id[:]...)
	b = binary.BigEndian.AppendUint64(b, 0)
	b = append(b, kind)
	b = binary.AppendUvarint(b, uint64(len(name)))
	b = append(b, name...)
	b = append(b, byte(t))
	b = append(b, p...)
	*bp = b
	return bp
}

func setSeq(env []byte, seq uint64) { binary.BigEndian.PutUint64(env[seqAt:], seq) }

func putEnvelope(bp *[]byte) {
	if cap(*bp) > 1<<20 {
		return // keep the pool to small buffers
	}
	*bp = (*bp)[:0]
	envelopePool.Put(bp)
}

type envelope struct {
	from    [idLen]byte
	seq     uint64
	sel     Selector
	typ     MessageType
	payload []byte
}

var errEnvelope = errors.New("ginws: cluster: message from the broker is not a ginws cluster message")

func decodeEnvelope(b []byte) (envelope, error) {
	var e envelope
	if len(b) < 3 || b[0] != 'g' || b[1] != 'w' {
		return e, errEnvelope
	}
	if b[2] != envelopeVersion {
		return e, fmt.Errorf("%w (version %d)", errEnvelope, b[2])
	}
	if len(b) < seqAt+8+1 {
		return e, errEnvelope
	}
	copy(e.from[:], b[3:])
	e.seq = binary.BigEndian.Uint64(b[seqAt:])
	if e.seq == 0 {
		return e, errEnvelope
	}
	b = b[seqAt+8:]
	kind := b[0]
	nameLen, n := binary.Uvarint(b[1:])
	if n <= 0 || nameLen > uint64(len(b)-1-n) {
		return e, errEnvelope
	}
	b = b[1+n:]
	name := string(b[:nameLen])
	b = b[nameLen:]
	switch kind {
	case selAll:
		e.sel = ToAll()
	case selRoute:
		e.sel = ToRoute(name)
	case selRoom:
		e.sel = ToRoom(name)
	default:
		return e, errEnvelope
	}
	if len(b) < 1 {
		return e, errEnvelope
	}
	e.typ = MessageType(b[0])
	if e.typ != MessageText && e.typ != MessageBinary {
		return e, errEnvelope
	}
	e.payload = b[1:]
	return e, nil
}
