package connscope

import (
	"net"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultSecretKeys returns the substrings that make a query key, a path
// parameter's key (or a header name) secret-looking, compared without
// regard to case: the list Redaction uses when its SecretKeys is nil. The
// result is a copy.
func DefaultSecretKeys() []string { return slices.Clone(defaultSecretKeys) }

var defaultSecretKeys = []string{
	"token", "key", "secret", "password", "passwd", "pass", "pwd", "signature", "sig",
	"auth", "credential", "session", "sessid", "jwt", "code",
}

// defaultKeysByByte lists defaultSecretKeys under their first byte, in
// either case, so that one pass over a name finds any of them: IsSecret
// runs for every query key of every traced request.
var defaultKeysByByte = func() (t [256][]string) {
	for _, k := range defaultSecretKeys {
		t[k[0]] = append(t[k[0]], k) // all lower-case ASCII letters, none empty
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c-'a'+'A'] = t[c]
	}
	return t
}()

// defaultKeyPairs rules out most places in a name with one test: bit
// c&31 of defaultKeyPairs[b] is set if a default key starts with the
// letter b followed by one whose low five bits are c&31. Letters in either
// case have the same low five bits; the few other bytes that share them
// only cost a closer look.
var defaultKeyPairs = func() (t [256]uint32) {
	for c, keys := range defaultKeysByByte {
		for _, k := range keys {
			t[c] |= 1 << (k[1] & 31) // every key is at least 2 bytes long
		}
	}
	return t
}()

// minDefaultKey is the length of the shortest default key: none can start
// closer than that to the end of a name.
var minDefaultKey = len(slices.MinFunc(defaultSecretKeys, func(a, b string) int { return len(a) - len(b) }))

// Redacted replaces secret values in events.
const Redacted = "REDACTED"

// Redaction controls what of a URL may appear in an event. The zero value
// is safe: userinfo and fragments are dropped, and the values of
// secret-looking query keys and path parameters, and values that hold a
// secret of their own (a URL passed on, such as "next=/cb?token=x"), are
// replaced by "REDACTED".
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

// IsSecret reports whether a query key, a path parameter's key or a
// header name looks secret.
func (rd Redaction) IsSecret(name string) bool {
	if rd.SecretKeys != nil {
		return rd.isSecretKeys(name)
	}
	// Most names are ASCII ("page", "Content-Type"): searched in place,
	// folding case byte by byte. Others take the slower Unicode folding,
	// which answers as this does for ASCII names, the default keys being
	// ASCII.
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			return rd.isSecretFold(name)
		}
	}
	for i := 0; i+minDefaultKey <= len(name); i++ {
		if defaultKeyPairs[name[i]]&(1<<(name[i+1]&31)) == 0 {
			continue
		}
		for _, k := range defaultKeysByByte[name[i]] {
			if len(k) <= len(name)-i && hasPrefixLower(name[i:], k) {
				return true
			}
		}
	}
	return alwaysSecret(name)
}

// isSecretKeys is IsSecret with SecretKeys set.
func (rd Redaction) isSecretKeys(name string) bool {
	if len(name) > maxFastName {
		return rd.isSecretFold(name)
	}
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			return rd.isSecretFold(name)
		}
	}
	if alwaysSecret(name) {
		return true
	}
	for _, k := range rd.SecretKeys {
		if containsFold(name, k) {
			return true
		}
	}
	return false
}

// maxFastName bounds the names isSecretKeys searches without Unicode
// folding. Longer ASCII names give the same answers unless a key is not
// ASCII yet lower-cases to ASCII, as U+212A KELVIN SIGN does: the bound
// is kept so that such answers do not change.
const maxFastName = 32

// alwaysSecret reports whether the ASCII name is one of the headers that
// are secret whatever SecretKeys says. Its length rules out most names.
func alwaysSecret(name string) bool {
	switch len(name) {
	case len("cookie"):
		return strings.EqualFold(name, "cookie")
	case len("set-cookie"):
		return strings.EqualFold(name, "set-cookie")
	case len("authorization"):
		return strings.EqualFold(name, "authorization")
	case len("proxy-authorization"):
		return strings.EqualFold(name, "proxy-authorization")
	}
	return false
}

