// Package httpscope instruments net/http clients and servers with a
// connscope.Spy: every connection's life, and every request tied to the
// connection that carried it.
//
// On the client side, WrapTransport (or InstrumentDefault, for
// http.DefaultTransport, http.Get and http.DefaultClient) wraps the
// transport's connections below TLS, so HTTP/2 is still negotiated, and
// traces each request with a fresh httptrace.ClientTrace: "Socket Connect"
// or "Reuse Socket" (with the time the connection sat idle), "TLS
// Handshake", "HTTP(S) Response" (status, protocol, time to first byte),
// "Socket Idle" when the connection goes back to the pool.
//
// On the server side, InstrumentServer reports each request on its
// connection, idle and hijacked connections; wrap the listener with
// Spy.WrapListener so the connections themselves are seen (accept, bytes,
// end, close), hijacked ones included until they close.
package httpscope
