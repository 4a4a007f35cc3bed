package conformance

// The case table's types, the helpers used to write rows, and the runner
// that plays one row against the server.

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Close codes used in expectations.
const (
	codeNormal      = 1000
	codeGoingAway   = 1001
	codeProtocol    = 1002
	codeInvalidData = 1007
	codeTooBig      = 1009

	// closeEmptyOr1000 expects the reply to a close frame with an empty
	// payload: a close frame with an empty payload or with code 1000.
	closeEmptyOr1000 = -1
)

// Default time limits of a row.
const (
	defaultRowTimeout = 10 * time.Second
	tcpCloseTimeout   = 5 * time.Second
)

// step is one thing the client does: wait, then write a frame (or raw bytes)
// in one or several TCP writes.
type step struct {
	pause time.Duration // before writing

	fr  *frame // encoded when written
	raw []byte // written as is when fr is nil

	// chunk, when > 0, splits the bytes into writes of that many bytes,
	// with gap between them ("chopped" sending). cuts instead gives the
	// offsets at which to split.
	chunk int
	cuts  []int
	gap   time.Duration
}

func (s step) String() string {
	var b strings.Builder
	if s.pause > 0 {
		fmt.Fprintf(&b, "pause %v; ", s.pause)
	}
	switch {
	case s.fr != nil:
		b.WriteString(s.fr.String())
	case s.raw != nil:
		fmt.Fprintf(&b, "%d raw bytes", len(s.raw))
	default:
		b.WriteString("nothing")
	}
	if s.chunk > 0 {
		fmt.Fprintf(&b, " in %d-byte writes", s.chunk)
	}
	if len(s.cuts) > 0 {
		fmt.Fprintf(&b, " split at %v", s.cuts)
	}
	return b.String()
}

// expectKind is the kind of one expected server event.
type expectKind int

const (
	expMessage expectKind = iota // one echoed message
	expPong                      // one pong
	// expPongRun: pongs for a burst of pings. RFC 6455 section 5.5.3 lets
	// an endpoint that is behind answer only the most recent ping, so the
	// pongs must be an ordered subsequence of the pings' payloads that ends
	// with the last one.
	expPongRun
)

type expect struct {
	kind    expectKind
	op      byte
	payload []byte
	run     [][]byte
}

func (e expect) String() string {
	switch e.kind {
	case expMessage:
		return fmt.Sprintf("echo: %s message of %d bytes %s", opName(e.op), len(e.payload), preview(e.payload))
	case expPong:
		return fmt.Sprintf("pong %s", preview(e.payload))
	case expPongRun:
		return fmt.Sprintf("pongs for %d pings", len(e.run))
	}
	return "?"
}

// caseRow is one conformance case. After writing send, the client expects
// the events of want in order, then a close frame with code close, then the
// end of the TCP connection (within tcpCloseTimeout), and nothing else.
//
// close == 0 means the case ends cleanly: the runner appends a close frame
// with code 1000 to send and expects 1000 back. A row whose send already
// holds a close frame states the code it expects echoed.
type caseRow struct {
	id   string
	desc string

	send  []step
	want  []expect
	close int

	// orFail, if non-zero, is an accepted alternative outcome: instead of
	// the expected events the server fails the connection with this code.
	// Used where RFC 6455 leaves the receiver's behaviour open.
	orFail int

	timeout time.Duration // default defaultRowTimeout

	// build, if set, fills send and want when the row runs, so that large
	// payloads are only allocated while needed.
	build func(r *caseRow)
}

func (r caseRow) name() string {
	d := strings.NewReplacer(" ", "_", "/", "-", ",", "", "(", "", ")", "", "'", "", "\"", "").Replace(r.desc)
	return r.id + "_" + d
}

// section is one group of rows, named after an Autobahn testsuite section.
type section struct {
	name string
	rows []caseRow
}

// ---- helpers for writing rows ----

func S(steps ...step) []step       { return steps }
func W(expects ...expect) []expect { return expects }

// f writes a frame in one TCP write.
func f(fr frame) step { return step{fr: &fr} }

// chopped writes a frame (header included) in writes of n bytes with gap
// between them.
func chopped(fr frame, n int, gap time.Duration) step { return step{fr: &fr, chunk: n, gap: gap} }

// splitAt writes a frame in several writes, cut at the given offsets.
func splitAt(fr frame, gap time.Duration, cuts ...int) step {
	return step{fr: &fr, cuts: cuts, gap: gap}
}

// raw writes the given bytes in one TCP write.
func raw(b []byte) step { return step{raw: b} }

