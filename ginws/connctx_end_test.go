package ginws_test

import (
	"context"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// TestConnContextReportsTheEnd: Conn.Context ends only with the
// connection ("passing it to the read and write calls costs nothing: the
// end of the connection ends them anyway"), so a call passed it reports
// how the connection ended, as it would without a context, never
// context.Canceled. Calls used to: a write whose deadline passed, the read
// after it, a write that waited for the write lock while the connection
// ended, a read whose deadline passed in the middle of a message. A
// handler (or OnMessage) that returned such an error had it reported to
// the ErrorHandler as a failure, "context canceled", and its connection
// closed with 1011.
func TestConnContextReportsTheEnd(t *testing.T) {
	t.Run("own", func(t *testing.T) { testConnContextReportsTheEnd(t, false) })
	t.Run("derived", func(t *testing.T) { testConnContextReportsTheEnd(t, true) })
}

func testConnContextReportsTheEnd(t *testing.T, derived bool) {
	// run serves h on a route with an ErrorHandler that records what it
	// is given, dials it with dial, and returns, once the handler has
	// returned, the errors h sent and those reported.
	run := func(t *testing.T, h func(conn *ginws.Conn, ctx context.Context, errs chan<- error), dial func(url string), n int) ([]error, []error) {
		errs := make(chan error, n)
		reports := make(chan error, 1)
		s := ginws.New(ginws.ErrorHandler(func(err error, _ *ginws.Conn, _ *gin.Context) { reports <- err }))
		r := gin.New()
		s.Handle(r, "/h", func(conn *ginws.Conn, _ *gin.Context) error {
			ctx := conn.Context()
			if derived {
				// A context with a timeout, derived from the connection's
				// (the package doc offers both): the connection's end
				// cancels it, and that is no cancellation of the call.
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Minute)
				defer cancel()
			}
			h(conn, ctx, errs)
			_, _, err := conn.ReadMessage(conn.Context()) // the connection has ended
			return err
		})
		url := smallBufferServer(t, r, "/h")
		dial(url)
		var got []error
		for range n {
			got = append(got, waitFor(t, errs, 10*time.Second, "the handler's call"))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx)) // waits for the handler and its ErrorHandler
		close(reports)
		var reported []error
		for err := range reports {
			reported = append(reported, err)
		}
		return got, reported
	}
	notCanceled := func(t *testing.T, errs []error, reported []error) {
		t.Helper()
		for i, err := range errs {
			assert.Error(t, err, "call %d", i)
			assert.NotErrorIs(t, err, context.Canceled, "call %d", i)
			if i == 0 {
				assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "call %d: its deadline ended the connection", i)
			} else {
				assert.NotErrorIs(t, err, os.ErrDeadlineExceeded, "call %d: after the end, only the end", i)
			}
		}
		assert.Empty(t, reported, "the end of a connection is no failure of its handler")
	}

	t.Run("write deadline", func(t *testing.T) {
		errs, reported := run(t, func(conn *ginws.Conn, ctx context.Context, errs chan<- error) {
			_ = conn.SetWriteDeadline(time.Now().Add(-time.Second))
			errs <- conn.WriteMessage(ctx, ginws.MessageText, []byte("late"))
			_ = conn.SetWriteDeadline(time.Time{})
			_, _, err := conn.ReadMessage(ctx)
			errs <- err
		}, func(url string) {
			c := dial(t, url, nil)
			c.expectEOF()
		}, 2)
		for _, err := range errs {
			assert.ErrorIs(t, err, ginws.ErrClosed)
		}
		notCanceled(t, errs, reported)
	})

	t.Run("waiting for the write lock", func(t *testing.T) {
		started := make(chan struct{}) // the peer has the large message's header
		errs, reported := run(t, func(conn *ginws.Conn, ctx context.Context, errs chan<- error) {
			// A large message the peer does not read holds the write lock
			// until its write deadline drops the connection; the second
			// writer waits for the lock meanwhile.
			_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
			second := make(chan error, 1)
			go func() {
				select {
				case <-started: // the first write is under way
				case <-conn.Done():
				}
				second <- conn.WriteMessage(ctx, ginws.MessageText, []byte("behind"))
			}()
			errs <- conn.WriteMessage(context.Background(), ginws.MessageBinary, make([]byte, 8<<20))
			errs <- <-second
		}, func(url string) {
			c := dialSlowReader(t, url, 16<<10)
			t.Cleanup(func() { _ = c.nc.Close() })
			// Only the header (2 + 8 bytes for 8 MiB), then nothing. An
			// error means the connection ended first; the checks below
			// judge that.
			_, _ = io.ReadFull(c.r, make([]byte, 10))
			close(started)
		}, 2)
		for _, err := range errs {
			assert.ErrorIs(t, err, ginws.ErrClosed)
		}
		notCanceled(t, errs, reported)
	})

	t.Run("read deadline in a message", func(t *testing.T) {
		errs, reported := run(t, func(conn *ginws.Conn, ctx context.Context, errs chan<- error) {
			_, _, err := conn.ReadMessage(ctx) // "go"; half a message follows it
			if err != nil {
				errs <- err
				return
			}
			_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			_, _, err = conn.ReadMessage(ctx)
			errs <- err
		}, func(url string) {
			c := dial(t, url, nil)
			half := maskedFrame(true, ws.OpBinary, make([]byte, 1000))
			_, err := c.nc.Write(append(maskedFrame(true, ws.OpText, []byte("go")), half[:500]...))
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.nc.(*net.TCPConn).Close() })
		}, 1)
		notCanceled(t, errs, reported)
	})
}
