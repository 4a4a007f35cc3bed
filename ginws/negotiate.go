package ginws

import (
	"compress/flate"
	"strconv"
	"strings"
)

// deflateOffer is one permessage-deflate offer of a client, as parsed by
// nextExtension (RFC 7692 section 7.1).
type deflateOffer struct {
	serverNoCtx bool
	clientNoCtx bool
	serverBits  int  // server_max_window_bits, 0 when absent
	invalid     bool // an unknown, repeated or ill-valued parameter: declined
}

// negotiateDeflate accepts the first permessage-deflate offer in the
// Sec-WebSocket-Extensions lines that the server can honour (RFC 7692
// section 5) and returns the header value of the response. An offer with
// an unknown, repeated or invalid parameter is declined, and so are all
// of them when the header does not parse: the upgrade then goes on
// without compression.
//
// It parses the header by hand, with small frames and no allocation
// until an offer is accepted: see the call in upgrade.
func negotiateDeflate(lines []string, cfg *deflateConfig) (string, deflateParams) {
	var (
		chosen deflateOffer
		found  bool
	)
	// Every element is read, also after the offer chosen: a header that
	// does not parse declines them all.
	for _, line := range lines {
		for rest := line; ; {
			var (
				deflate bool
				o       deflateOffer
				ok      bool
			)
			deflate, o, rest, ok = nextExtension(rest)
			if !ok {
				return "", deflateParams{}
			}
			if deflate && !o.invalid && !found {
				chosen, found = o, true
			}
			if rest == "" {
				break
			}
		}
	}
	if !found {
		return "", deflateParams{}
	}
	return acceptDeflate(chosen, cfg)
}

// acceptDeflate answers an acceptable offer (RFC 7692 section 7.1).
func acceptDeflate(o deflateOffer, cfg *deflateConfig) (string, deflateParams) {
	dp := deflateParams{
		on:             true,
		level:          cfg.level,
		threshold:      cfg.threshold,
		serverTakeover: cfg.serverTakeover && !o.serverNoCtx,
		clientNoCtx:    cfg.clientNoCtx || o.clientNoCtx,
	}
	// compress/flate always refers back up to 32 KiB (15 bits). Below
	// that, Huffman-only compression refers back to nothing, which fits
	// any window the client asks for.
	if o.serverBits != 0 && o.serverBits < 15 {
		dp.level, dp.serverTakeover = flate.HuffmanOnly, false
	}
	ext := "permessage-deflate"
	if !dp.serverTakeover {
		ext += "; server_no_context_takeover"
	}
	if dp.clientNoCtx {
		ext += "; client_no_context_takeover"
	}
	if o.serverBits != 0 {
		ext += "; server_max_window_bits=" + strconv.Itoa(o.serverBits)
	}
	// client_max_window_bits is never answered: the decompressor has a
	// 32 KiB window whatever the client uses, so there is nothing to ask.
	return ext, dp
}

// nextExtension parses the list element at the start of s (RFC 6455
// section 9.1, with the list and whitespace rules of RFC 9110 section 5.6:
// empty elements are skipped, and spaces and tabs are whitespace around
// separators):
//
//	extension = token *( OWS ";" OWS token [ OWS "=" OWS ( token / quoted-string ) ] )
//
// It reports whether the element is a permessage-deflate offer, that
// offer, what follows the element's comma ("" at the end), and false when
// s does not parse.
func nextExtension(s string) (deflate bool, o deflateOffer, rest string, ok bool) {
	s = skipOWS(s)
	for s != "" && s[0] == ',' { // empty list elements
		s = skipOWS(s[1:])
	}
	if s == "" {
		return false, o, "", true
	}
	name, s := token(s)
	if name == "" {
		return false, o, "", false
	}
	deflate = strings.EqualFold(name, "permessage-deflate")
	var seen uint8
	for {
		s = skipOWS(s)
		if s == "" {
			return deflate, o, "", true
		}
		switch s[0] {
		case ',':
			return deflate, o, s[1:], true
		case ';':
		default:
			return false, o, "", false
		}
		var key, val string
		var hasVal bool
		key, s = token(skipOWS(s[1:]))
		if key == "" {
			return false, o, "", false
		}
		s = skipOWS(s)
		if s != "" && s[0] == '=' {
			if val, s, ok = paramValue(skipOWS(s[1:])); !ok {
				return false, o, "", false
			}
			hasVal = true
		}
		if deflate {
			seen = o.param(seen, key, val, hasVal)
		}
	}
}

// param records one parameter of a permessage-deflate offer; seen holds a
// bit for each known parameter met so far.
func (o *deflateOffer) param(seen uint8, key, val string, hasVal bool) uint8 {
	var bit uint8
	switch key {
	case "server_no_context_takeover":
		bit, o.serverNoCtx = 1, true
		o.invalid = o.invalid || hasVal
	case "client_no_context_takeover":
		bit, o.clientNoCtx = 2, true
		o.invalid = o.invalid || hasVal
	case "server_max_window_bits":
		bit, o.serverBits = 4, windowBits(val)
		o.invalid = o.invalid || o.serverBits == 0
	case "client_max_window_bits":
		// Without a value, the client only says it could take one.
		bit = 8
		o.invalid = o.invalid || hasVal && windowBits(val) == 0
	default:
		o.invalid = true
	}
	o.invalid = o.invalid || seen&bit != 0
	return seen | bit
}

// windowBits reads a window size of RFC 7692 section 7.1.2: a decimal
// from 8 to 15 without leading zeroes. It returns 0 for anything else.
func windowBits(v string) int {
	switch {
	case len(v) == 1 && (v[0] == '8' || v[0] == '9'):
		return int(v[0] - '0')
	case len(v) == 2 && v[0] == '1' && '0' <= v[1] && v[1] <= '5':
		return 10 + int(v[1]-'0')
	}
	return 0
}

// paramValue parses a token or a quoted-string (RFC 9110 section 5.6.4)
// at the start of s, and returns the value, without its quotes (escapes
// are left in: no permessage-deflate value has any), and what follows.
func paramValue(s string) (val, rest string, ok bool) {
	if s == "" || s[0] != '"' {
		val, rest = token(s)
		return val, rest, val != ""
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return s[1:i], s[i+1:], true
		case c == '\\':
			i++ // the escaped byte, checked below like any other
			if i == len(s) {
				return "", "", false
			}
			fallthrough
		default:
			if c = s[i]; (c < ' ' && c != '\t') || c == 0x7f {
				return "", "", false
			}
		}
	}
	return "", "", false // no closing quote
}

// token splits s after its leading run of token characters (RFC 9110
// section 5.6.2).
func token(s string) (tok, rest string) {
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// skipOWS drops leading spaces and tabs.
func skipOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	return s
}