// rawFrames writes several frames in a single TCP write.
func rawFrames(frs ...frame) step {
	var b []byte
	for _, fr := range frs {
		b = append(b, fr.encode()...)
	}
	return raw(b)
}

// after delays a step.
func after(d time.Duration, s step) step { s.pause = d; return s }

func txt(s string) frame      { return frame{fin: true, op: opText, payload: []byte(s)} }
func txtB(b []byte) frame     { return frame{fin: true, op: opText, payload: b} }
func bin(b []byte) frame      { return frame{fin: true, op: opBinary, payload: b} }
func ping(b []byte) frame     { return frame{fin: true, op: opPing, payload: b} }
func pong(b []byte) frame     { return frame{fin: true, op: opPong, payload: b} }
func closeRaw(p []byte) frame { return frame{fin: true, op: opClose, payload: p} }
func closeF(code int, reason string) frame {
	return closeRaw(closePayload(code, reason))
}
func fragment(op byte, p []byte, fin bool) frame { return frame{fin: fin, op: op, payload: p} }

func echoText(s string) expect    { return expect{kind: expMessage, op: opText, payload: []byte(s)} }
func echoTextB(b []byte) expect   { return expect{kind: expMessage, op: opText, payload: b} }
func echoBin(b []byte) expect     { return expect{kind: expMessage, op: opBinary, payload: b} }
func pongOf(b []byte) expect      { return expect{kind: expPong, payload: b} }
func pongRun(ps ...[]byte) expect { return expect{kind: expPongRun, run: ps} }

// ---- the runner ----

// runRow plays r against the server at addr.
func runRow(t *testing.T, addr string, r caseRow) {
	t.Helper()
	if r.build != nil {
		r.build(&r)
	}
	timeout := r.timeout
	if timeout == 0 {
		timeout = defaultRowTimeout
	}
	steps := r.send
	wantClose := r.close
	if wantClose == 0 {
		steps = append(steps[:len(steps):len(steps)], f(closeF(codeNormal, "")))
		wantClose = codeNormal
	}

	c, err := dialWS(addr, "/echo", 5*time.Second)
	if err != nil {
		t.Fatalf("opening handshake: %v", err)
	}
	deadline := time.Now().Add(timeout)
	_ = c.nc.SetDeadline(deadline)

	stop := make(chan struct{})
	writeDone := make(chan error, 1)
	go func() { writeDone <- writeSteps(c, steps, stop) }()
	var writeErr error
	writerFinished := false
	defer func() {
		close(stop)
		c.Close()
		if !writerFinished {
			<-writeDone
		}
	}()
	// fail reports a failure, mentioning the writer's state, which often
	// explains it (e.g. the server closed while we were still sending).
	fail := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		select {
		case writeErr = <-writeDone:
			writerFinished = true
		default:
		}
		if writerFinished && writeErr != nil {
			msg += fmt.Sprintf(" (client write error: %v)", writeErr)
		} else if !writerFinished {
			msg += " (client was still sending)"
		}
		t.Fatal(msg)
	}

	failedEarly := false
	for i, w := range r.want {
		if i == 0 && r.orFail != 0 {
			e, err := readEventSkippingPings(c)
			if err != nil {
				fail("waiting for %s: %v", w, describeReadErr(err, timeout))
			}
			c.unread(e)
			if e.kind == evClose && e.hasCode && e.code == r.orFail {
				t.Logf("server took the allowed alternative: failed the connection with %d", r.orFail)
				failedEarly = true
				wantClose = r.orFail
				break
			}
		}
		if err := matchExpect(c, w); err != nil {
			fail("expectation %d of %d (%s): %v", i+1, len(r.want), w, describeReadErr(err, timeout))
		}
	}
	cw := closeWantFor(wantClose)
	if !failedEarly && len(r.want) == 0 && r.orFail != 0 {
		cw.codes = append(cw.codes, r.orFail)
	}

	e, err := readEventSkippingPings(c)
	if err != nil {
		fail("waiting for %s: %v", cw, describeReadErr(err, timeout))
	}
	if err := cw.match(e); err != nil {
		fail("%v", err)
	}
	if err := c.awaitTCPClose(tcpCloseTimeout); err != nil {
		fail("after the close frame: %v", err)
	}
}

// closeWant is the set of acceptable close frames.
type closeWant struct {
	codes   []int
	emptyOK bool // a close frame with an empty payload is acceptable
}

func closeWantFor(code int) closeWant {
	if code == closeEmptyOr1000 {
		return closeWant{codes: []int{codeNormal}, emptyOK: true}
	}
	return closeWant{codes: []int{code}}
}

func (w closeWant) String() string {
	var parts []string
	if w.emptyOK {
		parts = append(parts, "empty")
	}
	for _, c := range w.codes {
		parts = append(parts, fmt.Sprint(c))
	}
	return "close frame (" + strings.Join(parts, " or ") + ")"
}

