package ginws_test

import (
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// RFC 7692 section 7: a server MUST decline an offer with a parameter of
// invalid value. server_max_window_bits and client_max_window_bits take "a
// decimal integer value without leading zeroes between 8 to 15"
// (sections 7.1.2.1 and 7.1.2.2); client_max_window_bits, when it has a
// value, and server_max_window_bits are 1*DIGIT after unquoting, so an
// empty quoted string is no valid value; the two *_no_context_takeover
// parameters have no value at all (sections 7.1.1.1 and 7.1.1.2).
func TestDeflateNegotiationInvalidValues(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/default", echoHandler)
	}, ginws.Compression(ginws.DeflateOptions{Threshold: 1}))
	pd := "permessage-deflate"
	for _, offer := range []string{
		pd + "; server_max_window_bits=010",
		pd + "; server_max_window_bits=\"09\"",
		pd + "; client_max_window_bits=09",
		pd + "; client_max_window_bits=0015",
		pd + "; client_max_window_bits=\"\"",
		pd + "; server_no_context_takeover=\"\"",
		pd + "; client_no_context_takeover=\"\"",
	} {
		t.Run(offer, func(t *testing.T) {
			c := deflDial(t, ts, "/default", offer)
			assert.Equal(t, "", c.ext, "an offer with an invalid parameter value must be declined")
			c.close()
		})
	}
}

// RFC 7230 section 3.2.3: optional whitespace (OWS) is spaces or
// horizontal tabs, and Sec-WebSocket-Extensions is such a list (RFC 6455
// section 9.1). ginws reads its other handshake lists with tabs as OWS
// (CHANGELOG); a valid permessage-deflate offer written with a tab must
// still be accepted, and compressed messages then work.
func TestDeflateNegotiationTabs(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/default", echoHandler)
	}, ginws.Compression(ginws.DeflateOptions{Threshold: 1}))
	for _, offer := range []string{
		"permessage-deflate;\tclient_no_context_takeover",
		"permessage-deflate\t; client_no_context_takeover",
		"x-foo,\tpermessage-deflate; client_no_context_takeover",
	} {
		t.Run(offer, func(t *testing.T) {
			c := deflDial(t, ts, "/default", offer)
			require.Equal(t, "permessage-deflate; server_no_context_takeover; client_no_context_takeover", c.ext)
			p := deflText(3000, 1)
			c.sendZ(ws.OpText, p)
			_, got, compressed := c.readMessage()
			assert.True(t, compressed)
			assert.Equal(t, string(p), string(got))
			c.close()
		})
	}
}
