package ginws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"

	"github.com/ginws/ginws/internal/frame"
	"github.com/ginws/ginws/internal/rbuf"
	"github.com/ginws/ginws/internal/stream"
)

// MessageType is the type of a data message.
type MessageType int

// Data message types.
const (
	MessageText   MessageType = MessageType(ws.OpText)
	MessageBinary MessageType = MessageType(ws.OpBinary)
)

// String returns "text" or "binary", and MessageType(n) for other values.
func (t MessageType) String() string {
	switch t {
	case MessageText:
		return "text"
	case MessageBinary:
		return "binary"
	}
	return fmt.Sprintf("MessageType(%d)", int(t))
}

// Conn is one WebSocket connection. It is two things at once:
//
//   - a message socket: ReadMessage, NextReader, WriteMessage, Ping,
//     CloseWith, the subprotocol and the addresses;
//   - an io.ReadWriteCloser byte stream over those messages (Read, Write,
//     Close), shaped by the ObjectMode and StreamText options.
//
// Concurrency: one goroutine may read (ReadMessage, NextReader, Read,
// WriteTo) at a time; any number may write (WriteMessage, Write, Ping,
// CloseWith, Close) concurrently with it and with each other: writes are
// serialised, each message goes out whole. Pings are answered and the
// close handshake is completed by ginws while the handler reads, and also
// while it only writes: when no read is in progress and the handler
// writes or closes, ginws reads control frames in a goroutine of its own
// until the next data message (which it leaves for the handler) or the
// next read call. That goroutine ends with the connection.
//
// When the handshake agreed on permessage-deflate (see Compression),
// every read call returns inflated bytes and writes from the threshold up
// go out compressed; nothing else changes (see SetCompression).
type Conn struct {
	srv    *Server
	cfg    *config
	nc     net.Conn
	br     *rbuf.Reader
	fr     frame.Reader
	st     atomic.Pointer[stream.Stream] // the byte stream, made by the first Read or Write
	proto  string
	values context.Context // the upgrade request's, without its cancellation

	// Conn.Context: functions registered through it (see connContext).
	afterMu sync.Mutex
	afters  map[*afterFunc]struct{}

	// Read side. rmu is held by whoever reads frames: a read call, the
	// control pump, or a closing Close.
	rmu         sync.Mutex
	rwait       atomic.Int32  // read calls waiting for rmu; the pump yields to them
	reading     atomic.Int32  // read calls in progress
	lastRead    atomic.Int64  // when the last read call returned: nanoseconds since epoch, monotonic
	pumpState   atomic.Uint32 // pumpOn: the pump runs; pumpRecheck: on the Server's recheck list
	pumpMu      sync.Mutex
	pumpStopped bool
	pending     bool  // the pump started a message the handler has not taken
	shardID     uint8 // the Server's shard that holds the connection
	pumpWG      sync.WaitGroup
	msg         *[]byte // pooled buffer behind the last ReadMessage
	rerr        error   // sticky read error
	rdl         deadline
	mr          messageReader

	// Write side.
	wl  writeLock
	wdl deadline
	dz  deflateState // permessage-deflate, when negotiated

	// A pong the reader could not send because a writer held the lock;
	// the writer sends it on release. The payload is in a pooled buffer
	// held only while the pong waits.
	ctrlMu   sync.Mutex
	pong     *[]byte
	pongWait atomic.Bool

	// Keepalive: a timer, not a goroutine.
	kaMu      sync.Mutex
	kaStopped bool
	kaBacklog bool // bytes waited in the send queue at the last check
	kaTimer   *time.Timer
	kaSeenIn  uint64
	kaWseq    uint64
	kaAcked   uint64        // bytes the peer had acknowledged at the last check
	kaAckWseq uint64        // wseq at the last check
	kaRecv    uint64        // bytes received from the peer at the last check behind a pending message
	wseq      atomic.Uint64 // incremented as each write starts and ends
	kaSeen    time.Duration // monotonic, since epoch

	// Tracking: set by Join/Set, read by selections.
	attrMu sync.Mutex
	attrs  map[string]any
	rooms  []string

	// Broadcast queue, drained by a goroutine that exists only while it
	// holds messages; allocated by the first broadcast that reaches the
	// connection (see queue).
	sq      atomic.Pointer[sendQueue]
	flushWG sync.WaitGroup

	// OnMessage, OnClose and the event-driven life after the handler.
	ev atomic.Pointer[events]

	// Closing.
	herr      error       // what the handler returned
	closeOut  bool        // a close frame is on the wire (or was tried); guarded by the write lock
	lingering atomic.Bool // failed: the TCP close waits for finish
	done      chan struct{}
	doneOnce  sync.Once
	errMu     sync.Mutex
	closeSent atomic.Bool // here, it fills the word errMu leaves: see TestConnSize
	cerr      error       // why the connection ended, for writes after the end
}

