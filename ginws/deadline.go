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
// channel), so calls that keep passing the same context allocate nothing.
type deadline struct {
	c     *Conn // whose socket
	mu    sync.Mutex
	user  time.Time
	done  <-chan struct{}
	stopf func() bool
	gen   uint64
	moved atomic.Bool // the socket deadline differs from user
	write bool        // the write direction; the read one otherwise
}

// set moves the socket's deadline in d's direction.
func (d *deadline) set(t time.Time) error {
	if d.write {
		return d.c.nc.SetWriteDeadline(t)
	}
	return d.c.nc.SetReadDeadline(t)
}

func (d *deadline) setUser(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.user = t
	d.moved.Store(false)
	return d.set(t)
}

// bind makes ctx bound the calls that follow. A context whose Done is own
// (the connection's: its end closes the socket anyway) is not watched.
func (d *deadline) bind(ctx context.Context, own <-chan struct{}) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := ctx.Done()
	d.mu.Lock()
	defer d.mu.Unlock()
	if done == d.done && !d.moved.Load() {
		return nil
	}
	if d.stopf != nil {
		d.stopf()
		d.stopf = nil
	}
	d.gen++
	if d.moved.Swap(false) {
		_ = d.set(d.user)
	}
	d.done = done
	if done != nil && done != own {
		gen := d.gen
		d.stopf = context.AfterFunc(ctx, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.gen == gen {
				d.moved.Store(true)
				_ = d.set(aLongTimeAgo)
			}
		})
	}
	return nil
}

// override moves the socket deadline to t until the next bind or setUser.
func (d *deadline) override(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.moved.Store(true)
	_ = d.set(t)
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
}