func (w closeWant) match(e event) error {
	if e.kind == evClose {
		if !e.hasCode && w.emptyOK {
			return nil
		}
		for _, c := range w.codes {
			if e.hasCode && e.code == c {
				return nil
			}
		}
	}
	return fmt.Errorf("want %s, got %s", w, e)
}

// readEventSkippingPings reads the next event; pings the server sends on
// its own (keep-alive) are skipped, since the echo contract allows them.
func readEventSkippingPings(c *wsConn) (event, error) {
	for {
		e, err := c.readEvent()
		if err != nil || e.kind != evPing {
			return e, err
		}
	}
}

func matchExpect(c *wsConn, w expect) error {
	switch w.kind {
	case expMessage:
		e, err := readEventSkippingPings(c)
		if err != nil {
			return err
		}
		if e.kind != evMessage {
			return fmt.Errorf("got %s", e)
		}
		if e.op != w.op || !equalPayload(e.payload, w.payload) {
			return fmt.Errorf("got %s%s", e, diffHint(w.payload, e.payload))
		}
	case expPong:
		e, err := readEventSkippingPings(c)
		if err != nil {
			return err
		}
		if e.kind != evPong || !equalPayload(e.payload, w.payload) {
			return fmt.Errorf("got %s", e)
		}
	case expPongRun:
		next := 0
		for next < len(w.run) {
			e, err := readEventSkippingPings(c)
			if err != nil {
				return fmt.Errorf("after %d of the pongs: %w", next, err)
			}
			if e.kind != evPong {
				return fmt.Errorf("got %s before the pong for the last ping", e)
			}
			j := next
			for j < len(w.run) && !equalPayload(w.run[j], e.payload) {
				j++
			}
			if j == len(w.run) {
				return fmt.Errorf("got %s, which answers none of the outstanding pings", e)
			}
			next = j + 1
		}
	}
	return nil
}

func diffHint(want, got []byte) string {
	if len(want) != len(got) {
		return fmt.Sprintf(" (want %d bytes)", len(want))
	}
	for i := range want {
		if want[i] != got[i] {
			return fmt.Sprintf(" (first difference at byte %d)", i)
		}
	}
	return ""
}

func describeReadErr(err error, limit time.Duration) error {
	if isTimeout(err) {
		return fmt.Errorf("nothing received within the row's time limit of %v", limit)
	}
	var pe *protocolError
	switch {
	case errors.As(err, &pe):
		return err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("the server closed the TCP connection without sending a close frame")
	case errors.Is(err, syscall.ECONNRESET):
		return errors.New("the server reset the TCP connection without sending a close frame")
	}
	return fmt.Errorf("read: %w", err)
}

var errStopped = errors.New("stopped")

// writeSteps performs the row's writes; it returns early when stop closes.
func writeSteps(c *wsConn, steps []step, stop <-chan struct{}) error {
	sleep := func(d time.Duration) bool {
		if d <= 0 {
			return true
		}
		tm := time.NewTimer(d)
		defer tm.Stop()
		select {
		case <-tm.C:
			return true
		case <-stop:
			return false
		}
	}
	for _, s := range steps {
		if !sleep(s.pause) {
			return errStopped
		}
		data := s.raw
		if s.fr != nil {
			data = s.fr.encode()
		}
		if len(data) == 0 {
			continue
		}
		var pieces [][]byte
		switch {
		case s.chunk > 0:
			for off := 0; off < len(data); off += s.chunk {
				pieces = append(pieces, data[off:min(off+s.chunk, len(data))])
			}
		case len(s.cuts) > 0:
			prev := 0
			for _, cut := range s.cuts {
				if cut > prev && cut < len(data) {
					pieces = append(pieces, data[prev:cut])
					prev = cut
				}
			}
			pieces = append(pieces, data[prev:])
		default:
			pieces = [][]byte{data}
		}
		for i, p := range pieces {
			if i > 0 && !sleep(s.gap) {
				return errStopped
			}
			if _, err := c.nc.Write(p); err != nil {
				return fmt.Errorf("writing %s: %w", s, err)
			}
		}
	}
	return nil
}

// TestAutobahn runs the case table.
func TestAutobahn(t *testing.T) {
	addr := serverUnderTest(t)
	for _, sec := range allSections() {
		t.Run(sec.name, func(t *testing.T) {
			t.Parallel()
			for _, r := range sec.rows {
				t.Run(r.name(), func(t *testing.T) {
					t.Parallel()
					runRow(t, addr, r)
				})
			}
		})
	}
}