// hasPrefixLower reports whether s begins with the lower-case prefix,
// ignoring ASCII case; s is no shorter than prefix.
func hasPrefixLower(s, prefix string) bool {
	for j := 0; j < len(prefix); j++ {
		if lowerByte(s[j]) != prefix[j] {
			return false
		}
	}
	return true
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
	for i := 0; ; {
		if hasPrefixFold(s[i:], sub) {
			return true
		}
		if i >= len(s) {
			return false
		}
		_, n := utf8.DecodeRuneInString(s[i:])
		i += n
	}
}

// hasPrefixFold reports whether s begins with prefix under Unicode simple
// case folding, rune by rune: a rune and its fold may differ in length
// (U+017F LATIN SMALL LETTER LONG S is two bytes, its s one).
func hasPrefixFold(s, prefix string) bool {
	for _, pr := range prefix {
		if s == "" {
			return false
		}
		r, n := utf8.DecodeRuneInString(s)
		if !runeEqualFold(r, pr) {
			return false
		}
		s = s[n:]
	}
	return true
}

func runeEqualFold(a, b rune) bool {
	if a == b {
		return true
	}
	for r := unicode.SimpleFold(a); r != a; r = unicode.SimpleFold(r) {
		if r == b {
			return true
		}
	}
	return false
}

// Target formats a request as connection-spy does, "GET https://host:443/path?query",
// with the port always present, without userinfo or fragment, and with
// secret values redacted: those of secret-looking query keys and path
// parameters ("/app;jsessionid=REDACTED/x"), and those that hold a secret
// of their own (see Query). An empty method is GET, as in net/http.
func (rd Redaction) Target(method string, u *url.URL) string {
	if method == "" {
		method = "GET" // what net/http sends for an empty http.Request.Method
	}
	if u == nil {
		return method
	}
	if strings.IndexByte(u.Host, '@') >= 0 {
		// A Host set by hand may hold userinfo, which net/http sends
		// to the resolver as it is.
		c := *u
		c.Host = hostWithoutUserinfo(u.Host)
		u = &c
	}
	// The common schemes are written with their "://" and default port
	// as one piece each.
	scheme, sep, port := u.Scheme, "", ""
	switch scheme {
	case "http":
		scheme, port = "http://", ":80"
	case "https":
		scheme, port = "https://", ":443"
	case "ws":
		scheme, port = "ws://", ":80"
	case "wss":
		scheme, port = "wss://", ":443"
	case "":
	default:
		sep = "://"
	}
	host := u.Host
	if host == "" || hasPort(host) {
		port = ""
	} else if port != "" {
		host, port = joinPort(u, port)
	}
	path, semi := escapedPath(u)
	if semi {
		path = rd.redactPath(path) // a second allocation, if it redacts
	}
	query, mark := "", ""
	if u.RawQuery != "" && !rd.OmitQuery {
		query, mark = u.RawQuery, "?"
		if i := strings.IndexByte(query, '#'); i >= 0 {
			// A RawQuery set by hand, or a server's: on the wire, what
			// follows the '#' is a fragment.
			query = query[:i]
		}
		if i := rd.firstSecret(query); i >= 0 {
			query = rd.redactQuery(query, i) // a second allocation, to redact
		}
	}

	// Built on the stack and copied into the result, the only allocation.
	// The concatenation does the same for longer targets, with more work
	// per piece.
	var buf [256]byte
	if len(method)+1+len(scheme)+len(sep)+len(host)+len(port)+len(path)+len(mark)+len(query) > len(buf) {
		return method + " " + scheme + sep + host + port + path + mark + query
	}
	b := append(buf[:0], method...)
	b = append(b, ' ')
	b = append(b, scheme...)
	if sep != "" {
		b = append(b, sep...)
	}
	b = append(b, host...)
	b = append(b, port...)
	b = append(b, path...)
	if query != "" {
		b = append(b, '?')
		b = append(b, query...)
	}
	return string(b)
}

