package ginws

import (
	"context"
	"errors"
	"io"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ginws/ginws/internal/rbuf"
)

// OnMessage makes the connection event-driven once the handler returns:
// instead of closing it, ginws keeps it open and calls f with each
// message, the way fastify-websocket's socket.on('message') does. The
// handler can read first (a login message, say), then set f and return.
//
// An event-driven connection has no goroutine while it waits: on Linux its
// socket is watched by the Server's poller (one epoll instance and one
// goroutine for all of them), and when bytes arrive a worker goroutine
// runs f for each message that has arrived, then moves on to other
// connections (a worker with nothing to do ends after a second). That
// saves the handler's goroutine stack (4 KiB or more) and the request's
// net/http and gin state, which a handler keeps alive as long as it runs;
// it costs a hop through the poller per burst of messages (see the
// README's "Event-driven connections"). Elsewhere, and for connections
// without a socket of their own (TLS, the ginwstest dialer), a goroutine
// per connection calls f instead; nothing else changes.
//
// Calls to f are one at a time and in order; p is valid until f returns.
// Pings are answered and the close handshake is completed between them.
// f may write, join rooms or close; a non-nil error from f, or a panic,
// goes to the ErrorHandler (with a nil *gin.Context: the request's has
// gone back to Gin) and closes the connection with 1011. Read calls are
// for the handler only, before it returns, and so is a read deadline: the
// hand-over clears it. A write deadline stays, since writes are still the
// application's: one set for a login exchange (SetDeadline) also bounds
// what f writes, until it is cleared. OnMessage must be called from the
// handler; a second call replaces f.
func (c *Conn) OnMessage(f func(conn *Conn, t MessageType, p []byte) error) {
	c.events().onMessage = f
}

// OnClose sets f to be called once the connection has ended, whether its
// handler returned or it was event-driven (see OnMessage), with the error
// that ended it: a *CloseError for a close frame from the peer or one sent
// by the server, otherwise an error matching ErrClosed (and also
// os.ErrDeadlineExceeded when a deadline ended it: a read that timed out
// in the middle of a message, a write the peer did not take in time,
// though the calls made after the end report no timeout). It must be called
// from the handler. f runs after the connection has left the Server, so
// Broadcast no longer reaches it.
func (c *Conn) OnClose(f func(conn *Conn, err error)) {
	c.events().onClose = f
}

// events is the part of a Conn that OnMessage and OnClose use; connections
// that use neither do without it.
type events struct {
	onMessage func(*Conn, MessageType, []byte) error
	onClose   func(*Conn, error)

	state  atomic.Int32 // evHandler, evIdle, evServing, evWoken or evEnded
	polled bool         // registered with the poller (else a goroutine reads)
	hup    atomic.Bool  // the poller reported the peer's end (FIN, RST): read to it

	// calling is set while onMessage runs: the connection is then like a
	// handler that is not reading, and the control pump may read its
	// pings, pongs and close for it (see pumpBarred).
	calling atomic.Bool
	id      uint32 // the poller's name for the connection (Linux)
}

const (
	evHandler = iota // the handler has the connection
	evIdle           // waiting in the poller, no goroutine
	evServing        // a goroutine reads and calls onMessage
	evWoken          // serving, and bytes (or the end) came since it last looked
	evEnded
)

func (c *Conn) events() *events {
	if ev := c.ev.Load(); ev != nil {
		return ev
	}
	ev := new(events)
	if !c.ev.CompareAndSwap(nil, ev) {
		return c.ev.Load()
	}
	return ev
}

// pumpBarred reports whether the handler has handed the connection over
// and no onMessage call is running: its reads are then the poller's and
// the workers', and the control pump must not start.
func (c *Conn) pumpBarred() bool {
	ev := c.ev.Load()
	return ev != nil && ev.state.Load() != evHandler && !ev.calling.Load()
}

