package conformance

import (
	"fmt"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// TestIsolation opens 100 connections, leaves each of them in the middle of
// a fragmented message, then lets other connections commit protocol
// violations (each must be failed with its own close code). The 100 must
// be untouched: they complete their messages, echo, answer pings and close
// cleanly.
func TestIsolation(t *testing.T) {
	const n = 100
	serverAddr := serverUnderTest(t)
	conns := make([]*wsConn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range conns {
		c, err := dialWS(serverAddr, "/echo", 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		_ = c.nc.SetDeadline(time.Now().Add(60 * time.Second))
		conns[i] = c
	}

	// forEach runs fn on every connection concurrently and reports errors.
	forEach := func(phase string, fn func(i int, c *wsConn) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i, c := range conns {
			wg.Go(func() { errs[i] = fn(i, c) })
		}
		wg.Wait()
		failed := 0
		for i, err := range errs {
			if err != nil {
				failed++
				if failed <= 10 {
					t.Errorf("%s: connection %d: %v", phase, i, err)
				}
			}
		}
		if failed > 0 {
			t.Fatalf("%s: %d of %d connections failed", phase, failed, n)
		}
	}
	roundTrip := func(c *wsConn, fr frame, want expect) error {
		if err := c.writeFrame(fr); err != nil {
			return err
		}
		return matchExpect(c, want)
	}

	forEach("before", func(i int, c *wsConn) error {
		msg := fmt.Sprintf("before %d ✓", i)
		if err := roundTrip(c, txt(msg), echoText(msg)); err != nil {
			return err
		}
		// Start a fragmented message that ends with the first half of a
		// multi-byte character; it is finished after the violations.
		return c.writeFrame(fragment(opText, []byte(fmt.Sprintf("frag %d \xe2\x82", i)), false))
	})

	violations := []struct {
		name string
		send []frame
		code int
	}{
		{"reserved bits", []frame{{fin: true, op: opText, rsv: 4, payload: []byte("x")}}, codeProtocol},
		{"reserved opcode", []frame{{fin: true, op: 0x5}}, codeProtocol},
		{"unmasked frame", []frame{{fin: true, op: opBinary, unmasked: true, payload: []byte("x")}}, codeProtocol},
		{"continuation without start", []frame{{fin: true, op: opCont, payload: []byte("x")}}, codeProtocol},
		{"invalid UTF-8", []frame{txtB([]byte{0xed, 0xa0, 0x80})}, codeInvalidData},
		{"oversized frame header", []frame{{fin: true, op: opBinary, declared: 1 << 40, hasDeclared: true}}, codeTooBig},
		{"invalid close code", []frame{closeF(1005, "")}, codeProtocol},
	}
	for _, v := range violations {
		c, err := dialWS(serverAddr, "/echo", 5*time.Second)
		if err != nil {
			t.Fatalf("violator %q: %v", v.name, err)
		}
		_ = c.nc.SetDeadline(time.Now().Add(10 * time.Second))
		for _, fr := range v.send {
			if err := c.writeFrame(fr); err != nil {
				t.Fatalf("violator %q: %v", v.name, err)
			}
		}
		e, err := c.readEvent()
		if err == nil {
			err = closeWantFor(v.code).match(e)
		}
		if err == nil {
			err = c.awaitTCPClose(tcpCloseTimeout)
		}
		c.Close()
		if err != nil {
			t.Errorf("violator %q: %v", v.name, err)
		}
	}

	forEach("after", func(i int, c *wsConn) error {
		whole := fmt.Sprintf("frag %d \xe2\x82\xac done", i)
		if !utf8.ValidString(whole) {
			return fmt.Errorf("bad test text %q", whole)
		}
		if err := c.writeFrame(fragment(opCont, []byte("\xac done"), true)); err != nil {
			return err
		}
		if err := matchExpect(c, echoText(whole)); err != nil {
			return err
		}
		p := []byte(fmt.Sprintf("ping %d", i))
		if err := roundTrip(c, ping(p), pongOf(p)); err != nil {
			return err
		}
		b := makeBinary(1000 + i)
		if err := roundTrip(c, bin(b), echoBin(b)); err != nil {
			return err
		}
		if err := c.writeFrame(closeF(codeNormal, "")); err != nil {
			return err
		}
		e, err := c.readEvent()
		if err != nil {
			return err
		}
		if err := closeWantFor(codeNormal).match(e); err != nil {
			return err
		}
		return c.awaitTCPClose(tcpCloseTimeout)
	})
}