// hostWithoutUserinfo returns host, a URL's Host, a name looked up or an
// address dialed, without what it holds up to its last '@': userinfo, in
// a URL whose Host was set by hand ("alice:s3cr3t@example.com:443"),
// which net/http dials as it is. No name or address holds an '@'.
func hostWithoutUserinfo(host string) string {
	i := strings.LastIndexByte(host, '@')
	if i < 0 {
		return host
	}
	if host[0] == '[' { // "[alice:s3cr3t@::1]:443", as net.JoinHostPort writes it
		return "[" + host[i+1:]
	}
	return host[i+1:]
}

// escapedPath returns what u.EscapedPath returns, or u.Opaque if set
// (without userinfo): u.Path itself, unless something in it needs
// escaping. It reports too whether the result holds a ';', or an escaped
// one, which may start a path parameter.
func escapedPath(u *url.URL) (path string, semi bool) {
	if u.Opaque != "" {
		path = opaqueWithoutUserinfo(u.Opaque)
		return path, hasParamSep(path)
	}
	if u.RawPath == "" {
		// One pass over the path answers both questions.
		switch pathBytes(u.Path) {
		case 0:
			return u.Path, false
		case pathSemicolon:
			return u.Path, true
		}
	}
	path = u.EscapedPath()
	return path, hasParamSep(path)
}

// opaqueWithoutUserinfo drops what comes up to the last '@' of an opaque
// URL: "https:alice:s3cret@example.com/" (a URL that lost its "//") holds
// its userinfo there, and a password may hold a '/'. (An opaque URL
// reaches a target only in a request that fails: it names no host.)
func opaqueWithoutUserinfo(op string) string {
	at := strings.LastIndexByte(op, '@')
	if at < 0 {
		return op
	}
	if strings.HasPrefix(op, "//") {
		return "//" + op[at+1:]
	}
	return op[at+1:]
}

// joinPort returns u.Host, which has no port, and the default port (with
// its colon) to write after it; or, for a host whose colons are
// ambiguous, the host and port joined and no port.
func joinPort(u *url.URL, port string) (host, portAfter string) {
	host = strings.TrimSuffix(u.Host, ":")
	if strings.IndexByte(host, ':') < 0 || host[0] == '[' && host[len(host)-1] == ']' {
		// What url.Parse gives: a name, an IPv4 address or a bracketed
		// IPv6 one. Written as is, without net.JoinHostPort's allocation.
		return host, port
	}
	// A host set by hand, such as an unbracketed "fe80::".
	h := u.Hostname()
	if net.ParseIP(u.Host) != nil {
		h = u.Host // the colons are the address's, none is a port's
	}
	return net.JoinHostPort(h, port[1:]), ""
}

// hasPort reports whether host ends in a colon and a port number, that
// is, whether url.URL.Port would return a port.
func hasPort(host string) bool {
	for i := len(host) - 1; i >= 0; i-- {
		if c := host[i]; c < '0' || '9' < c {
			return c == ':' && i < len(host)-1
		}
	}
	return false
}

// pathBytes returns the pathClass bits of the bytes of path: without
// pathEscape, url.URL.EscapedPath leaves path as it is when RawPath is
// empty.
func pathBytes(path string) (bits uint8) {
	for _, c := range []byte(path) {
		bits |= pathClass[c]
	}
	return bits
}

const (
	pathEscape    = 1 << iota // url.URL.EscapedPath escapes the byte
	pathSemicolon             // the byte is a ';'
)

// pathClass has pathEscape for the bytes url.URL.EscapedPath escapes in
// a path ('*' aside, left alone only as the whole path "*"), as
// TestRedactionPathSafe checks, and pathSemicolon for ';'.
var pathClass = func() (t [256]uint8) {
	for i := range t {
		t[i] = pathEscape
	}
	for _, c := range []byte("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-._~$&+,/:=@") {
		t[c] = 0
	}
	t[';'] = pathSemicolon
	return t
}()