// handOff takes the connection over from a handler that returned nil
// after OnMessage. It reports false when there is nothing to take over.
func (c *Conn) handOff() bool {
	ev := c.ev.Load()
	if ev == nil || ev.onMessage == nil || c.isDone() {
		return false
	}
	// Stop the control pump, and let go of the handler's contexts: the
	// request's is cancelled when the handler's goroutine ends.
	if err := c.beginRead(context.Background()); err != nil {
		c.endRead()
		return false
	}
	if !c.pending && c.fr.Open() {
		// The handler read part of a message (a prefix, say): the rest is
		// dropped, as a looping handler's next ReadMessage would drop it.
		if err := c.fr.Discard(); err != nil {
			_ = c.readErr(context.Background(), err, true)
			c.endRead()
			return false
		}
	}
	// The handler's read calls are over, and with them what its read
	// deadline bounded: left on the socket, a deadline that passes while
	// the connection waits in the poller would fail the next message's
	// read (1011), though nothing was waiting for it.
	_ = c.rdl.setUser(time.Time{})
	// Under pumpMu, so that no pump starts once the state has changed, and
	// the one running, kicked out of its read by beginRead, is waited for.
	c.pumpMu.Lock()
	ev.state.Store(evServing)
	c.pumpMu.Unlock()
	c.endRead()
	c.pumpWG.Wait()
	if c.lockWrite(context.Background()) == nil {
		_ = c.wdl.bind(context.Background(), nil)
		c.unlockWrite()
	}
	ev.polled = c.srv.poll.add(c)
	if !ev.polled {
		go c.serveEvents() // reads until the connection ends
		return true
	}
	// What arrived before the socket was watched is read here, on the
	// handler's goroutine, which ends soon after instead of starting one.
	c.serveEvents()
	return true
}

// wake starts a goroutine for an idle event-driven connection: the
// poller's report that bytes arrived, or the connection's end. For a
// connection being served it leaves a mark, so that its goroutine looks
// once more before it goes idle: the socket is watched edge-triggered,
// and a report that came while the goroutine was busy is not repeated.
func (c *Conn) wake() {
	ev := c.ev.Load()
	if ev == nil {
		return
	}
	for {
		switch ev.state.Load() {
		case evIdle:
			if ev.state.CompareAndSwap(evIdle, evServing) {
				c.srv.poll.serve(c)
				return
			}
		case evServing:
			if ev.state.CompareAndSwap(evServing, evWoken) {
				return
			}
		default: // evHandler, evWoken, evEnded: nothing to do
			return
		}
	}
}

var errIdle = errors.New("ginws: nothing to read")

// serveEvents reads what has arrived and hands each message to
// onMessage; when the socket has nothing more, it returns and the poller
// watches the socket again.
func (c *Conn) serveEvents() {
	ev := c.ev.Load()
	err, idle := c.pollEvents(ev)
	if idle {
		return
	}
	ev.state.Store(evEnded)
	c.shutdown(err, nil)
}

// pollEvents runs the messages that have arrived through onMessage. It
// reports idle when the connection went back to the poller, else the
// error that ends the connection.
func (c *Conn) pollEvents(ev *events) (err error, idle bool) {
	defer func() {
		if v := recover(); v != nil {
			err, idle = &PanicError{Value: v, Stack: debug.Stack()}, false
		}
	}()
	// A goroutine starts because the poller reported bytes (or the
	// handler handed over): the socket must be read before going idle.
	recheck := true
	for {
		err = c.nextEvent(ev, recheck)
		recheck = false
		if err == nil {
			continue
		}
		if err != errIdle {
			return err, false
		}
		// Nothing more to read: go idle, unless a report came meanwhile.
		if ev.state.CompareAndSwap(evServing, evIdle) {
			return nil, true
		}
		ev.state.Store(evServing) // evWoken: look again
		recheck = true
	}
}

