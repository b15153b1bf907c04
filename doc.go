// Package connscope shows what a program's network connections are doing,
// and why they fail.
//
// A [Spy] wraps connections below TLS (so HTTP/2, sendfile and splice keep
// working), keeps a lock-free [Record] per connection, and emits [Event]s
// to a [Sink]: a debug log of every socket's life, one stable id per
// connection, in the format of the Node.js connection-spy:
//
//	spy := &connscope.Spy{Sink: connscope.NewJSONSink(os.Stderr, nil)}
//	defer spy.Sink.(*connscope.WriterSink).Close()
//	conn, err := spy.WrapDial(nil)(ctx, "tcp", "example.com:443")
//
// For HTTP clients and servers, see package httpscope, which builds on this
// one. This package imports only the standard library and starts no
// goroutine of its own, except one per [WriterSink] to write events out.
//
// Wrapped connections return the inner connection's errors unchanged; the
// spy classifies them on the side (see [Classify]) so that callers that
// type-assert net.Error or compare with io.EOF behave exactly as before.
package connscope