// redactPath returns path, an escaped path, with the values of its
// secret path parameters replaced by "REDACTED": a parameter is what
// follows a ';' in a segment ("/app;jsessionid=ABC/x"), or an escaped
// one ("%3B", which a server that unescapes the path before it splits off
// parameters reads as a ';'), up to the next one or '/'; its key, to its
// '=', is checked as a query key is, and its value for a secret of its
// own as a query value is (see Query). A secret value runs to the end of
// its segment, past any ';': a server that does not split parameters
// there reads it as part of the value. What comes before a segment's
// first ';' is its name, not a parameter.
func (rd Redaction) redactPath(path string) string {
	var b strings.Builder
	done := 0 // path[:done] is in b
	for i := 0; i < len(path); {
		sep, n := nextParamSep(path, i)
		if sep < 0 {
			break
		}
		start := sep + n // of the parameter
		end := start     // of the parameter, at a separator or '/'
		for end < len(path) && path[end] != '/' && paramSep(path, end) == 0 {
			end++
		}
		k, v, hasValue := strings.Cut(path[start:end], "=")
		if !hasValue || !rd.isSecretPathKey(k) && !rd.nestedSecret(v) {
			i = end
			continue
		}
		seg := end // the segment's end
		for seg < len(path) && path[seg] != '/' {
			seg++
		}
		b.WriteString(path[done : start+len(k)+1])
		b.WriteString(Redacted)
		done, i = seg, seg
	}
	if done == 0 {
		return path // nothing secret: nothing built
	}
	b.WriteString(path[done:])
	return b.String()
}

// paramSep returns the length of the path parameter separator at
// path[i], a ';' or a "%3B" (either case), or 0 if there is none.
func paramSep(path string, i int) int {
	switch {
	case path[i] == ';':
		return 1
	case path[i] == '%' && i+2 < len(path) && path[i+1] == '3' && path[i+2]|0x20 == 'b':
		return 3
	}
	return 0
}

// nextParamSep returns the offset and length of the first path parameter
// separator (see paramSep) in path at or after i, or -1 if there is none.
func nextParamSep(path string, i int) (int, int) {
	for ; i < len(path); i++ {
		if c := path[i]; c == ';' || c == '%' {
			if n := paramSep(path, i); n > 0 {
				return i, n
			}
		}
	}
	return -1, 0
}

// hasParamSep reports whether path holds a path parameter separator.
func hasParamSep(path string) bool {
	i, _ := nextParamSep(path, 0)
	return i >= 0
}

// isSecretPathKey reports whether the path parameter key k looks secret,
// unescaped first: in a path, a '+' is a '+'.
func (rd Redaction) isSecretPathKey(k string) bool {
	if strings.IndexByte(k, '%') >= 0 {
		if key, err := url.PathUnescape(k); err == nil {
			k = key
		}
	}
	return rd.IsSecret(k)
}

// Query returns rawQuery with the values of secret-looking keys replaced
// by "REDACTED", keeping order and encoding of the rest. So are values that
// hold a secret of their own, as a URL passed on does ("next=/cb?token=x",
// "redirect=https%3A%2F%2Fh%2Fcb%3Ftoken%3Dx"): one in which, as it is
// or percent-decoded once or more, a piece between '?', '&', ';' and '#'
// is a pair with a secret-looking key, or an authority holds userinfo (an
// '@' before the next '/', '?' or '#' after a "//", or after "https:" and
// the like without it: see hasUserinfo). A value that, decoded
// maxDecodes times, one more decoding would still change is replaced too.
func (rd Redaction) Query(rawQuery string) string {
	if i := rd.firstSecret(rawQuery); i >= 0 {
		return rd.redactQuery(rawQuery, i)
	}
	return rawQuery // the common case: nothing to hide, nothing to build
}

