package ginws

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// aLongTimeAgo is a deadline that has already passed.
var aLongTimeAgo = time.Unix(1, 0)

// deadline binds one direction of the socket (read or write) to the user's
// deadline and to the context of the current call. The context is watched
// with one context.AfterFunc per distinct context (told apart by its Done
// channel), so calls that keep passing the same context allocate nothing,
// and calls whose context needs no watch, while nothing is watched, take
// no lock. The watch stays between calls but acts only during one: a
// context that ends after its call returned (the usual defer cancel())
// leaves the socket alone, and what a context moved during its call is put
// back when the call ends (release).
type deadline struct {
	c     *Conn // whose socket
	mu    sync.Mutex
	user  time.Time
	done  <-chan struct{}
	stopf func() bool
	gen   uint32
	flags atomic.Uint32 // dl* bits; changed only under mu
}

const (
	dlWrite    = 1 << iota // the write direction; the read one otherwise
	dlMoved                // the socket deadline differs from user
	dlWatching             // stopf watches a context
	dlFired                // the watched context ended during a call
	dlActive               // a bound call is in progress (what dlWatching watches for)
)

// setFlag sets or clears bits of flags; d.mu must be held.
func (d *deadline) setFlag(bits uint32, on bool) {
	f := d.flags.Load()
	if on {
		d.flags.Store(f | bits)
	} else {
		d.flags.Store(f &^ bits)
	}
}

// set moves the socket's deadline in d's direction.
func (d *deadline) set(t time.Time) error {
	if d.flags.Load()&dlWrite != 0 {
		return d.c.nc.SetWriteDeadline(t)
	}
	return d.c.nc.SetReadDeadline(t)
}

// setUser records the user's deadline and puts it on the socket. On the
// write side, a moved deadline belongs to a write of ginws's own (a
// broadcast flush, a ping, a close frame, bounded by override) or to a
// call whose context ended: the user's deadline would take that bound
// away (a cleared one left a flush to a peer that reads nothing blocked
// for good), so it waits for the next write call's bind, the only writes
// it bounds. A write call in progress has cleared the bit in its bind:
// that one is bounded at once, as net.Conn's pending writes are.
func (d *deadline) setUser(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.user = t
	if d.flags.Load()&(dlWrite|dlMoved) == dlWrite|dlMoved {
		return nil
	}
	d.setFlag(dlMoved, false)
	return d.set(t)
}

// bind makes ctx bound the calls that follow. A context whose Done is own
// (the connection's: its end closes the socket anyway) is not watched.
func (d *deadline) bind(ctx context.Context, own <-chan struct{}) error {
	if ctx.Err() != nil {
		return d.c.callErr(ctx)
	}
	done := ctx.Done()
	// Nothing to watch, and nothing watched or moved by an earlier call:
	// then d.done, whatever it holds, needs no watch either.
	if (done == nil || done == own) && d.flags.Load()&(dlMoved|dlWatching) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.flags.Load()
	if done == d.done && f&dlMoved == 0 {
		d.setFlag(dlActive, f&dlWatching != 0)
		// The context may have ended since it was looked at, its watch
		// finding no call to act on.
		if ctx.Err() != nil {
			d.setFlag(dlActive, false)
			return d.c.callErr(ctx)
		}
		return nil
	}
	if d.stopf != nil {
		d.stopf()
		d.stopf = nil
	}
	d.gen++
	if f&dlMoved != 0 {
		_ = d.set(d.user)
	}
	d.setFlag(dlMoved|dlWatching|dlFired|dlActive, false)
	d.done = done
	if done != nil && done != own {
		gen := d.gen
		d.stopf = context.AfterFunc(ctx, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.gen == gen && d.flags.Load()&dlActive != 0 {
				d.setFlag(dlMoved|dlFired, true)
				_ = d.set(aLongTimeAgo)
			}
		})
		d.setFlag(dlWatching|dlActive, true)
	}
	return nil
}

// release ends the call that bind began: the watch, if any, stops acting,
// and a deadline its context moved is put back.
func (d *deadline) release() {
	if d.flags.Load()&dlWatching == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.setFlag(dlActive, false)
	if d.flags.Load()&dlFired != 0 {
		d.setFlag(dlMoved|dlFired, false)
		_ = d.set(d.user)
	}
}

// override moves the socket deadline to t until the next bind or setUser.
func (d *deadline) override(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.setFlag(dlMoved, true)
	_ = d.set(t)
}

// lift clears the socket deadline for the control pump, which reads for
// no call: neither the user's deadline nor one an earlier call left moved
// (a kick, a context that ended before its call began) bounds it. The
// next bind or setUser puts the user's back.
func (d *deadline) lift() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.flags.Load()&dlMoved == 0 && d.user.IsZero() {
		return
	}
	d.setFlag(dlMoved, true)
	_ = d.set(time.Time{})
}

// stop releases the context watch.
func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopf != nil {
		d.stopf()
		d.stopf = nil
	}
	d.gen++
	d.done = nil
	d.setFlag(dlWatching, false)
}