// nextEvent handles the next frame: a control frame, or a data message
// for onMessage. With the poller, it returns errIdle instead of waiting
// for a frame to begin; recheck makes it read the socket to find out.
func (c *Conn) nextEvent(ev *events, recheck bool) error {
	if err := c.beginRead(context.Background()); err != nil {
		c.endRead()
		return err
	}
	// The last message's buffer goes back to its pool once onMessage has
	// returned, not when the next message comes: an idle connection holds
	// none, and the next message, of this connection or another, is read
	// into memory that is still in the cache.
	c.releaseMsg()
	if recheck {
		c.br.Undrain()
	}
	err := c.advanceEvent(ev)
	if err != nil || !c.pending {
		c.endRead()
		return err // or nil: a control frame, answered
	}
	t, p, err := c.readMessageLocked(context.Background())
	c.endRead()
	if err != nil {
		return err
	}
	// While f runs (a slow query, say), pings and pongs are read as for a
	// handler that is not reading: by the control pump, which a write or
	// the keepalive starts, and which the next beginRead stops.
	ev.calling.Store(true)
	err = ev.onMessage(c, t, p)
	ev.calling.Store(false)
	return err
}

// advanceEvent reads up to the start of the next message, answering
// control frames on the way; the caller holds the read lock, which
// failing the connection (readErr) needs too.
func (c *Conn) advanceEvent(ev *events) error {
	if c.pending {
		return nil
	}
	// Nothing of a frame has arrived: look without waiting. Once a frame
	// has begun, its reads wait for the rest (a frame cut by TCP always
	// gets its end soon, or the idle timeout drops the peer).
	if ev.polled && c.br.Buffered() == 0 {
		// The last read came back short: the socket was empty then, and
		// bytes that came since are reported by the poller (its watch is
		// edge-triggered, and every arrival is an edge). Reading now would
		// only find EAGAIN, one system call per message for nothing.
		// Not after the peer's end was reported, though: a short read
		// may leave a FIN behind it, and no report follows for it.
		if c.br.Drained() && !ev.hup.Load() {
			return errIdle
		}
		if err := c.br.TryFill(); err == rbuf.ErrWouldBlock {
			return errIdle
		} else if err != nil {
			return c.readErr(context.Background(), err, false)
		}
	}
	started, err := c.fr.Advance()
	if err != nil {
		return c.readErr(context.Background(), err, false)
	}
	c.pending = started
	return nil
}

// shutdown ends the connection once its handler has returned or its
// events are over: err (a handler's or onMessage's) goes to the
// ErrorHandler, the connection is closed and leaves the Server, and
// OnClose is called.
func (c *Conn) shutdown(err error, gc *gin.Context) {
	if err != nil && !endedError(err) && !c.streamEnded(err) {
		eh := c.cfg.errorHandler
		if eh == nil {
			eh = logError
		}
		c.callErrorHandler(eh, err, gc)
		_ = c.CloseWith(StatusInternalError, "internal error")
	}
	c.finish()
	ev := c.ev.Load()
	if ev != nil && ev.polled {
		c.srv.poll.remove(c)
	}
	// OnClose runs once the connection has left the Server, and before
	// Shutdown, which waits for the handlers, counts it as done.
	c.srv.remove(c)
	if ev != nil && ev.onClose != nil {
		c.callOnClose(ev.onClose)
	}
	c.srv.handlers.Done()
}

// streamEnded reports whether err is the io.EOF with which the byte
// stream reads the peer's normal close (see Read), handed on by a reader
// of the Conn (json.Decoder, say): like a *CloseError, it only tells how
// the connection ended. The connection has ended then, though not always
// for that close first (a write that failed as the peer left, say): its
// end is not looked at further. Another reader's io.EOF, returned while
// the connection is open, is a failure.
func (c *Conn) streamEnded(err error) bool {
	return errors.Is(err, io.EOF) && c.isDone()
}

func (c *Conn) callOnClose(f func(*Conn, error)) {
	defer func() {
		if v := recover(); v != nil {
			logError(&PanicError{Value: v, Stack: debug.Stack()}, c, nil)
		}
	}()
	f(c, c.closeErr())
}