// firstSecret returns the offset in rawQuery of the first part whose key
// has a value and looks secret, or whose value holds a secret, or -1 if
// there is none. It scans in place, unescaping only keys that hold '%'
// or '+', and only values whose escapes may hide a '=', '@' or '%'.
//
// Parts end at '&' or ';': net/url rejects ';', but servers that predate
// Go 1.17, and many outside Go, split on it, so "a=1;token=x" carries a
// token. The key of an '&'-separated part, to its first '=', is checked
// as one too: for a server that does not split on ';', "token;v=x" sets
// "token;v".
func (rd Redaction) firstSecret(rawQuery string) int {
	q := rawQuery
	part := 0 // where the '&'-separated part's key starts; -1 past its first '='
	for i := 0; i < len(q); {
		// The key runs to the part's first '='.
		j, escaped := i, false
		for ; j < len(q); j++ {
			if c := q[j]; c <= '=' { // '%', '&', '+', ';' and '=' sort before all letters
				if c == '=' || c == '&' || c == ';' {
					break
				}
				escaped = escaped || c == '%' || c == '+'
			}
		}
		if j < len(q) && q[j] == '=' {
			if part >= 0 && part < i && rd.isSecretKey(q[part:j], true) {
				return part // "token;v=x": the '&' part's key, past a ';'
			}
			part = -1
			if rd.isSecretKey(q[i:j], escaped) {
				return i
			}
			// The value runs to the next '&' or ';'. Only one with a
			// '=', '@' or '%' can hold a secret of its own.
			v, marks := j+1, uint8(0)
			for j++; j < len(q); j++ {
				if c := valueClass[q[j]]; c != 0 {
					if c == valueEnd {
						break
					}
					marks |= c
				}
			}
			if marks != 0 && rd.nestedSecret(q[v:j]) {
				return i
			}
		}
		if j < len(q) && q[j] == '&' {
			part = j + 1
		}
		i = j + 1
	}
	return -1
}

const (
	valueMark = 1 // the byte may make a value hold a secret: '=', '@', '%'
	valueEnd  = 2 // the byte ends a value: '&', ';'
)

// valueClass classifies the bytes of a query value for firstSecret.
var valueClass = func() (t [256]uint8) {
	t['='], t['@'], t['%'] = valueMark, valueMark, valueMark
	t['&'], t[';'] = valueEnd, valueEnd
	return t
}()

// maxDecodes bounds the percent-decodings of a value that nestedSecret
// looks into: a value that one more would still change is taken for a
// secret, rather than decoded without end ("%2525...").
const maxDecodes = 4

// nestedSecret reports whether v, a query value or path parameter value,
// holds a secret of its own, as Query describes.
func (rd Redaction) nestedSecret(v string) bool {
	return !inertEscapes(v) && rd.liveSecret(v)
}

// liveSecret is nestedSecret for a v that inertEscapes rejects.
func (rd Redaction) liveSecret(v string) bool {
	for n := 0; ; n++ {
		if rd.secretPair(v) || hasUserinfo(v) {
			return true
		}
		d := percentDecode(v)
		if d == v {
			return false
		}
		if n == maxDecodes {
			return true
		}
		v = d
		if n+1 < maxDecodes && inertEscapes(v) {
			// Without '=' or '@', v holds no secret; decoded, it would
			// show nothing new: spare the copy.
			return false
		}
	}
}

// secretPair reports whether a piece of s between '?', '&', ';' and '#'
// holds a '=' after a secret-looking key.
func (rd Redaction) secretPair(s string) bool {
	if strings.IndexByte(s, '=') < 0 {
		return false // the common case
	}
	start, key := 0, true // the piece's start; whether no '=' came yet
	for i := 0; i < len(s); i++ {
		switch pairClass[s[i]] {
		case 0:
		case pairEnd:
			start, key = i+1, true
		default:
			if key && rd.isSecretKey(s[start:i], true) {
				return true
			}
			key = false
		}
	}
	return false
}

const (
	pairEnd   = 1 // '?', '&', ';', '#'
	pairEqual = 2 // '='
)

// pairClass classifies bytes for secretPair.
var pairClass = func() (t [256]uint8) {
	t['?'], t['&'], t[';'], t['#'] = pairEnd, pairEnd, pairEnd, pairEnd
	t['='] = pairEqual
	return t
}()

// hasUserinfo reports whether s holds an authority with userinfo: an '@'
// before the next '/', '?' or '#' after a "//" (or two backslashes, or
// one of each, which browsers read as "//"), or after "http:", "https:",
// "ws:", "wss:" or "ftp:" and any slashes: browsers read userinfo there
// even without the "//" ("https:alice:pw@h"), as Target does for an
// opaque URL.
func hasUserinfo(s string) bool {
	if strings.IndexByte(s, '@') < 0 {
		return false // the common case
	}
	for i := 0; i < len(s); i++ {
		start := -1 // of an authority, before its slashes
		switch s[i] {
		case '/', '\\':
			if i+1 < len(s) && (s[i+1] == '/' || s[i+1] == '\\') {
				start = i + 2
			}
		case ':':
			if specialScheme(s[:i]) {
				start = i + 1
			}
		}
		if start < 0 {
			continue
		}
		for start < len(s) && (s[start] == '/' || s[start] == '\\') {
			start++
		}
		end := start
		for ; end < len(s) && s[end] != '/' && s[end] != '?' && s[end] != '#'; end++ {
			if s[end] == '@' {
				return true
			}
		}
		// An authority that starts inside this one ends where it does,
		// without an '@' either: go on from its end.
		i = end - 1
	}
	return false
}

