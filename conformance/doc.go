// Package conformance holds the RFC 6455 conformance suite for ginws.
//
// The suite is made of test files only; this file exists so that the
// package has a non-test file and documents how to run it.
//
// The tests drive the example echo server (examples/echo) over raw TCP: a
// hand-written client performs the HTTP upgrade and writes frames byte by
// byte, so that malformed, fragmented and "chopped" input can be produced.
// The case table is grouped after the Autobahn testsuite sections 1-7 and 9;
// TestAutobahnDeflate adds sections 12 and 13 (permessage-deflate) against a
// second server started with -deflate (GINWS_CONFORMANCE_DEFLATE_ADDR points
// it at a running one).
//
// Running:
//
//	go test -race ./conformance/
//
// The first test that needs the server builds examples/echo into a
// temporary directory (with -race when the tests themselves run under
// -race), starts it on a free loopback port; TestMain stops it with SIGTERM
// at the end and expects exit status 0, then checks for leaked goroutines.
// The sources of the module's packages the server is built from are opened
// by the test, so go test's result cache is invalidated when they change.
//
// Environment variables:
//
//	GINWS_CONFORMANCE_ADDR=127.0.0.1:PORT  test an already running server
//	                                       (route /echo, max payload 16 MiB)
//	                                       instead of building examples/echo
//	                                       (use -count=1: results of an
//	                                       external server must not be cached).
//	GINWS_CONFORMANCE_SERVER_RACE=0|1      build the server without/with -race
//	                                       (default: same as the test binary).
//
// Unless -parallel is given, the suite raises it to 12: most rows spend their
// time waiting on the network, not on the CPU.
package conformance