func newConn(s *Server, cfg *config, nc net.Conn, br *rbuf.Reader, proto string, dp deflateParams, c *gin.Context) *Conn {
	conn := &Conn{
		srv:   s,
		cfg:   cfg,
		nc:    nc,
		br:    br,
		proto: proto,
		done:  make(chan struct{}),
	}
	// WithoutCancel hides the request's cancellation from Value too, which
	// context.Cause and the derived contexts look up.
	conn.values = context.WithoutCancel(c.Request.Context())
	conn.fr.Reset(br)
	conn.fr.Limit = cfg.maxPayload
	conn.fr.OnControl = (*controller)(conn)
	if dp.on {
		conn.fr.RSV = frame.RSV1
		conn.fr.Inflate = true
		conn.fr.NoContextTakeover = dp.clientNoCtx
		conn.dz = deflateState{on: true, level: int8(dp.level), threshold: dp.threshold, takeover: dp.serverTakeover}
	}
	conn.rdl.c = conn
	conn.wdl.c = conn
	conn.wdl.flags.Store(dlWrite)
	conn.mr.c = conn
	return conn
}

// stream is the connection's byte stream (Read, Write), made at first use:
// handlers that exchange messages never pay for it.
func (c *Conn) stream() *stream.Stream {
	if s := c.st.Load(); s != nil {
		return s
	}
	s := stream.New((*streamSource)(c), (*streamSink)(c), c.cfg.objectMode, c.cfg.streamText)
	if c.st.CompareAndSwap(nil, s) {
		return s
	}
	return c.st.Load()
}

// Subprotocol is the subprotocol chosen in the handshake, or "".
func (c *Conn) Subprotocol() string { return c.proto }

// RemoteAddr is the address of the peer.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// LocalAddr is the local address of the connection.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// Context is done when the connection has ended; its Err is then
// context.Canceled. It carries the values of the upgrade request's
// context (not its cancellation: net/http cancels that when the handler
// of an event-driven connection returns). Passing it to the read and
// write calls costs nothing: the end of the connection ends them anyway,
// and they report how it ended, not context.Canceled, as do the calls
// passed a context derived from it that the end canceled.
func (c *Conn) Context() context.Context { return (*connContext)(c) }

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// SetReadDeadline bounds every read call, like net.Conn's. A ReadMessage,
// a WriteTo or an object-mode Read that times out in the middle of a
// message ends the connection, since the rest could not be told from a
// new message; the reader from NextReader, and Read outside object mode,
// go on where they stopped. Before a message has begun, the connection
// stays usable.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.rdl.setUser(t) }

// SetWriteDeadline bounds every write call, like net.Conn's. A write that
// times out ends the connection. The frames ginws writes itself
// (broadcasts, pings, pongs, close frames) have bounds of their own,
// which a call made while they are written leaves alone.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.wdl.setUser(t) }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

// PanicError is the error an ErrorHandler receives for a handler panic.
type PanicError struct {
	Value any
	Stack []byte
}

// Error says that the handler panicked, and with what value.
func (e *PanicError) Error() string { return fmt.Sprintf("ginws: handler panic: %v", e.Value) }

// end runs, deferred, when the handler has returned or panicked: errors go
// to the ErrorHandler and the connection is closed, unless the handler set
// OnMessage and returned nil. Deferring it keeps the handler one frame
// above the route's, so an idle connection's stack stays shallow.
func (c *Conn) end(gc *gin.Context) {
	err := c.herr
	if v := recover(); v != nil {
		err = &PanicError{Value: v, Stack: debug.Stack()}
	}
	if err == nil && c.handOff() {
		return
	}
	c.shutdown(err, gc)
}

func (c *Conn) callErrorHandler(eh func(error, *Conn, *gin.Context), err error, gc *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			logError(&PanicError{Value: v, Stack: debug.Stack()}, c, gc)
		}
	}()
	eh(err, c, gc)
}

// endedError reports errors that only say how the connection ended; a
// handler that returns one has not failed.
func endedError(err error) bool {
	return isType[*CloseError](err) || isType[*ProtocolError](err) || errors.Is(err, net.ErrClosed)
}

func logError(err error, c *Conn, gc *gin.Context) {
	where := "GET " + c.cfg.route // an event-driven connection's request is gone
	if gc != nil {
		where = gc.Request.Method + " " + gc.Request.URL.Path
	}
	if pe, ok := errors.AsType[*PanicError](err); ok {
		fmt.Fprintf(gin.DefaultErrorWriter, "[ginws] %s: %v\n%s\n", where, err, pe.Stack)
		return
	}
	fmt.Fprintf(gin.DefaultErrorWriter, "[ginws] %s: %v\n", where, err)
}

