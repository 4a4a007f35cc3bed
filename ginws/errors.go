package ginws

import (
	"errors"
	"fmt"
	"net"

	"github.com/ginws/ginws/internal/frame"
	"github.com/ginws/ginws/internal/stream"
)

// StatusCode is a WebSocket close code (RFC 6455 section 7.4).
type StatusCode int

// Close codes. StatusNoStatusRcvd, StatusAbnormalClosure and
// StatusTLSHandshake are only ever reported, never sent.
const (
	StatusNormalClosure   StatusCode = 1000
	StatusGoingAway       StatusCode = 1001
	StatusProtocolError   StatusCode = 1002
	StatusUnsupportedData StatusCode = 1003
	StatusNoStatusRcvd    StatusCode = 1005
	StatusAbnormalClosure StatusCode = 1006
	StatusInvalidPayload  StatusCode = 1007
	StatusPolicyViolation StatusCode = 1008
	StatusMessageTooBig   StatusCode = 1009
	StatusMandatoryExt    StatusCode = 1010
	StatusInternalError   StatusCode = 1011
	StatusServiceRestart  StatusCode = 1012
	StatusTryAgainLater   StatusCode = 1013
	StatusBadGateway      StatusCode = 1014
	StatusTLSHandshake    StatusCode = 1015
)

// CloseError is how a connection ended: the close code and reason the
// peer sent, or StatusAbnormalClosure when the TCP connection was lost
// without a close frame. Match it with errors.As.
type CloseError struct {
	Code   StatusCode
	Reason string
	cause  error
}

// Error gives the close status and reason, or for a connection lost
// without a close frame (StatusAbnormalClosure), what ended it.
func (e *CloseError) Error() string {
	if e.Code == StatusAbnormalClosure && e.cause != nil {
		return fmt.Sprintf("ginws: connection lost: %v", e.cause)
	}
	if e.Reason == "" {
		return fmt.Sprintf("ginws: closed by peer with status %d", e.Code)
	}
	return fmt.Sprintf("ginws: closed by peer with status %d: %s", e.Code, e.Reason)
}

// Unwrap returns the network error behind an abnormal closure.
func (e *CloseError) Unwrap() error { return e.cause }

// ProtocolError is a rule of RFC 6455 the peer broke. The connection was
// closed with Code. Each rule is a distinct value; the class sentinels
// ErrProtocol, ErrInvalidUTF8 and ErrMessageTooBig match every rule of
// their class with errors.Is.
type ProtocolError = frame.Error

// HandshakeError is an upgrade request that was refused, with the HTTP
// status it was answered with.
type HandshakeError = frame.HandshakeError

var (
	// ErrProtocol matches every violation answered with 1002.
	ErrProtocol = frame.ErrProtocol
	// ErrInvalidUTF8 matches text messages and close reasons that are not
	// valid UTF-8 (answered with 1007).
	ErrInvalidUTF8 = frame.ErrInvalidUTF8
	// ErrMessageTooBig matches messages over the payload limit (answered
	// with 1009).
	ErrMessageTooBig = frame.ErrMessageTooBig
	// ErrClosed is returned by calls on a connection this side has closed,
	// until the peer answers the close (then they return its *CloseError).
	// It is net.ErrClosed.
	ErrClosed = net.ErrClosed
	// ErrShuttingDown refuses upgrades after Shutdown began (HTTP 503).
	ErrShuttingDown = errors.New("ginws: server is shutting down")
	// ErrIdleTimeout is what a connection dropped by IdleTimeout ends with
	// (inside a *CloseError with StatusAbnormalClosure).
	ErrIdleTimeout = errors.New("ginws: nothing from the peer within the idle timeout")
	// ErrNotUTF8 is returned by byte-stream writes in text mode (StreamText)
	// whose bytes are not valid UTF-8; nothing invalid is sent.
	ErrNotUTF8 = stream.ErrNotUTF8
)

// CloseStatus returns the close code carried by err: the peer's code for
// a *CloseError, the code sent for a *ProtocolError, or -1.
func CloseStatus(err error) StatusCode {
	if ce, ok := errors.AsType[*CloseError](err); ok {
		return ce.Code
	}
	if pe, ok := errors.AsType[*ProtocolError](err); ok {
		return StatusCode(pe.Code)
	}
	return -1
}

// isType reports whether err's chain holds an E. Unlike errors.As with a
// local target, it does not allocate: read errors take this path at every
// connection's end.
func isType[E error](err error) bool {
	_, ok := errors.AsType[E](err)
	return ok
}

// isTimeout reports whether err is a timeout (a deadline that passed).
func isTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// normalClosure reports whether err is the peer ending the connection the
// way a byte stream ends: a close with 1000, 1001 or no status.
func normalClosure(err error) bool {
	switch CloseStatus(err) {
	case StatusNormalClosure, StatusGoingAway, StatusNoStatusRcvd:
		return true
	}
	return false
}