// specialScheme reports whether s ends in a scheme whose URLs browsers
// read an authority in without "//", as a word of its own.
func specialScheme(s string) bool {
	for _, scheme := range [...]string{"http", "https", "ws", "wss", "ftp"} {
		if n := len(s) - len(scheme); n >= 0 && strings.EqualFold(s[n:], scheme) && (n == 0 || !schemeByte(s[n-1])) {
			return true
		}
	}
	return false
}

// schemeByte reports whether c may be part of a URL scheme.
func schemeByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'
}

// inertEscapes reports whether decoding s could show no '=', '@' or '%',
// the bytes that let secretPair, hasUserinfo or a further decoding find
// more: s has none of the first two, and each '%' in it begins a valid
// escape of another byte ("%20", not "%3D", "%40", "%25" or "%zz").
func inertEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := valueClass[s[i]]; c == valueMark && (s[i] != '%' || !inertEscape(s, i)) {
			return false
		}
	}
	return true
}

// inertEscape reports whether s[i], a '%', begins a valid escape of a
// byte other than '=', '@' and '%'.
func inertEscape(s string, i int) bool {
	if i+2 >= len(s) {
		return false
	}
	hi, lo := hexValue[s[i+1]], hexValue[s[i+2]]
	c := hi<<4 | lo
	return hi|lo < 16 && c != '=' && c != '@' && c != '%'
}

// hexValue holds the value of each hex digit, and 0xff for other bytes.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range []byte("0123456789abcdef") {
		t[c] = byte(i)
	}
	for i, c := range []byte("ABCDEF") {
		t[c] = byte(10 + i)
	}
	return t
}()

