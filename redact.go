package connscope

import (
	"net"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// DefaultSecretKeys returns the substrings that make a query key (or
// header name) secret-looking, compared without regard to case: the list
// Redaction uses when its SecretKeys is nil. The result is a copy.
func DefaultSecretKeys() []string { return slices.Clone(defaultSecretKeys) }

var defaultSecretKeys = []string{
	"token", "key", "secret", "password", "passwd", "pwd", "signature", "sig",
	"auth", "credential", "session", "jwt", "code",
}

// defaultKeysByFirst groups defaultSecretKeys by their first byte, so
// that one pass over a name finds any of them: IsSecret runs for every
// query key of every traced request.
var defaultKeysByFirst = func() (t [utf8.RuneSelf][]string) {
	for _, k := range defaultSecretKeys {
		t[k[0]] = append(t[k[0]], k) // all lower-case ASCII, none empty
	}
	return t
}()

// Redacted replaces secret values in events.
const Redacted = "REDACTED"

// Redaction controls what of a URL may appear in an event. The zero value
// is safe: userinfo is dropped and the values of secret-looking query keys
// are replaced by "REDACTED".
type Redaction struct {
	// SecretKeys replaces DefaultSecretKeys() when not nil.
	SecretKeys []string
	// OmitQuery leaves the query out of targets entirely.
	OmitQuery bool
}

func (rd Redaction) keys() []string {
	if rd.SecretKeys != nil {
		return rd.SecretKeys
	}
	return defaultSecretKeys
}

// IsSecret reports whether a query key or header name looks secret.
func (rd Redaction) IsSecret(name string) bool {
	// Fold ASCII names once, on the stack, then search each key in them:
	// this runs for every query key of every request. Other names (long
	// or not ASCII) take the slower Unicode case folding.
	var buf [32]byte
	if len(name) > len(buf) || !lowerASCII(buf[:], name) {
		return rd.isSecretFold(name)
	}
	lower := buf[:len(name)]
	switch string(lower) {
	case "authorization", "proxy-authorization", "cookie", "set-cookie":
		return true // always, whatever SecretKeys says
	}
	if rd.SecretKeys == nil {
		for i, c := range lower {
			for _, k := range defaultKeysByFirst[c] {
				if len(k) <= len(lower)-i && string(lower[i:i+len(k)]) == k {
					return true
				}
			}
		}
		return false
	}
	for _, k := range rd.SecretKeys {
		if containsFold(name, k) {
			return true
		}
	}
	return false
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func (rd Redaction) isSecretFold(name string) bool {
	lower := strings.ToLower(name) // folds runes such as U+212A KELVIN SIGN to ASCII
	switch lower {
	case "authorization", "proxy-authorization", "cookie", "set-cookie":
		return true
	}
	for _, k := range rd.keys() {
		// Both foldings: ToLower maps U+212A KELVIN SIGN to k, EqualFold
		// matches Σ with final ς and µ with μ; either one makes it secret.
		if strings.Contains(lower, strings.ToLower(k)) || containsFold(name, k) {
			return true
		}
	}
	return false
}

func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// lowerASCII writes s in lower case into dst and reports whether s was
// all ASCII.
func lowerASCII(dst []byte, s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return false
		}
		dst[i] = lowerByte(c)
	}
	return true
}

// Target formats a request as connection-spy does, "GET https://host:443/path?query",
// with the port always present, without userinfo or fragment, and with
// secret query values redacted.
func (rd Redaction) Target(method string, u *url.URL) string {
	if u == nil {
		return method
	}
	var b strings.Builder
	b.Grow(len(method) + len(u.Scheme) + len(u.Host) + len(u.Path) + len(u.RawPath) + len(u.RawQuery) + 16)
	b.WriteString(method)
	b.WriteByte(' ')
	if u.Scheme != "" {
		b.WriteString(u.Scheme)
		b.WriteString("://")
	}
	port := ""
	if u.Port() == "" && u.Host != "" {
		switch u.Scheme {
		case "http", "ws":
			port = "80"
		case "https", "wss":
			port = "443"
		}
	}
	switch host := strings.TrimSuffix(u.Host, ":"); {
	case port == "":
		b.WriteString(u.Host)
	case !strings.Contains(host, ":") || host[0] == '[' && host[len(host)-1] == ']':
		// What url.Parse gives: a name, an IPv4 address or a bracketed
		// IPv6 one. Written as is, without net.JoinHostPort's allocation.
		b.WriteString(host)
		b.WriteByte(':')
		b.WriteString(port)
	default: // a host set by hand, such as an unbracketed "fe80::"
		h := u.Hostname()
		if net.ParseIP(u.Host) != nil {
			h = u.Host // the colons are the address's, none is a port's
		}
		b.WriteString(net.JoinHostPort(h, port))
	}
	if u.Opaque != "" {
		b.WriteString(u.Opaque)
	} else {
		b.WriteString(u.EscapedPath())
	}
	if u.RawQuery != "" && !rd.OmitQuery {
		b.WriteByte('?')
		b.WriteString(rd.Query(u.RawQuery))
	}
	return b.String()
}

// Query returns rawQuery with the values of secret-looking keys replaced
// by "REDACTED", keeping order and encoding of the rest.
func (rd Redaction) Query(rawQuery string) string {
	if !rd.anySecret(rawQuery) {
		return rawQuery // the common case: nothing to hide, nothing to build
	}
	var b strings.Builder
	b.Grow(len(rawQuery))
	for i, part := range strings.Split(rawQuery, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		k, _, hasValue := strings.Cut(part, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			key = k
		}
		if hasValue && rd.IsSecret(key) {
			b.WriteString(k)
			b.WriteString("=" + Redacted)
			continue
		}
		b.WriteString(part)
	}
	return b.String()
}

// anySecret reports whether any key of rawQuery that has a value looks secret.
func (rd Redaction) anySecret(rawQuery string) bool {
	for rest := rawQuery; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, "&")
		k, _, hasValue := strings.Cut(part, "=")
		if !hasValue {
			continue
		}
		if strings.ContainsAny(k, "%+") {
			if key, err := url.QueryUnescape(k); err == nil {
				k = key
			}
		}
		if rd.IsSecret(k) {
			return true
		}
	}
	return false
}
