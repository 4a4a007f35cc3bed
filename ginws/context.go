package ginws

import (
	"context"
	"time"
)

// connContext is a Conn seen as its own context.Context (Conn.Context):
// done when the connection ends, with the values of the upgrade request's
// context. It is a conversion of the Conn, not an allocation (a
// context.WithCancel cost two per upgrade). It has the AfterFunc method
// that package context looks for, so a context derived from it, or a
// context.AfterFunc on it, is registered with the connection and told of
// its end without a goroutine waiting on Done.
type connContext Conn

// afterFunc is one function registered by connContext.AfterFunc.
type afterFunc struct{ f func() }

func (x *connContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (x *connContext) Done() <-chan struct{}       { return x.done }
func (x *connContext) Value(key any) any           { return x.values.Value(key) }
func (x *connContext) String() string              { return "ginws.Conn.Context" }

func (x *connContext) Err() error {
	if (*Conn)(x).isDone() {
		return context.Canceled
	}
	return nil
}

// AfterFunc registers f to be called once the connection has ended, in
// the goroutine that ends it; stop unregisters it and reports whether it
// had not run. Package context registers functions that cancel a derived
// context and return at once. When the connection has ended already, f
// runs in a goroutine of its own: package context holds the derived
// context's lock while it registers.
func (x *connContext) AfterFunc(f func()) (stop func() bool) {
	c := (*Conn)(x)
	c.afterMu.Lock()
	defer c.afterMu.Unlock()
	if c.isDone() {
		go f()
		return func() bool { return false }
	}
	a := &afterFunc{f: f}
	if c.afters == nil {
		c.afters = make(map[*afterFunc]struct{})
	}
	c.afters[a] = struct{}{}
	return func() bool {
		c.afterMu.Lock()
		defer c.afterMu.Unlock()
		_, waiting := c.afters[a]
		delete(c.afters, a)
		return waiting
	}
}

// runAfterFuncs calls the registered functions; done is closed already,
// so none can be added.
func (c *Conn) runAfterFuncs() {
	c.afterMu.Lock()
	afters := c.afters
	c.afters = nil
	c.afterMu.Unlock()
	for a := range afters {
		a.f()
	}
}