// finish closes what is still open and waits for the pump.
func (c *Conn) finish() {
	if c.lingering.Load() {
		c.rmu.Lock()
		c.lingerClose(c.endErr(), c.cfg.closeTimeout)
		c.rmu.Unlock()
	}
	_ = c.Close()
	c.stopKeepalive()
	c.pumpMu.Lock()
	c.pumpStopped = true
	c.pumpMu.Unlock()
	c.pumpWG.Wait()
	c.stopQueue()
	c.flushWG.Wait()
	c.rmu.Lock()
	c.releaseMsg()
	c.br.Release()
	if c.dz.on {
		c.fr.Release()
	}
	c.rmu.Unlock()
	if c.dz.takeover {
		c.wl.lock(context.Background(), nil) // the socket is closed: a holder lets go soon
		c.dz.release()
		c.wl.unlock()
	}
	c.rdl.stop()
	c.wdl.stop()
}

// markDone records why the connection ended (first reason wins), closes
// the socket and wakes everyone waiting.
func (c *Conn) markDone(cause error) {
	c.setCause(cause)
	c.doneOnce.Do(func() {
		c.srv.remove(c)
		_ = c.nc.Close()
		close(c.done)
		// Drop the deadlines' watches of contexts derived from the
		// connection's first: each would otherwise run, in a goroutine of
		// its own (context.AfterFunc), only to move a closed socket's
		// deadline.
		c.rdl.stop()
		c.wdl.stop()
		c.runAfterFuncs()
		c.wake() // an idle event-driven connection has nobody reading
	})
}

// setCause records why the connection is ending; the first cause wins.
func (c *Conn) setCause(cause error) {
	c.errMu.Lock()
	if c.cerr == nil {
		c.cerr = cause
	}
	c.errMu.Unlock()
}

// endErr is what calls return once the connection has ended. A deadline
// or timer that ended it (a write the peer did not take in time) is named
// in the text but left out of the chain: a timeout error from a read or
// write call means the call gave up and the connection may be usable
// (see the package doc), and a handler that goes on after one would spin
// on a dead connection.
func (c *Conn) endErr() error {
	c.errMu.Lock()
	cerr := c.cerr
	c.errMu.Unlock()
	return ending(cerr, false)
}

// closeErr is what OnClose is told: endErr, but a deadline or timer that
// ended the connection stays in the chain. OnClose hears the end once,
// after the handler, and is no loop that could spin on it; a hook that
// counts dropped or slow peers looks for exactly that timeout.
func (c *Conn) closeErr() error {
	c.errMu.Lock()
	cerr := c.cerr
	c.errMu.Unlock()
	return ending(cerr, true)
}

// ending is the error that tells of an end caused by cerr: the peer's
// *CloseError itself, otherwise ErrClosed wrapping cerr, with a timeout
// in the chain only when keepTimeout.
func ending(cerr error, keepTimeout bool) error {
	if ce, ok := errors.AsType[*CloseError](cerr); ok {
		return ce
	}
	if cerr == nil {
		return net.ErrClosed
	}
	if !keepTimeout && isTimeout(cerr) { // context.DeadlineExceeded is one too
		return fmt.Errorf("%w: %v", net.ErrClosed, cerr)
	}
	return fmt.Errorf("%w: %w", net.ErrClosed, cerr)
}

// endedBy reports whether err is the recorded cause of the end.
func (c *Conn) endedBy(err error) bool {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return errors.Is(c.cerr, err)
}

// callErr is what a call that ends early reports: its context's error
// when ctx ended (ctxErr), else how the connection ended.
func (c *Conn) callErr(ctx context.Context) error {
	if err := c.ctxErr(ctx); err != nil {
		return err
	}
	return c.endErr()
}

// ctxErr is ctx's error when ctx ended by itself: not the connection's
// own context (Context), which ends only with the connection, nor a
// context derived from it (a timeout on top, say) that the connection's
// end canceled. A call passed either reports that ending, as it would
// without a context: context.Canceled would say nothing of how the
// connection ended, and an ErrorHandler would take it for a failure of
// the handler. Callers that end the connection look before they do.
func (c *Conn) ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if err == nil || ctx.Done() == c.done || err == context.Canceled && c.isDone() {
		return nil
	}
	return err
}

// abort drops the TCP connection without a close handshake.
func (c *Conn) abort(cause error) { c.markDone(cause) }
