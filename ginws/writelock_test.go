package ginws

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWriteLockExclusion: writers that take the lock, some waiting and
// some giving up with their context (also as the lock is handed to them),
// never hold it two at a time (the race detector watches the unguarded
// counter), and every one that waits is woken: the test ends.
func TestWriteLockExclusion(t *testing.T) {
	var l writeLock
	var held, taken int // guarded by l
	const writers, rounds = 8, 2000
	var wg sync.WaitGroup
	var mu sync.Mutex
	gaveUp := 0
	for w := range writers {
		wg.Go(func() {
			for i := range rounds {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if (w+i)%7 == 0 {
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(i%50)*time.Microsecond)
				}
				ok := l.lock(ctx, nil)
				cancel()
				if !ok {
					mu.Lock()
					gaveUp++
					mu.Unlock()
					continue
				}
				held++
				if held != 1 {
					t.Errorf("%d writers hold the lock", held)
				}
				taken++
				runtime.Gosched() // let others queue up
				held--
				l.unlock()
			}
		})
	}
	ended := make(chan struct{})
	go func() { wg.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(time.Minute):
		t.Fatal("a writer waits for a lock nobody holds")
	}
	assert.Equal(t, writers*rounds, taken+gaveUp)
	assert.Zero(t, l.state.Load(), "free, nobody queued")
	if q := l.q.Load(); assert.NotNil(t, q, "writers had to wait") {
		assert.Empty(t, q.waiters)
	}
}

// TestWriteLockHandOff: a writer waits for the holder and is handed the
// lock when it is let go, before anyone who did not wait; writers that
// wait are served in turn; one whose context or connection ends first
// gives up and leaves the lock as it was.
func TestWriteLockHandOff(t *testing.T) {
	var l writeLock
	require.True(t, l.tryLock())
	assert.False(t, l.tryLock())
	assert.Nil(t, l.q.Load(), "no queue until a writer waits")

	waiting := func(n int) func() bool {
		return func() bool {
			q := l.q.Load()
			if q == nil {
				return false
			}
			q.mu.Lock()
			defer q.mu.Unlock()
			return len(q.waiters) == n
		}
	}
	order := make(chan int, 2)
	for i := range 2 {
		go func() {
			if l.lock(context.Background(), nil) {
				order <- i
			}
		}()
		require.Eventually(t, waiting(i+1), 5*time.Second, time.Millisecond)
	}
	assert.Equal(t, int32(wlHeld|wlQueued), l.state.Load())
	l.unlock()
	assert.False(t, l.tryLock(), "handed to the first writer waiting, not to whoever comes")
	assert.Equal(t, 0, <-order)
	assert.Equal(t, int32(wlHeld|wlQueued), l.state.Load(), "held by the first, the second still waits")
	l.unlock()
	assert.Equal(t, 1, <-order)
	assert.Equal(t, int32(wlHeld), l.state.Load(), "held by the second, nobody waits")

	// Held: a context that ends, then a connection.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	assert.False(t, l.lock(ctx, nil))
	done := make(chan struct{})
	close(done)
	assert.False(t, l.lock(context.Background(), done))
	assert.Equal(t, int32(wlHeld), l.state.Load())
	assert.True(t, waiting(0)())
	l.unlock()
	assert.Zero(t, l.state.Load())
	assert.True(t, l.tryLock())
	l.unlock()
}

// TestWriteLockGiveUpAsLetGo: the only waiter gives up while the holder
// lets go, in either order under the queue's lock; the lock ends free (or
// held by the waiter, when it saw the lock handed over before its context
// end).
func TestWriteLockGiveUpAsLetGo(t *testing.T) {
	for range 20 {
		var l writeLock
		require.True(t, l.tryLock())
		ctx, cancel := context.WithCancel(context.Background())
		gaveUp := make(chan bool)
		go func() { gaveUp <- !l.lock(ctx, nil) }()
		require.Eventually(t, func() bool { return l.state.Load() == wlHeld|wlQueued }, 5*time.Second, time.Millisecond)
		q := l.q.Load()
		q.mu.Lock() // both wait for it: the unlock past its compare-and-swap, the waiter in its give-up
		let := make(chan struct{})
		go func() { l.unlock(); close(let) }()
		cancel()
		time.Sleep(time.Millisecond)
		q.mu.Unlock()
		<-let
		if !<-gaveUp {
			l.unlock() // the waiter's
		}
		assert.Zero(t, l.state.Load())
		assert.Empty(t, q.waiters)
		assert.True(t, l.tryLock())
	}
}
