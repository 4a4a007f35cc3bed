package frame

import "errors"

// Close codes defined by RFC 6455 section 7.4.1 and the IANA registry.
const (
	CloseNormal          uint16 = 1000
	CloseGoingAway       uint16 = 1001
	CloseProtocolError   uint16 = 1002
	CloseUnsupportedData uint16 = 1003
	CloseNoStatus        uint16 = 1005 // reported locally, never sent
	CloseAbnormal        uint16 = 1006 // reported locally, never sent
	CloseInvalidPayload  uint16 = 1007
	ClosePolicyViolation uint16 = 1008
	CloseMessageTooBig   uint16 = 1009
	CloseMandatoryExt    uint16 = 1010
	CloseInternalError   uint16 = 1011
	CloseServiceRestart  uint16 = 1012
	CloseTryAgainLater   uint16 = 1013
	CloseBadGateway      uint16 = 1014
	CloseTLSHandshake    uint16 = 1015 // reported locally, never sent
)

// Error is a violation of the protocol by the peer. Code is the close code
// RFC 6455 asks the endpoint to send in reply.
type Error struct {
	Code   uint16
	Reason string
}

func (e *Error) Error() string { return "websocket: " + e.Reason }

// Is makes every violation that calls for the same close code match the
// class sentinels ErrProtocol (1002), ErrInvalidUTF8 (1007) and
// ErrMessageTooBig (1009), so callers can test the class with errors.Is
// and the exact rule with ==.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	switch t {
	case ErrProtocol, ErrInvalidUTF8, ErrMessageTooBig:
		return e.Code == t.Code
	}
	return false
}

// Class sentinels.
var (
	ErrProtocol      = &Error{CloseProtocolError, "protocol error"}
	ErrInvalidUTF8   = &Error{CloseInvalidPayload, "invalid UTF-8 in text message"}
	ErrMessageTooBig = &Error{CloseMessageTooBig, "message exceeds the read limit"}
)

// The individual rules, each its own value.
var (
	ErrUnmasked               = &Error{CloseProtocolError, "client frame is not masked"}
	ErrMasked                 = &Error{CloseProtocolError, "server frame is masked"}
	ErrReservedBits           = &Error{CloseProtocolError, "reserved bits set without a negotiated extension"}
	ErrReservedOpcode         = &Error{CloseProtocolError, "reserved opcode"}
	ErrControlTooLong         = &Error{CloseProtocolError, "control frame payload over 125 bytes"}
	ErrControlFragmented      = &Error{CloseProtocolError, "fragmented control frame"}
	ErrUnexpectedContinuation = &Error{CloseProtocolError, "continuation frame with no message started"}
	ErrExpectedContinuation   = &Error{CloseProtocolError, "new data frame while a fragmented message is open"}
	ErrLengthOverflow         = &Error{CloseProtocolError, "64-bit payload length with the most significant bit set"}
	ErrCloseOneByte           = &Error{CloseProtocolError, "close frame payload of one byte"}
	ErrInvalidCloseCode       = &Error{CloseProtocolError, "invalid close code"}
	ErrCloseReasonUTF8        = &Error{CloseInvalidPayload, "close reason is not valid UTF-8"}
	ErrCompressedControl      = &Error{CloseProtocolError, "RSV1 set on a control or continuation frame"}
	ErrBadCompressed          = &Error{CloseInvalidPayload, "compressed message does not inflate (invalid DEFLATE data)"}
)

// errReleased stops a Reader after Release.
var errReleased = errors.New("frame: reader released")
