package connscope

import (
	"log/slog"
	"time"
)

// Event messages. The first seven are the Node.js connection-spy's exact
// strings, so tools written for its logs keep working.
const (
	MsgConnect  = "Socket Connect"   // a client connection was established
	MsgReuse    = "Reuse Socket"     // a pooled connection was taken for a request
	MsgResponse = "HTTP(S) Response" // response headers arrived (client) or the handler finished (server)
	MsgError    = "Socket Error"     // a read, write or dial failed
	MsgTimeout  = "Socket Timeout"   // a deadline expired, or the kernel gave up (ETIMEDOUT)
	MsgEnd      = "Socket End"       // the peer sent FIN (a read returned io.EOF)
	MsgClose    = "Socket Close"     // the connection was closed; see HadError and ClosedBy

	MsgDNS          = "DNS Lookup"       // a dial resolved its host name
	MsgTLS          = "TLS Handshake"    // the TLS handshake on the connection completed or failed
	MsgAccept       = "Socket Accept"    // a server accepted a connection
	MsgIdle         = "Socket Idle"      // the connection went back idle (into the client pool, or between server requests)
	MsgHijack       = "Socket Hijack"    // an HTTP handler took the connection over; it stays tracked until closed
	MsgRequestError = "HTTP(S) Error"    // a request failed before a response arrived, or its response's body did
	MsgDropped      = "Events Dropped"   // a sink lost events (its writer failed or was too slow)
	MsgHookPanic    = "Hook Panic"       // a user hook panicked; the panic was recovered
	MsgNotSpied     = "Socket Not Spied" // a listener hands out connections the spy must leave alone (see Spy.WrapListener)
)

// Side says which end of a connection this program is.
type Side uint8

// Sides.
const (
	Client Side = iota + 1 // this program dialed
	Server                 // this program accepted
)

func (s Side) String() string {
	switch s {
	case Client:
		return "client"
	case Server:
		return "server"
	}
	return ""
}

// Header is one request header copied into an event (see httpscope's
// Options.LogHeaders). Secret headers are never copied.
type Header struct {
	Name, Value string
}

// An Event is one thing that happened to a connection. A Sink receives a
// pointer that is valid only during Emit: copy what it keeps.
//
// Zero-valued fields are left out of the encoded forms, except those of
// the connection-spy format: producer, and id, addresses and ports, which
// are written as null when unknown; a connection's byte counts; and a
// Socket Close's hadError.
type Event struct {
	Time     time.Time
	Level    slog.Level
	Message  string
	Producer string

	// Conn is the connection the event is about; nil for events that have
	// none, such as a failed dial or a dropped-events report.
	Conn *Record
	// ID identifies the connection when Conn is nil: a dial that failed,
	// or the one an "HTTP(S) Error" names when its request got no
	// connection (its dial failed, or its TLS handshake, or a proxy
	// refused its CONNECT on the connection it dialed).
	ID ID

	Target  string // "GET https://host:443/path?query", redacted
	Request uint64 // sequence number of the request on this connection, from 1

	Status   int    // HTTP status
	Protocol string // "HTTP/1.1", "HTTP/2.0"
	Host     string // the name looked up (DNS Lookup)
	Addrs    string // the addresses it resolved to, comma-separated
	TLS      string // "TLS 1.3 h2" (TLS Handshake)
	Headers  []Header

	DNS      time.Duration // name resolution
	Connect  time.Duration // TCP connect
	TLSTime  time.Duration // TLS handshake
	TTFB     time.Duration // request written to first response byte (0 if the answer came first)
	Idle     time.Duration // time the connection sat idle before this reuse
	Duration time.Duration // request duration, or connection age at close

	BytesRead    int64
	BytesWritten int64

	HadError bool   // Socket Close: a read or write failed before the close
	ClosedBy string // Socket Close: "local" or "remote"
	// Op is what failed, or what the event reports: "read", "write",
	// "dial", "dns", "tls", "request", "body", "handler", "relay", "accept", or
	// the hook that panicked.
	Op      string
	Err     error  // the error, unchanged: its text may hold secrets (see ErrorText)
	Dropped uint64 // Events Dropped: how many

	redaction *Redaction // the Spy's, for ErrorText; nil: the defaults
}

// ErrorText returns the text of e.Err as sinks write it: with the URL
// userinfo, fragments, secret query values and path parameters, and
// values that hold a secret of their own, that it may quote hidden, by
// the Redaction of the Spy that emitted e (see Redaction.Text). It is ""
// when e has no error. A Sink or hook of the program's that writes
// errors out should write this, not e.Err.Error().
func (e *Event) ErrorText() string {
	if e.Err == nil {
		return ""
	}
	var rd Redaction
	if e.redaction != nil {
		rd = *e.redaction
	}
	return rd.Text(errorText(e.Err))
}

// levelFor is the level of an event with message msg and error err:
// errors stand out, the rest is debug output like connection-spy's. An
// event that is debug output on success (TLS Handshake, DNS Lookup, a
// server's HTTP(S) Response) is an error when it carries one. A request
// the program cancelled is info: the program chose to stop it, and a
// warn-level log must not fill with a proxy's requests whose clients
// went away. (A deadline, the program's own timeout included, stays an
// error: a backend too slow for it is what the log is for. The error
// alone cannot tell every timeout: an HTTP/2 server whose WriteTimeout
// passes cancels its handler's context without a cause, so a proxy's
// request under it is info too. A legacy Request.Cancel's "net/http:
// request canceled" is not context.Canceled, and stays an error.)
func levelFor(msg string, err error) slog.Level {
	switch msg {
	case MsgRequestError, MsgError:
		// A dial cancelled is the program's choice too: net/http cancels
		// the dials no request waits for any more (CloseIdleConnections).
		if kind, _ := Classify(err); kind == KindCanceled {
			return slog.LevelInfo
		}
		return slog.LevelError
	case MsgHookPanic:
		return slog.LevelError
	case MsgTimeout, MsgDropped, MsgNotSpied:
		return slog.LevelWarn
	}
	if err != nil {
		return slog.LevelError
	}
	return slog.LevelDebug
}
