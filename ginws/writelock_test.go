package ginws

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWriteLockExclusion: writers that take the lock, some waiting and
// some giving up with their context, never hold it two at a time (the race
// detector watches the unguarded counter), and every one that waits is
// woken: the test ends.
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
					ctx, cancel = context.WithTimeout(context.Background(), time.Microsecond)
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
				held--
				l.unlock()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, writers*rounds, taken+gaveUp)
	assert.Zero(t, l.state.Load(), "free, and nobody counted as waiting")
}

// TestWriteLockWait: a writer waits for the holder and gets the lock when
// it is let go; one whose context or connection ends first gives up, and
// the token its wake-up left does not let anyone past a held lock.
func TestWriteLockWait(t *testing.T) {
	var l writeLock
	require.True(t, l.tryLock())
	assert.False(t, l.tryLock())
	assert.Nil(t, l.wake.Load(), "no channel until a writer waits")

	got := make(chan bool)
	go func() { got <- l.lock(context.Background(), nil) }()
	require.Eventually(t, func() bool { return l.state.Load() == wlHeld+wlWaiter }, 5*time.Second, time.Millisecond)
	l.unlock()
	assert.True(t, <-got)
	require.NotNil(t, l.wake.Load())

	// Held (by the writer above): a context that ends, then a connection.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	assert.False(t, l.lock(ctx, nil))
	done := make(chan struct{})
	close(done)
	assert.False(t, l.lock(context.Background(), done))
	assert.Equal(t, int32(wlHeld), l.state.Load())

	// A waiter gives up while its wake-up is under way: the token it
	// leaves only makes the next waiter try again.
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { got <- l.lock(ctx2, nil) }()
	require.Eventually(t, func() bool { return l.state.Load() == wlHeld+wlWaiter }, 5*time.Second, time.Millisecond)
	*l.wake.Load() <- struct{}{} // a stale token, as from an unlock racing the give-up
	cancel2()
	<-got // either outcome; the lock is still held by the first writer
	assert.False(t, l.tryLock())
	ctx3, cancel3 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel3()
	assert.False(t, l.lock(ctx3, nil), "a stale token does not pass a held lock")
	l.unlock()
	assert.True(t, l.tryLock())
	l.unlock()
	assert.Zero(t, l.state.Load())
}
