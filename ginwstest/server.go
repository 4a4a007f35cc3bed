package ginwstest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
)

// responseWriter is the http.ResponseWriter the handler is served with. It
// records a plain response (a rejected upgrade) and hands the server end
// of the in-memory connection to whoever hijacks it.
type responseWriter struct {
	nc       *pipeConn
	hijacked chan struct{} // closed by Hijack
	reqCtx   context.Context

	mu          sync.Mutex
	header      http.Header
	sent        http.Header // the header as it was when WriteHeader ran
	status      int
	wroteHeader bool
	body        bytes.Buffer
	isHijacked  bool
}

var (
	_ http.Hijacker = (*responseWriter)(nil)
	_ http.Flusher  = (*responseWriter)(nil)
)

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.isHijacked || w.wroteHeader || code < 200 {
		return // informational responses are not recorded
	}
	w.wroteHeader = true
	w.status = code
	w.sent = w.header.Clone()
}

func (w *responseWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	hijacked, wrote := w.isHijacked, w.wroteHeader
	w.mu.Unlock()
	if hijacked {
		return 0, http.ErrHijacked
	}
	if !wrote {
		w.WriteHeader(http.StatusOK)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.body.Write(p)
}

// Flush does nothing: a plain response is delivered when the handler
// returns.
func (w *responseWriter) Flush() {}

// CloseNotify is for gin's Context.Stream, which asks for it: the channel
// receives when the request's context ends.
func (w *responseWriter) CloseNotify() <-chan bool {
	ch := make(chan bool, 1)
	context.AfterFunc(w.reqCtx, func() { ch <- true })
	return ch
}

// Hijack hands over the server end of the in-memory connection.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.isHijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.wroteHeader {
		return nil, nil, errors.New("ginwstest: Hijack after the response header was written")
	}
	w.isHijacked = true
	close(w.hijacked)
	return w.nc, bufio.NewReadWriter(bufio.NewReader(w.nc), bufio.NewWriter(w.nc)), nil
}

// response is the recorded plain response, once the handler has returned
// without hijacking.
func (w *responseWriter) response(req *http.Request) *http.Response {
	w.mu.Lock()
	defer w.mu.Unlock()
	status, header := w.status, w.sent
	if !w.wroteHeader {
		status, header = http.StatusOK, w.header.Clone()
	}
	body := bytes.Clone(w.body.Bytes())
	if header == nil {
		header = make(http.Header)
	}
	if header.Get("Content-Length") == "" && len(body) > 0 {
		header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// serve runs the handler as net/http would for one request, in the
// goroutine it is called in. A panic is recovered (net/http does the same
// for each connection) and reported as err.
func serve(h http.Handler, w *responseWriter, req *http.Request) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				err = fmt.Errorf("ginwstest: handler aborted: %w", http.ErrAbortHandler)
			} else {
				err = &PanicError{Value: v, Stack: debug.Stack()}
			}
		}
	}()
	h.ServeHTTP(w, req)
	return nil
}

// PanicError is how Dial and Conn.Close report a panic that escaped the
// http.Handler (with gin, only when no Recovery middleware caught it; a
// panic in a ginws handler is caught by ginws and closes the connection
// with 1011). A panic with http.ErrAbortHandler, which net/http takes
// as a quiet abort, is reported as an error matching it instead.
type PanicError struct {
	Value any    // what the handler panicked with
	Stack []byte // the goroutine's stack at the panic
}

// Error describes the panic by its value.
func (e *PanicError) Error() string { return fmt.Sprintf("ginwstest: handler panic: %v", e.Value) }

// Unwrap returns Value when it is an error (panic(err)), for errors.Is
// and errors.As.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}