// percentDecode returns s with each valid escape ("%3D") decoded, and
// the rest as it is: a '+' or a '%' that begins none ("100%") too.
func percentDecode(s string) string {
	var b strings.Builder
	done := 0 // s[:done] is in b
	for i := strings.IndexByte(s, '%'); i >= 0; {
		if i+2 < len(s) && hexValue[s[i+1]]|hexValue[s[i+2]] < 16 {
			if done == 0 {
				b.Grow(len(s) - 2)
			}
			b.WriteString(s[done:i])
			b.WriteByte(hexValue[s[i+1]]<<4 | hexValue[s[i+2]])
			done = i + 3
			i += 2
		}
		j := strings.IndexByte(s[i+1:], '%')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	if done == 0 {
		return s // nothing to decode: nothing copied
	}
	b.WriteString(s[done:])
	return b.String()
}

// isSecretKey reports whether the query key k looks secret, unescaped
// first if escaped.
func (rd Redaction) isSecretKey(k string, escaped bool) bool {
	if escaped && (strings.IndexByte(k, '%') >= 0 || strings.IndexByte(k, '+') >= 0) {
		if key, err := url.QueryUnescape(k); err == nil {
			k = key
		}
	}
	return rd.IsSecret(k)
}

// redactQuery returns rawQuery with the values of secret-looking keys
// replaced, given the offset of the first part to replace, from
// firstSecret. A secret value runs to the next '&', past any ';': for a
// server that does not split on ';', "token=a;b" is one value.
func (rd Redaction) redactQuery(rawQuery string, from int) string {
	var b strings.Builder
	b.Grow(len(rawQuery) + len(Redacted))
	// firstSecret found the part at from secret: its key runs to its
	// first '=', past any ';'.
	eq := from + strings.IndexByte(rawQuery[from:], '=')
	b.WriteString(rawQuery[:eq+1])
	b.WriteString(Redacted)
	amp := strings.IndexByte(rawQuery[eq:], '&')
	if amp < 0 {
		return b.String()
	}
	b.WriteByte('&')
	for rest := rawQuery[eq+amp+1:]; ; {
		part, next, more := strings.Cut(rest, "&")
		rd.redactPart(&b, part)
		if !more {
			return b.String()
		}
		b.WriteByte('&')
		rest = next
	}
}

// redactPart writes part, one '&'-separated piece of a query, to b, with
// all after the '=' of its first secret key replaced: its own key, to its
// first '=', or a ';'-separated one, whose value may make it secret.
func (rd Redaction) redactPart(b *strings.Builder, part string) {
	if k, _, hasValue := strings.Cut(part, "="); hasValue && strings.IndexByte(k, ';') >= 0 && rd.isSecretKey(k, true) {
		b.WriteString(k)
		b.WriteString("=" + Redacted)
		return
	}
	for off := 0; off < len(part); {
		sub, _, _ := strings.Cut(part[off:], ";")
		if k, v, hasValue := strings.Cut(sub, "="); hasValue && (rd.isSecretKey(k, true) || rd.nestedSecret(v)) {
			b.WriteString(part[:off+len(k)])
			b.WriteString("=" + Redacted)
			return
		}
		off += len(sub) + 1
	}
	b.WriteString(part)
}

// Text returns s, the text of an error, with what Target hides hidden in
// the URLs and request targets it quotes: the userinfo after "scheme://",
// fragments, the values of secret-looking query keys (the whole query
// with OmitQuery) and path parameters, and values that hold a secret of
// their own. Error texts quote them: a RoundTripper's that names
// its request, a response line that echoes the request's ("malformed
// HTTP status code"), net/http's "invalid request :path", net/url's parse
// errors. Sinks write every event's error through it (see
// Event.ErrorText); the error itself, which the program gets, is not
// changed. s is returned as is, without allocating, when it holds no
// '@', '?', '#', ';' or "%3B" and no port net/url found invalid.
//
// A URL in a text has no clear end: it is taken to run to the next space,
// quote or angle bracket. Userinfo ends at the last '@' before the host's
// end ('/', '?' or '#'), or, for a URL that net/url could not have parsed
// (a "port" that is not a number: a raw '/', '?' or '#' in the password),
// at the first '@' after it, or, with none, the whole host is hidden.
// Without a scheme, "user:password@" before a host is hidden too: a URL
// Host set by hand, as a dial's error quotes it. Path parameters are
// looked for in all of a URL before its query, scheme and host included.
func (rd Redaction) Text(s string) string {
	if strings.IndexByte(s, '@') < 0 && strings.IndexByte(s, '?') < 0 && strings.IndexByte(s, '#') < 0 && !hasParamSep(s) {
		if !strings.Contains(s, invalidPort) {
			return s
		}
	}
	var b []byte // nil until something is hidden
	last := 0    // s[last:] is not yet in b
	for i := 0; i < len(s); {
		if textDelim(s, i) {
			i++
			continue
		}
		j := i + 1
		for j < len(s) && !textDelim(s, j) {
			j++
		}
		if tok, hidden := rd.textToken(s[i:j]); hidden {
			b = append(b, s[last:i]...)
			b = append(b, tok...)
			last = j
		}
		i = j
	}
	if b != nil {
		s = string(append(b, s[last:]...))
	}
	return hideInvalidPort(s)
}

// invalidPort begins net/url's error for a port that is not a number,
// which quotes it: `invalid port ":pa" after host`. What url.Parse took
// for a port may be the start of a password with a '#', '/' or '?' in it.
const invalidPort = `invalid port "`

// hideInvalidPort hides the ports that net/url's errors in s quote. It
// builds the result once: a text may quote many (a peer's, echoed).
func hideInvalidPort(s string) string {
	var b strings.Builder
	done := 0 // s[:done] is in b
	for off := 0; ; {
		i := strings.Index(s[off:], invalidPort)
		if i < 0 {
			break
		}
		start := off + i + len(invalidPort)
		end := strings.Index(s[start:], `" after host`)
		if end < 0 {
			break
		}
		end += start
		if s[start:end] != Redacted {
			if done == 0 {
				b.Grow(len(s) + len(Redacted))
			}
			b.WriteString(s[done:start])
			b.WriteString(Redacted)
			done = end
		}
		off = end
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}

// textDelim reports whether s[i] ends a URL in a text: a space, a control
// byte, a quote (but for one a backslash escapes, as %q writes a quote
// inside a quoted string) or an angle bracket.
func textDelim(s string, i int) bool {
	switch c := s[i]; {
	case c <= ' ', c == 0x7f, c == '\'', c == '<', c == '>', c == '`':
		return true
	case c == '"':
		return i == 0 || s[i-1] != '\\'
	}
	return false
}

// textToken hides what Text hides in tok, one space-free piece of a text,
// and reports whether it hid anything.
func (rd Redaction) textToken(tok string) (string, bool) {
	hidden := false
	frag := -1 // where a fragment may begin: past a "scheme://", or a '?'
	if k := strings.Index(tok, "://"); k >= 0 {
		start := k + len("://")
		host := tok[start:]
		if e := strings.IndexAny(host, "/?#"); e >= 0 {
			host = host[:e]
		}
		end := -1 // the '@' that ends the userinfo
		if at := strings.LastIndexByte(host, '@'); at >= 0 {
			end = start + at
		} else if badPort(host) {
			if at := strings.IndexByte(tok[start+len(host):], '@'); at >= 0 {
				end = start + len(host) + at
			} else {
				tok = tok[:start] + Redacted + tok[start+len(host):]
				hidden = true
			}
		}
		if end >= 0 {
			tok = tok[:start] + tok[end+1:]
			hidden = true
		}
		frag = start
	} else if at := strings.LastIndexByte(hostPart(tok), '@'); at >= 0 && strings.IndexByte(tok[:at], ':') >= 0 {
		// "alice:s3cr3t@example.com:443", a Host set by hand, as a
		// dial's error quotes it ("lookup alice:s3cr3t@example.com").
		if tok[0] == '[' {
			tok = "[" + tok[at+1:]
		} else {
			tok = tok[at+1:]
		}
		hidden = true
	}
	q := strings.IndexByte(tok, '?')
	if frag < 0 {
		frag = q
	}
	if frag >= 0 {
		if h := strings.IndexByte(tok[frag:], '#'); h >= 0 {
			tok = tok[:frag+h]
			hidden = true
		}
	}
	path := tok // before the query
	if q >= 0 && q < len(tok) {
		path = tok[:q]
	}
	if hasParamSep(path) {
		if p := rd.redactPath(path); p != path {
			tok = p + tok[len(path):]
			q = strings.IndexByte(tok, '?') // the path held none, nor does p
			hidden = true
		}
	}
	if q >= 0 && q < len(tok) {
		switch query := tok[q+1:]; {
		case rd.OmitQuery && query != "" && queryStart[query[0]]: // a query, not "?!"
			tok = tok[:q]
			hidden = true
		case rd.firstSecret(query) >= 0:
			// Also with OmitQuery, for what may be prose ("?!token=x"):
			// its secrets are hidden as without it.
			tok = tok[:q+1] + rd.Query(query)
			hidden = true
		}
	}
	return tok, hidden
}

// hostPart returns what of tok, a piece of a text without a "scheme://",
// may be a host: up to its first '/' or '?'.
func hostPart(tok string) string {
	if i := strings.IndexAny(tok, "/?"); i >= 0 {
		return tok[:i]
	}
	return tok
}

// queryStart holds the bytes a query may begin with, in a text: not the
// punctuation that may follow a question mark ("really?!").
var queryStart = func() (t [256]bool) {
	for _, c := range []byte("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz%_-.~+=&;") {
		t[c] = true
	}
	return t
}()

// badPort reports whether host, what comes between "scheme://" and the
// path of a URL in a text, has a port that is not a number, as none that
// url.Parse accepts has: a colon the password's, not the port's.
func badPort(host string) bool {
	if strings.HasPrefix(host, "[") { // an IPv6 address: its colons are its own
		i := strings.IndexByte(host, ']')
		if i < 0 {
			return false
		}
		host = host[i+1:]
	}
	i := strings.IndexByte(host, ':')
	if i < 0 {
		return false
	}
	for _, c := range []byte(host[i+1:]) {
		if c < '0' || '9' < c {
			return true
		}
	}
	return false
}
