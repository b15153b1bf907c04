package connscope

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRedactionTarget(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rd     Redaction
		method string
		url    string
		want   string
	}{
		{"userinfo dropped", Redaction{}, "GET", "https://alice:s3cr3t@example.com/p?q=1", "GET https://example.com:443/p?q=1"},
		{"user without password", Redaction{}, "GET", "http://s3cr3t@example.com/", "GET http://example.com:80/"},
		{"https default port", Redaction{}, "GET", "https://example.com/", "GET https://example.com:443/"},
		{"empty method is GET", Redaction{}, "", "https://example.com/", "GET https://example.com:443/"},
		{"http default port", Redaction{}, "POST", "http://example.com/a/b", "POST http://example.com:80/a/b"},
		{"explicit port kept", Redaction{}, "GET", "https://example.com:8443/x", "GET https://example.com:8443/x"},
		{"ws default port", Redaction{}, "GET", "wss://example.com/chat", "GET wss://example.com:443/chat"},
		{"IPv6 host", Redaction{}, "GET", "http://[::1]/x", "GET http://[::1]:80/x"},
		{"IPv6 host with port", Redaction{}, "GET", "https://[2001:db8::1]:8443/x", "GET https://[2001:db8::1]:8443/x"},
		{"fragment dropped", Redaction{}, "GET", "https://example.com/p#s3cr3t", "GET https://example.com:443/p"},
		{"userinfo of a URL without its //", Redaction{}, "GET", "https:alice:s3cr3t@example.com/p", "GET https://example.com/p"},
		{"userinfo of an opaque URL without a path", Redaction{}, "GET", "https:alice:s3cr3t@example.com", "GET https://example.com"},
		{"opaque userinfo with a / in the password", Redaction{}, "GET", "https:alice:s3/cr3t@example.com/p", "GET https://example.com/p"},
		{"escaped path kept", Redaction{}, "GET", "http://h/a%20b/c%2Fd", "GET http://h:80/a%20b/c%2Fd"},
		{"token", Redaction{}, "GET", "https://h/p?token=s3cr3t&page=2", "GET https://h:443/p?token=REDACTED&page=2"},
		{"api_key", Redaction{}, "GET", "https://h/?api_key=s3cr3t", "GET https://h:443/?api_key=REDACTED"},
		{"X-Amz-Signature", Redaction{}, "GET", "https://b.s3.amazonaws.com/o?X-Amz-Algorithm=AWS4&X-Amz-Credential=s3cr3t&X-Amz-Signature=s3cr3t",
			"GET https://b.s3.amazonaws.com:443/o?X-Amz-Algorithm=AWS4&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED"},
		{"password", Redaction{}, "GET", "http://h/login?user=bob&password=s3cr3t", "GET http://h:80/login?user=bob&password=REDACTED"},
		{"pass", Redaction{}, "GET", "http://h/login?user=bob&pass=s3cr3t&passphrase=s3cr3t", "GET http://h:80/login?user=bob&pass=REDACTED&passphrase=REDACTED"},
		{"PHPSESSID", Redaction{}, "GET", "http://h/?PHPSESSID=s3cr3t&sessid=s3cr3t", "GET http://h:80/?PHPSESSID=REDACTED&sessid=REDACTED"},
		{"case-insensitive", Redaction{}, "GET", "http://h/?ACCESS_TOKEN=s3cr3t&Sig=s3cr3t", "GET http://h:80/?ACCESS_TOKEN=REDACTED&Sig=REDACTED"},
		{"oauth code, session, jwt", Redaction{}, "GET", "http://h/cb?code=s3cr3t&sessionid=s3cr3t&jwt=s3cr3t&state=ok", "GET http://h:80/cb?code=REDACTED&sessionid=REDACTED&jwt=REDACTED&state=ok"},
		{"escaped key", Redaction{}, "GET", "http://h/?api%5Fkey=s3cr3t", "GET http://h:80/?api%5Fkey=REDACTED"},
		{"repeated key", Redaction{}, "GET", "http://h/?token=s3cr3t&token=s3cr3t", "GET http://h:80/?token=REDACTED&token=REDACTED"},
		{"key without value kept", Redaction{}, "GET", "http://h/?token&x=1", "GET http://h:80/?token&x=1"},
		{"order and encoding kept", Redaction{}, "GET", "http://h/?b=2&a=%20x&key=s3cr3t", "GET http://h:80/?b=2&a=%20x&key=REDACTED"},
		// ';' separates parts for many servers: a key after it is checked
		// too, and a secret value runs to the next '&' past any ';', as
		// for a server that does not split on it.
		{"semicolon separator", Redaction{}, "GET", "http://h/?a=1;token=s3cr3t&b=2", "GET http://h:80/?a=1;token=REDACTED&b=2"},
		{"semicolon inside a secret value", Redaction{}, "GET", "http://h/?token=s3cr3t;s3cr3t&b=2;c=3", "GET http://h:80/?token=REDACTED&b=2;c=3"},
		{"semicolon only", Redaction{}, "GET", "http://h/?page=2;sig=s3cr3t;x=s3cr3t", "GET http://h:80/?page=2;sig=REDACTED"},
		{"semicolon, nothing secret", Redaction{}, "GET", "http://h/?a=1;b=2&c=3", "GET http://h:80/?a=1;b=2&c=3"},
		// For a server that does not split on ';', the key runs to the
		// first '=': "token;v" is secret.
		{"semicolon in a secret key", Redaction{}, "GET", "http://h/?token;v=s3cr3t&b=2", "GET http://h:80/?token;v=REDACTED&b=2"},
		{"semicolon in a secret key after others", Redaction{}, "GET", "http://h/?a=1&x;api_key;v=s3cr3t;w=s3cr3t", "GET http://h:80/?a=1&x;api_key;v=REDACTED"},
		{"semicolons, no value", Redaction{}, "GET", "http://h/?token;a;b&c=1;token", "GET http://h:80/?token;a;b&c=1;token"},
		{"OmitQuery", Redaction{OmitQuery: true}, "GET", "http://h/p?user=bob&token=s3cr3t", "GET http://h:80/p"},
		{"custom SecretKeys replace the defaults", Redaction{SecretKeys: []string{"tenant"}}, "GET", "http://h/?tenant=s3cr3t&token=visible", "GET http://h:80/?tenant=REDACTED&token=visible"},
		{"empty SecretKeys redacts no query key", Redaction{SecretKeys: []string{}}, "GET", "http://h/?token=visible", "GET http://h:80/?token=visible"},
		{"no scheme", Redaction{}, "CONNECT", "//proxy.example:3128", "CONNECT proxy.example:3128"},
		// Path parameters: a secret value runs to the end of its segment.
		{"path parameter jsessionid", Redaction{}, "GET", "https://h/app;jsessionid=s3cr3t/x", "GET https://h:443/app;jsessionid=REDACTED/x"},
		{"path parameter at the end", Redaction{}, "GET", "https://h/api;token=s3cr3t", "GET https://h:443/api;token=REDACTED"},
		{"path parameters, the second secret", Redaction{}, "GET", "https://h/a;v=1;sig=s3cr3t;x=s3cr3t/b;c=2", "GET https://h:443/a;v=1;sig=REDACTED/b;c=2"},
		{"path parameters in two segments", Redaction{}, "GET", "https://h/a;key=s3cr3t/b;token=s3cr3t?page=2", "GET https://h:443/a;key=REDACTED/b;token=REDACTED?page=2"},
		{"escaped path parameter key", Redaction{}, "GET", "https://h/a;api%5Fkey=s3cr3t", "GET https://h:443/a;api%5Fkey=REDACTED"},
		{"path parameter, escaped path", Redaction{}, "GET", "https://h/a%20b;token=s3cr3t/c", "GET https://h:443/a%20b;token=REDACTED/c"},
		{"path parameter with a nested secret", Redaction{}, "GET", "https://h/a;next=%2Fcb%3Fcode%3Ds3cr3t/b", "GET https://h:443/a;next=REDACTED/b"},
		{"path parameters kept", Redaction{}, "GET", "https://h/cars;color=red;year=2012/x;v", "GET https://h:443/cars;color=red;year=2012/x;v"},
		// An escaped ';' starts a parameter too, for a server that
		// unescapes the path before it splits parameters off
		// (url.PathEscape writes a segment's ';' so).
		{"escaped semicolon", Redaction{}, "GET", "https://h/app%3Bjsessionid=s3cr3t/x", "GET https://h:443/app%3Bjsessionid=REDACTED/x"},
		{"escaped semicolon, lower case, at the end", Redaction{}, "GET", "https://h/a%3bv=1%3Btoken=s3cr3t", "GET https://h:443/a%3bv=1%3Btoken=REDACTED"},
		{"escaped semicolons kept", Redaction{}, "GET", "https://h/a%3Bb=1%3bc/d%3B", "GET https://h:443/a%3Bb=1%3bc/d%3B"},
		{"escaped percent is no semicolon", Redaction{}, "GET", "https://h/a%253Btoken=visible", "GET https://h:443/a%253Btoken=visible"},
		{"segment name is no parameter", Redaction{}, "GET", "https://h/token=visible;a=1", "GET https://h:443/token=visible;a=1"},
		{"path parameter without value kept", Redaction{}, "GET", "https://h/a;token/b;token=", "GET https://h:443/a;token/b;token=REDACTED"},
		{"path parameter, custom SecretKeys", Redaction{SecretKeys: []string{"tenant"}}, "GET", "https://h/a;tenant=s3cr3t;token=visible", "GET https://h:443/a;tenant=REDACTED"},
		{"path parameter with OmitQuery", Redaction{OmitQuery: true}, "GET", "https://h/a;token=s3cr3t?b=1", "GET https://h:443/a;token=REDACTED"},
		// Secrets nested in another key's value hide that value.
		{"nested query", Redaction{}, "GET", "https://h/login?next=/cb?token=s3cr3t&page=2", "GET https://h:443/login?next=REDACTED&page=2"},
		{"nested encoded URL", Redaction{}, "GET", "https://h/?redirect=https%3A%2F%2Fx%2Fcb%3Ftoken%3Ds3cr3t&a=1", "GET https://h:443/?redirect=REDACTED&a=1"},
		{"nested twice encoded", Redaction{}, "GET", "https://h/?next=%2Flogin%3Fnext%3D%252Fcb%253Fcode%253Ds3cr3t", "GET https://h:443/?next=REDACTED"},
		{"nested path parameter", Redaction{}, "GET", "https://h/?state=a&return_to=/p;jsessionid=s3cr3t", "GET https://h:443/?state=a&return_to=/p;jsessionid=REDACTED"},
		{"nested encoded path parameter", Redaction{}, "GET", "https://h/?return_to=%2Fp%3Bjsessionid%3Ds3cr3t&b=2", "GET https://h:443/?return_to=REDACTED&b=2"},
		{"nested fragment", Redaction{}, "GET", "https://h/?next=%2Fcb%23access_token%3Ds3cr3t", "GET https://h:443/?next=REDACTED"},
		{"nested userinfo", Redaction{}, "GET", "https://h/?proxy=http%3A%2F%2Falice%3As3cr3t%40p%3A3128", "GET https://h:443/?proxy=REDACTED"},
		{"nested userinfo, not encoded", Redaction{}, "GET", "https://h/?u=//alice:s3cr3t@p/x", "GET https://h:443/?u=REDACTED"},
		{"nested pair at the value's start", Redaction{}, "GET", "https://h/?q=token%3Ds3cr3t", "GET https://h:443/?q=REDACTED"},
		{"nested after a semicolon part", Redaction{}, "GET", "https://h/?a=1;next=/cb?sig=s3cr3t&b=2", "GET https://h:443/?a=1;next=REDACTED&b=2"},
		{"value still encoded after maxDecodes", Redaction{}, "GET", "https://h/?x=%2525252525252541", "GET https://h:443/?x=REDACTED"},
		{"nested, nothing secret", Redaction{}, "GET", "https://h/?next=https%3A%2F%2Fx%2Fcb%3Fpage%3D2&email=bob@example.com&q=a%20b&c=100%&d=YQ%3D%3D",
			"GET https://h:443/?next=https%3A%2F%2Fx%2Fcb%3Fpage%3D2&email=bob@example.com&q=a%20b&c=100%&d=YQ%3D%3D"},
		{"nested URL without userinfo kept", Redaction{}, "GET", "https://h/?next=https://x/u?email=bob@example.com", "GET https://h:443/?next=https://x/u?email=bob@example.com"},
		// Userinfo as browsers read it: without "//" after a special
		// scheme (as Target reads an opaque URL), or after backslashes.
		{"nested userinfo without //", Redaction{}, "GET", "https://h/?next=https:alice:s3cr3t@x/&a=1", "GET https://h:443/?next=REDACTED&a=1"},
		{"nested userinfo after one /", Redaction{}, "GET", "https://h/?next=HTTP:/alice:s3cr3t@x/", "GET https://h:443/?next=REDACTED"},
		{"nested userinfo, encoded, without //", Redaction{}, "GET", "https://h/?next=https%3Aalice%3As3cr3t%40x%2F", "GET https://h:443/?next=REDACTED"},
		{"nested userinfo after backslashes", Redaction{}, "GET", "https://h/?next=https:%5C%5Calice:s3cr3t@x/", "GET https://h:443/?next=REDACTED"},
		{"nested userinfo after a slash and a backslash", Redaction{}, "GET", "https://h/?next=%2F%5Calice:s3cr3t@x/", "GET https://h:443/?next=REDACTED"},
		{"nested path parameter userinfo without //", Redaction{}, "GET", "https://h/a;next=wss:alice:s3cr3t@x", "GET https://h:443/a;next=REDACTED"},
		{"mailto, scheme-like words kept", Redaction{}, "GET", "https://h/?to=mailto:bob@example.com&n=xhttp:bob@x&m=https:x/bob@y",
			"GET https://h:443/?to=mailto:bob@example.com&n=xhttp:bob@x&m=https:x/bob@y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			got := tc.rd.Target(tc.method, u)
			if got != tc.want {
				t.Errorf("Target(%q) =\n  %q\nwant\n  %q", tc.url, got, tc.want)
			}
			if strings.Contains(got, "s3cr3t") || strings.Contains(got, "alice") {
				t.Errorf("secret leaked into %q", got)
			}
		})
	}
	// Hosts a program set by hand, which url.Parse never gives: the port
	// is still added unambiguously; userinfo, which net/http would send
	// to the resolver, is dropped.
	for _, tc := range []struct{ host, want string }{
		{"fe80::", "GET http://[fe80::]:80/"},
		{"h:", "GET http://h:80/"},
		{"[::1]:", "GET http://[::1]:80/"},
		{"alice:s3cr3t@h", "GET http://h:80/"},
		{"alice:s3cr3t@h:8080", "GET http://h:8080/"},
		{"a@b:s3cr3t@h", "GET http://h:80/"},
		{"[alice:s3cr3t@::1]:8080", "GET http://[::1]:8080/"},
	} {
		if got := (Redaction{}).Target("GET", &url.URL{Scheme: "http", Host: tc.host, Path: "/"}); got != tc.want {
			t.Errorf("Target with Host %q = %q, want %q", tc.host, got, tc.want)
		}
	}
	// A RawQuery set by hand with a '#' sends a fragment, as a server's
	// holds the one a client sent.
	for _, tc := range []struct{ query, want string }{
		{"a=1#access_token=s3cr3t", "GET http://h:80/?a=1"},
		{"#s3cr3t", "GET http://h:80/"},
		{"token=s3cr3t#x", "GET http://h:80/?token=REDACTED"},
	} {
		if got := (Redaction{}).Target("GET", &url.URL{Scheme: "http", Host: "h", Path: "/", RawQuery: tc.query}); got != tc.want {
			t.Errorf("Target with RawQuery %q = %q, want %q", tc.query, got, tc.want)
		}
	}
	if got := (Redaction{}).Target("GET", nil); got != "GET" {
		t.Errorf("Target with nil URL = %q", got)
	}
}

func TestRedactionIsSecret(t *testing.T) {
	for _, tc := range []struct {
		rd   Redaction
		name string
		want bool
	}{
		{Redaction{}, "Authorization", true},
		{Redaction{}, "proxy-authorization", true},
		{Redaction{}, "Cookie", true},
		{Redaction{}, "Set-Cookie", true},
		{Redaction{SecretKeys: []string{}}, "Authorization", true}, // always, whatever SecretKeys says
		{Redaction{SecretKeys: []string{}}, "COOKIE", true},
		{Redaction{}, "X-Api-Key", true},
		{Redaction{}, "X-Amz-Security-Token", true},
		{Redaction{}, "Accept", false},
		{Redaction{}, "User-Agent", false},
		{Redaction{}, "", false},
		{Redaction{SecretKeys: []string{"tenant"}}, "X-Tenant-Id", true},
		{Redaction{SecretKeys: []string{"tenant"}}, "X-Api-Key", false},
		// Keys given in upper case match too.
		{Redaction{SecretKeys: []string{"TenAnt"}}, "x-tenant-id", true},
		// Names past the fast path's stack buffer, or not ASCII, take the
		// Unicode folding path: same answers.
		{Redaction{}, "X-Very-Long-Header-Name-That-Holds-A-Token", true},
		{Redaction{}, "X-Very-Long-Header-Name-That-Holds-Nothing", false},
		{Redaction{}, "Ümlaut-Token", true},
		{Redaction{}, "Ümlaut", false},
		{Redaction{}, "\u212aey", true}, // KELVIN SIGN folds to k: "key"
		{Redaction{}, "PAGE", false},
		// Custom keys that are not ASCII: either case folding makes a match.
		{Redaction{SecretKeys: []string{"κωδικος"}}, "ΚΩΔΙΚΟΣ", true},
		{Redaction{SecretKeys: []string{"κωδικος"}}, "x-κωδικοσ", true},
		{Redaction{SecretKeys: []string{"µ-token"}}, "μ-token", true}, // MICRO SIGN vs GREEK MU
		{Redaction{SecretKeys: []string{"ϰey"}}, "κey", true},
	} {
		if got := tc.rd.IsSecret(tc.name); got != tc.want {
			t.Errorf("%+v.IsSecret(%q) = %v, want %v", tc.rd, tc.name, got, tc.want)
		}
	}
}

// Redaction runs on every traced request: the common cases must not
// allocate beyond the target string itself.
func TestRedactionAllocs(t *testing.T) {
	rd := Redaction{}
	u, err := url.Parse("https://api.example.com/v1/items?page=2&sort=name")
	if err != nil {
		t.Fatal(err)
	}
	secret, err := url.Parse("https://api.example.com/v1/items?page=2&access_token=s3cr3t&sort=name")
	if err != nil {
		t.Fatal(err)
	}
	// A path parameter and escapes that hide nothing: looked at, not copied.
	plainParams, err := url.Parse("https://api.example.com/v1/items;v=2?q=connection%20tracing&since=2024-01-01T00%3A00%3A00Z&sort=a=b")
	if err != nil {
		t.Fatal(err)
	}
	goaway := `http2: server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=NO_ERROR, debug=""`
	for _, tc := range []struct {
		name string
		f    func()
		want float64
	}{
		{"IsSecret plain", func() { rd.IsSecret("page") }, 0},
		{"IsSecret mixed case", func() { rd.IsSecret("X-Api-Key") }, 0},
		{"Query without secrets", func() { rd.Query(u.RawQuery) }, 0},
		{"Target", func() { rd.Target("GET", u) }, 1},
		{"Target with a secret", func() { rd.Target("GET", secret) }, 2}, // and the redacted query
		{"Target with a path parameter and escapes, no secret", func() { rd.Target("GET", plainParams) }, 1},
		{"Text with a ';', no URL", func() { rd.Text(goaway) }, 0},
	} {
		if got := testing.AllocsPerRun(100, tc.f); got != tc.want {
			t.Errorf("%s: %v allocs, want %v", tc.name, got, tc.want)
		}
	}
}

// The default keys take a precomputed path; it must answer exactly as the
// general one given the same keys, and DefaultSecretKeys must hand out a
// copy that cannot change it.
func TestRedactionDefaultKeysPath(t *testing.T) {
	DefaultSecretKeys()[0] = "page"
	general := Redaction{SecretKeys: DefaultSecretKeys()}
	names := []string{"page", "token", "X-Api-Key", "PASSWD", "sigma", "sort", "authority", "zipcode", "q", "",
		"access_token", "Session-Id", "monkey", "jwt", "ab", "xcredentialx", "Secret", "pw", "pwd", "SIG"}
	for _, k := range DefaultSecretKeys() {
		names = append(names, k, strings.ToUpper(k), "x"+k+"x", k[:len(k)-1])
	}
	for _, name := range names {
		if got, want := (Redaction{}).IsSecret(name), general.IsSecret(name); got != want {
			t.Errorf("IsSecret(%q) = %v with the default keys, %v with them given", name, got, want)
		}
	}
	if (Redaction{}).IsSecret("page") {
		t.Error("changing DefaultSecretKeys()'s result changed the defaults")
	}
}

// TestRedactionTargetLong: targets past Target's stack buffer are built
// by concatenation, still in one allocation, with the same output.
func TestRedactionTargetLong(t *testing.T) {
	for _, n := range []int{0, 100, 200, 230, 240, 250, 260, 300, 1000} {
		u, err := url.Parse("https://api.example.com/" + strings.Repeat("p", n) + "?page=1&token=s3cr3t&" + strings.Repeat("q", n) + "=2")
		if err != nil {
			t.Fatal(err)
		}
		for _, rd := range []Redaction{{}, {OmitQuery: true}} {
			if got, want := rd.Target("GET", u), targetReference(rd, "GET", u); got != want {
				t.Errorf("%+v.Target(%q) =\n  %q\nwant\n  %q", rd, u, got, want)
			}
		}
		u.RawQuery = "page=1&" + strings.Repeat("q", n) + "=2"
		if got := testing.AllocsPerRun(10, func() { (Redaction{}).Target("GET", u) }); got != 1 {
			t.Errorf("path and query of %d bytes: %v allocs, want 1", n, got)
		}
	}
}

// pathClass must mark exactly the bytes url.URL.EscapedPath escapes, and
// ';' as one that may start a path parameter.
func TestRedactionPathSafe(t *testing.T) {
	for c := 0; c < 256; c++ {
		u := &url.URL{Path: "/a" + string([]byte{byte(c)}) + "b"}
		if got, want := pathClass[c]&pathEscape == 0, u.EscapedPath() == u.Path; got != want {
			t.Errorf("pathClass[%#x] = %v; EscapedPath(%q) = %q", c, pathClass[c], u.Path, u.EscapedPath())
		}
		if got, want := pathClass[c]&pathSemicolon != 0, c == ';'; got != want {
			t.Errorf("pathClass[%#x] = %v: pathSemicolon %v, want %v", c, pathClass[c], got, want)
		}
	}
}

// hasPort must agree with url.URL.Port on every host.
func TestRedactionHasPort(t *testing.T) {
	for _, host := range []string{"", ":", "h", "h:", "h:1", "h:80", "h:a", ":1", "1", "12", "1:2:3", "[::1]", "[::1]:", "[::1]:80",
		"::1", "fe80::", "fe80::1:80", "h:8x0", "h:80x", "[::1]x:80", "h:\u0661"} {
		if got, want := hasPort(host), (&url.URL{Host: host}).Port() != ""; got != want {
			t.Errorf("hasPort(%q) = %v, want %v", host, got, want)
		}
	}
}

// targetTestURLs are URLs whose targets are hard to get right: the seeds
// of FuzzTargetMatchesReference.
var targetTestURLs = []string{
	"http://127.0.0.1:34567/bench?page=1",
	"https://api.example.com/v2/projects/42/issues?state=open&sort=updated&per_page=50&page=3",
	"https://api.example.com/v1/items?page=2&access_token=s3cr3t&sort=name",
	"https://example.com", "https://example.com/", "http://example.com:80/", "https://example.com:8443/x",
	"ws://example.com/chat", "wss://example.com/chat", "WSS://Example.COM/chat", "ftp://example.com/f", "git+ssh://h/r",
	// IPv6, with and without brackets and ports; zones.
	"http://[::1]/x", "http://[::1]:8080/x", "http://[::1]:/x", "https://[2001:db8::1]:8443/x",
	"http://[fe80::1%25en0]/", "http://[fe80::1%25en0]:8080/", "http://::1/", "http://[::1/",
	// Empty hosts and ports, trailing colons, ports that are not numbers.
	"http:///path", "http://:80/", "http://:/", "http://h:/p", "http://h::/p", "http://h:0/", "http://h:99999999/",
	"http://h:80:90/", "http://h:x/", "//proxy.example:3128", "//h", "/just/a/path?token=1", "", "?token=1", "#frag", "*",
	// Opaque URLs.
	"mailto:user@example.com", "http:opaque?x=1", "https:alice:s3cr3t@example.com/p", "http:a@b@c/d@e", "http://x@y", "urn:isbn:0451450523", "http:%2Fx?token=1", "h:80",
	// Paths that need escaping, or keep an escaping of their own (RawPath).
	"http://h/a%2Fb", "http://h/a%20b/c%2Fd", "http://h/%7e", "http://h/%7E", "http://h/a%2fb", "http://h/caf%C3%A9", "http://h/café",
	"http://h/a b", "http://h/*", "http://h/a*b", "http://h/!$&'()*+,;=:@", "http://h/%25", "http://h/[x]", "http://h/a%2Fb%zz",
	"http://h/a\"b<c>", "http://h/~user/.../", "http://h/a;b,c",
	// Userinfo and fragments.
	"https://alice:s3cr3t@example.com/p?q=1", "http://s3cr3t@example.com/", "http://a%40b:c@h/", "http://h/p#s3cr3t", "http://h/p?x=1#frag?token=2",
	// Secret keys in many spellings.
	"http://h/?token=1", "http://h/?TOKEN=1", "http://h/?ToKeN=1", "http://h/?to%6Ben=1", "http://h/?to%6ben=1", "http://h/?api%5Fkey=1",
	"http://h/?api+key=1", "http://h/?%4Bey=1", "http://h/?\u212aey=1", "http://h/?%E2%84%AAey=1", "http://h/?%e2%84%aaey=1",
	"http://h/?x=1&&y=2", "http://h/?token", "http://h/?token&x=1", "http://h/?=1", "http://h/?token=", "http://h/?a=b=c&token==",
	"http://h/?%zz=1", "http://h/?k%=1", "http://h/?to%zzken=1", "http://h/?%ccode=1", "http://h/?authorization=1", "http://h/?Cookie=x",
	"http://h/?set-cookie=1", "http://h/?Proxy-Authorization=1", "http://h/?session_id=1", "http://h/?pwd=1", "http://h/?sigma=1",
	"http://h/?x_very_long_parameter_name_that_holds_a_token=1", "http://h/?x_very_long_parameter_name_that_holds_nothing=1",
	"http://h/?%C3%BCmlaut=1", "http://h/?ümlaut_token=1", "http://h/?σ=1", "http://h/?\xff=1", "http://h/?tok\xffen=1",
	"http://h/?page=1&token=s3cr3t&sort=2&KEY=3&jwt=4", "http://h/?&&&", "http://h/?&token=1&", "http://h/?a&b&c=1",
	"http://h/?x=%20y&token=a+b", "http://h/?coo\u212aie=1", "http://h/?Session=1", "http://h/?SIG=1", "http://h/?pass=1&passwd=2",
	"http://h/?a=1;token=2&b=3", "http://h/?token;v=1", "http://h/?x;to%6Ben;v=1;y=2&z=3", "http://h/?token=1;x=2&token;=3", "http://h/?;;token=1;",
	"http://h/?a;b=1;sig=2", "http://h/?a=1;b;c;token", "http://h/?k%;ey=1", "http://h/?a%3Btoken=1", "http://h/?a=1%3Btoken=2",
	"http://h/?" + strings.Repeat("q", 300) + "=1&token=2",
	// Path parameters.
	"http://h/app;jsessionid=1/x", "http://h/a;token=1", "http://h/a;b=1;sig=2;c=3/d;e=4", "http://h/a;to%6Ben=1", "http://h/a;token",
	"http://h/;token=1", "http://h/a;;key=1", "http://h/token=1;x", "http://h/a;=1;key=", "http://h/a%3Btoken=1", "http://h/a;api+key=1",
	"http://h/a;next=%2Fcb%3Ftoken%3D1/b", "http:x;token=1/y", "http://h/a;%zz=1;key=2", "http://h/a;k%=1",
	"http://h/a%3btoken=1", "http://h/a%3Bv=1%3bsig=2;x=3/b%3B", "http://h/a%3B%3Btoken=1", "http://h/a%3", "http://h/a%3;token=1", "http://h/a%253Bkey=1",
	"http:x%3Btoken=1/y", "http://h/a;b=%3Btoken=1",
	// Secrets nested in values.
	"http://h/?next=/cb?token=1", "http://h/?next=/cb?page=1", "http://h/?r=https%3A%2F%2Fx%2Fcb%3Ftoken%3D1", "http://h/?r=%2Fp%3Bjsessionid%3D1",
	"http://h/?r=%252Fcb%253Ftoken%253D1", "http://h/?r=%2525252525252541", "http://h/?r=%25252525252541", "http://h/?r=%%33D", "http://h/?r=%%34%30",
	"http://h/?u=//a:b@c", "http://h/?u=http%3A%2F%2Fa%40c", "http://h/?u=///x@y", "http://h/?e=bob@x&u=https://h/?e=bob@x", "http://h/?q=a%20b&c=100%",
	"http://h/?u=https:a:b@c", "http://h/?u=Https:/a@c", "http://h/?u=ftp:\\\\a@c", "http://h/?u=%5C%5Ca@c", "http://h/?u=x//y/\\a@c", "http://h/?u=xws:a@c",
	"http://h/?u=mailto:a@c", "http://h/?u=https:x/a@c", "http://h/?u=a:https:b@c", "http://h/a;u=wss:a@c",
	"http://h/?d=YQ%3D%3D", "http://h/?q=key=1", "http://h/?q=x#token=1", "http://h/?n=%2Fcb%23code%3D1", "http://h/?a=1;n=/cb?sig=1&b=2",
	"http://h/?n=/cb?cookie=1", "http://h/?n=x%3Fcookie=1", "http://h/?n=a+b%3D1", "http://h/?n=%3Dtoken",
	"https://" + strings.Repeat("h", 100) + ".example/" + strings.Repeat("p", 100) + "?" + strings.Repeat("a=1&", 20),
}

// FuzzTargetMatchesReference: Target, Query and IsSecret give what they
// gave before they were made faster (targetReference and the functions
// below it, kept as they were), for URLs parsed and set by hand.
func FuzzTargetMatchesReference(f *testing.F) {
	for _, s := range targetTestURLs {
		f.Add("GET", s, "http", "h", "/p", "", "x=1", "", uint8(0))
	}
	for i, h := range []string{"fe80::", "h:", "[::1]:", "::1", "1.2.3.4", "[::1", "::", ":", ":80", "[", "]", "a:b:c", "[a]:b", "",
		"[::1]:80", "h:80", "[fe80::1%en0]", "fe80::1%en0", "h:\u0661", "[]", "[]:"} {
		scheme := []string{"http", "https", "ws", "wss", "ftp", ""}[i%6]
		f.Add("GET", "", scheme, h, "/", "", "", "", uint8(i))
	}
	f.Add("POST", "", "http", "h", "/a/b", "/a%2Fb", "token=1", "", uint8(0)) // RawPath matching Path
	f.Add("POST", "", "http", "h", "/a/b", "/a%2Fc", "token=1", "", uint8(0)) // RawPath not matching
	f.Add("POST", "", "http", "h", "/a b", "/a%20b", "token=1", "", uint8(0)) // RawPath, the usual escaping
	f.Add("PUT", "", "https", "h", "opaque", "", "x=1", "", uint8(4))         // opaque
	for _, p := range []string{"*", "/*", "/a*b", "/a%b", "/café", "/a b", "/a?b", "/a#b", "/!'()", "/[x]", "/a\x00b", ""} {
		f.Add("GET", "", "https", "h", p, "", "", "", uint8(0)) // paths that need escaping, set by hand
	}
	f.Add("GET", "", "http", "h", "/", "", "tenant=1&token=2", "tenant", uint8(2))                // custom keys
	f.Add("GET", "", "http", "h", "/", "", "key=1", "\u212aey", uint8(2))                         // KELVIN SIGN key, short name
	f.Add("GET", "", "http", "h", "/", "", strings.Repeat("x", 40)+"key=1", "\u212aey", uint8(2)) // and a long one
	f.Add("GET", "", "http", "h", "/", "", "x-κωδικοσ=1", "κωδικος", uint8(2))
	f.Add("GET", "", "http", "h", "/", "", "μ-token=1", "µ-token", uint8(2))
	f.Add("GET", "", "http", "h", "/", "", "κey=1", "ϰey", uint8(2))
	f.Add("GET", "", "http", "h", "/", "", "anything=1", "", uint8(2)) // one empty key: all secret
	f.Add("GET", "", "http", "h", "/", "", "a+b=1", "a b", uint8(2))   // '+' unescaped to match
	f.Add("GET", "", "http", "h", "/", "", "a+b=1", "a+b", uint8(2))   // or not to
	f.Add("GET", "", "http", "h", "/", "", "a%2Bb=1&a+b=2", "a+b,x", uint8(2))
	f.Add("GET", "", "http", "h", "/", "", "token=1", "", uint8(8))     // no keys at all
	f.Add("GET", "", "http", "h", "/", "", "token=1&x=2", "", uint8(1)) // OmitQuery
	f.Add("GET", "", "http", "h", "/", "", "Authorization=1&COOKIE=2", "", uint8(8))

	f.Fuzz(func(t *testing.T, method, rawURL, scheme, host, path, rawPath, rawQuery, keys string, flags uint8) {
		var rd Redaction
		rd.OmitQuery = flags&1 != 0
		switch {
		case flags&2 != 0:
			rd.SecretKeys = strings.Split(keys, ",")
		case flags&8 != 0:
			rd.SecretKeys = []string{}
		}
		check := func(u *url.URL) {
			t.Helper()
			if got, want := rd.Target(method, u), targetReference(rd, method, u); got != want {
				t.Errorf("%+v.Target(%q, %#v) =\n  %q\nwant\n  %q", rd, method, u, got, want)
			}
		}
		if u, err := url.Parse(rawURL); err == nil {
			check(u)
			// Text and Target apply the same rules: a target redacted
			// by one is left as it is by the other. (Only for URLs with
			// a host: Text takes "a:b@c" without one for userinfo.)
			tg := rd.Target("GET", u)
			if u.Host != "" && u.Opaque == "" && !strings.ContainsFunc(tg, func(r rune) bool { return r <= ' ' || strings.ContainsRune("\"'<>`\x7f", r) }) {
				if got := rd.Text(tg); got != tg {
					t.Errorf("%+v.Text(%q) = %q, want it unchanged", rd, tg, got)
				}
			}
		}
		u := &url.URL{Scheme: scheme, Host: host, Path: path, RawPath: rawPath, RawQuery: rawQuery, User: url.User("s3cr3t"), Fragment: "f"}
		if flags&4 != 0 {
			u.Opaque, u.Path = path, ""
		}
		check(u)
		if got, want := rd.Query(rawQuery), queryReference(rd, rawQuery); got != want {
			t.Errorf("%+v.Query(%q) = %q, want %q", rd, rawQuery, got, want)
		}
		for _, name := range []string{method, host, path, rawQuery, keys} {
			if got, want := rd.IsSecret(name), isSecretReference(rd, name); got != want {
				t.Errorf("%+v.IsSecret(%q) = %v, want %v", rd, name, got, want)
			}
		}
		if got, want := hasPort(host), u.Port() != ""; got != want {
			t.Errorf("hasPort(%q) = %v, want %v", host, got, want)
		}
	})
}

// targetReference is Redaction.Target as it was before it was made faster,
// with the functions below it: the specification FuzzTargetMatchesReference
// holds the faster code to. (containsFold, unchanged, is the package's.)
// Path parameters and nested secrets came later: pathReference and
// nestedReference specify them.
func targetReference(rd Redaction, method string, u *url.URL) string {
	if method == "" {
		method = "GET"
	}
	if u == nil {
		return method
	}
	if i := strings.LastIndex(u.Host, "@"); i >= 0 { // userinfo in a Host set by hand
		c := *u
		c.Host = u.Host[i+1:]
		if strings.HasPrefix(u.Host, "[") {
			c.Host = "[" + c.Host
		}
		u = &c
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
		b.WriteString(host)
		b.WriteByte(':')
		b.WriteString(port)
	default:
		h := u.Hostname()
		if net.ParseIP(u.Host) != nil {
			h = u.Host
		}
		b.WriteString(net.JoinHostPort(h, port))
	}
	if op := u.Opaque; op != "" {
		// Userinfo dropped: up to the last '@' (a password may hold a '/').
		if i := strings.LastIndex(op, "@"); i >= 0 {
			if strings.HasPrefix(op, "//") {
				op = "//" + op[i+1:]
			} else {
				op = op[i+1:]
			}
		}
		b.WriteString(pathReference(rd, op))
	} else {
		b.WriteString(pathReference(rd, u.EscapedPath()))
	}
	if q, _, _ := strings.Cut(u.RawQuery, "#"); q != "" && !rd.OmitQuery { // a '#' set by hand starts a fragment
		b.WriteByte('?')
		b.WriteString(queryReference(rd, q))
	}
	return b.String()
}

// queryReference hides, in each '&'-separated part, all after the '=' of
// the first secret key: the part's own, to its first '=', or one after a
// ';' (servers that split on it), or one whose value, to the next ';',
// holds a secret (nestedReference).
func queryReference(rd Redaction, rawQuery string) string {
	secret := func(k string) bool {
		if key, err := url.QueryUnescape(k); err == nil {
			k = key
		}
		return isSecretReference(rd, k)
	}
	var b strings.Builder
	found := false
	for i, part := range strings.Split(rawQuery, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		if k, _, hasValue := strings.Cut(part, "="); hasValue && secret(k) {
			b.WriteString(k + "=" + Redacted)
			found = true
			continue
		}
		off, hidden := 0, false
		for _, sub := range strings.Split(part, ";") {
			if k, v, hasValue := strings.Cut(sub, "="); hasValue && (secret(k) || nestedReference(rd, v)) {
				b.WriteString(part[:off+len(k)] + "=" + Redacted)
				found, hidden = true, true
				break
			}
			off += len(sub) + 1
		}
		if !hidden {
			b.WriteString(part)
		}
	}
	if !found {
		return rawQuery
	}
	return b.String()
}

// pathReference hides, in each '/'-separated segment of an escaped path,
// all after the '=' of its first parameter (after a ';' or "%3B", to the
// next) whose key, path-unescaped, is secret or whose value holds a
// secret.
func pathReference(rd Redaction, path string) string {
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		seps := paramSepReference.FindAllStringIndex(seg, -1)
		for j, sep := range seps {
			end := len(seg)
			if j+1 < len(seps) {
				end = seps[j+1][0]
			}
			k, v, hasValue := strings.Cut(seg[sep[1]:end], "=")
			if !hasValue {
				continue
			}
			key := k
			if unescaped, err := url.PathUnescape(k); err == nil {
				key = unescaped
			}
			if isSecretReference(rd, key) || nestedReference(rd, v) {
				segs[i] = seg[:sep[1]] + k + "=" + Redacted
				break
			}
		}
	}
	return strings.Join(segs, "/")
}

var (
	paramSepReference = regexp.MustCompile(`;|%3[bB]`)
	pieceSepReference = regexp.MustCompile(`[?&;#]`)
	userinfoReference = regexp.MustCompile(`(?i)(?:[/\\]{2}|(?:^|[^a-z0-9+.\-])(?:https?|wss?|ftp):)[/\\]*[^/?#]*@`)
	escapeReference   = regexp.MustCompile(`%[0-9A-Fa-f]{2}`)
)

// nestedReference reports whether v, as it is or decoded up to maxDecodes
// times, holds a piece (between '?', '&', ';', '#') that is a pair with a
// secret key, or userinfo after a "//" (or backslashes), or after a
// special scheme's colon; or whether one more decoding would still change
// it.
func nestedReference(rd Redaction, v string) bool {
	for n := 0; ; n++ {
		for _, piece := range pieceSepReference.Split(v, -1) {
			if k, _, hasValue := strings.Cut(piece, "="); hasValue {
				if key, err := url.QueryUnescape(k); err == nil {
					k = key
				}
				if isSecretReference(rd, k) {
					return true
				}
			}
		}
		if userinfoReference.MatchString(v) {
			return true
		}
		d := escapeReference.ReplaceAllStringFunc(v, func(e string) string {
			c, _ := strconv.ParseUint(e[1:], 16, 8)
			return string([]byte{byte(c)})
		})
		if d == v {
			return false
		}
		if n == maxDecodes {
			return true
		}
		v = d
	}
}

var keysByFirstReference = func() (t [utf8.RuneSelf][]string) {
	for _, k := range defaultSecretKeys {
		t[k[0]] = append(t[k[0]], k)
	}
	return t
}()

func isSecretReference(rd Redaction, name string) bool {
	var buf [32]byte
	if len(name) > len(buf) || !lowerASCIIReference(buf[:], name) {
		return isSecretFoldReference(rd, name)
	}
	lower := buf[:len(name)]
	switch string(lower) {
	case "authorization", "proxy-authorization", "cookie", "set-cookie":
		return true
	}
	if rd.SecretKeys == nil {
		for i, c := range lower {
			for _, k := range keysByFirstReference[c] {
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

func isSecretFoldReference(rd Redaction, name string) bool {
	lower := strings.ToLower(name)
	switch lower {
	case "authorization", "proxy-authorization", "cookie", "set-cookie":
		return true
	}
	keys := rd.SecretKeys
	if keys == nil {
		keys = defaultSecretKeys
	}
	for _, k := range keys {
		if strings.Contains(lower, strings.ToLower(k)) || containsFold(name, k) {
			return true
		}
	}
	return false
}

func lowerASCIIReference(dst []byte, s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return false
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst[i] = c
	}
	return true
}

// TestSecretKeyCaseFolding: keys are compared "without regard to
// case", and isSecretFold says it follows strings.EqualFold (Σ/ς, µ/μ)
// as well as ToLower (KELVIN SIGN). EqualFold says U+017F LATIN SMALL
// LETTER LONG S is an s, yet a key spelled with it is not hidden:
// containsFold compares windows of len(key) bytes, and ſ is two bytes.
func TestSecretKeyCaseFolding(t *testing.T) {
	for _, key := range []string{"\u017Fecret", "pa\u017F\u017Fword", "\u017Fession", "api_\u017Fig"} {
		var want string
		for _, k := range defaultSecretKeys {
			for i := 0; i+len(k) <= len(key); i++ {
				for j := i + 1; j <= len(key); j++ {
					if strings.EqualFold(key[i:j], k) {
						want = k
					}
				}
			}
		}
		if want == "" {
			t.Fatalf("%q: EqualFold matches no key; test is wrong", key)
		}
		if !(Redaction{}).IsSecret(key) {
			t.Errorf("IsSecret(%q) = false, though strings.EqualFold matches it with %q", key, want)
		}
		u, _ := url.Parse("https://h/?" + url.QueryEscape(key) + "=hunter2")
		if tg := (Redaction{}).Target("GET", u); strings.Contains(tg, "hunter2") {
			t.Errorf("target %q keeps the value of %q", tg, key)
		}
	}
}

// TestRedactionText: the URLs and targets that error texts quote lose what
// Target hides, whatever quotes them; texts without them are kept.
func TestRedactionText(t *testing.T) {
	for _, tc := range []struct {
		name string
		rd   Redaction
		in   string
		want string
	}{
		{"nothing to hide", Redaction{}, "read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer",
			"read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer"},
		{"key=value outside a URL kept", Redaction{}, `http2: server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=NO_ERROR, debug=""`,
			`http2: server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=NO_ERROR, debug=""`},
		{"question marks, an address, a number sign", Redaction{}, "why? really?! bob@example.com wrote #3", "why? really?! bob@example.com wrote #3"},
		{"echoed target", Redaction{}, `net/http: HTTP/1.x transport connection broken: malformed HTTP status code "/x?token=s3cr3t&a=1"`,
			`net/http: HTTP/1.x transport connection broken: malformed HTTP status code "/x?token=REDACTED&a=1"`},
		{"HTTP/2 :path", Redaction{}, `http2: invalid request :path "api?a=1&access_token=s3cr3t"`, `http2: invalid request :path "api?a=1&access_token=REDACTED"`},
		{"URL unquoted", Redaction{}, "GET http://alice:s3cr3t@h:1/x?sig=s3cr3t#s3cr3t giving up: EOF", "GET http://h:1/x?sig=REDACTED giving up: EOF"},
		{"http.Client's stripped password", Redaction{}, `Get "http://alice:***@h/x?a=1&token=s3cr3t": EOF`, `Get "http://h/x?a=1&token=REDACTED": EOF`},
		{"@ in the query", Redaction{}, `Get "https://h/u?email=bob@example.com&key=s3cr3t": EOF`, `Get "https://h/u?email=bob@example.com&key=REDACTED": EOF`},
		{"@ in the password", Redaction{}, "dial http://alice:s3@cr3t@h/", "dial http://h/"},
		{"IPv6 host", Redaction{}, "http://[::1]:8080/x?token=s3cr3t", "http://[::1]:8080/x?token=REDACTED"},
		{"any scheme", Redaction{}, `"ftp://alice:s3cr3t@h/f"`, `"ftp://h/f"`},
		{"several URLs", Redaction{}, "http://alice:s3cr3t@a/?key=s3cr3t then http://h/?b=1 then /c?jwt=s3cr3t",
			"http://a/?key=REDACTED then http://h/?b=1 then /c?jwt=REDACTED"},
		{"fragment", Redaction{}, `Get "https://h/cb#access_token=s3cr3t": EOF`, `Get "https://h/cb": EOF`},
		{"fragment after a query", Redaction{}, `status code "/cb?a=1#access_token=s3cr3t"`, `status code "/cb?a=1"`},
		{"escaped quote inside a quoted URL", Redaction{}, `parse "http://alice:p\"s3cr3t@h/": net/url: invalid userinfo`, `parse "http://h/": net/url: invalid userinfo`},
		// What url.Parse could not parse: a '/', '?' or '#' in a password
		// makes the rest of it a "port", which net/url's error quotes.
		{"/ in the password", Redaction{}, `parse "http://alice:s3cr3t/x@h:3128": invalid port ":s3cr3t" after host`,
			`parse "http://h:3128": invalid port "REDACTED" after host`},
		{"? in the password", Redaction{}, `parse "http://alice:s3cr3t?x@h:3128": invalid port ":s3cr3t" after host`,
			`parse "http://h:3128": invalid port "REDACTED" after host`},
		{"# in the password, cut by url.Parse", Redaction{}, `parse "http://alice:s3cr3t": invalid port ":s3cr3t" after host`,
			`parse "http://REDACTED": invalid port "REDACTED" after host`},
		{"OmitQuery", Redaction{OmitQuery: true}, `status code "/x?a=1&b=2" and http://h/p?c=3 and /d?s3cr3t; why? really?!`,
			`status code "/x" and http://h/p and /d why? really?!`},
		// A query OmitQuery does not drop, as it may be prose, still
		// loses its secrets.
		{"OmitQuery, a query after ?!", Redaction{OmitQuery: true}, "http://h/?!token=s3cr3t and GET /p?/x&sig=s3cr3t",
			"http://h/?!token=REDACTED and GET /p?/x&sig=REDACTED"},
		{"custom SecretKeys", Redaction{SecretKeys: []string{"tenant"}}, "http://h/?tenant=s3cr3t&token=visible", "http://h/?tenant=REDACTED&token=visible"},
		// A Host set by hand with userinfo, as a dial's error quotes it.
		{"userinfo without a scheme", Redaction{}, "dial tcp: lookup alice:s3cr3t@h: no such host", "dial tcp: lookup h: no such host"},
		{"userinfo in brackets", Redaction{}, "dial [alice:s3cr3t@::1]:80", "dial [::1]:80"},
		{"an @ after a path kept", Redaction{}, `code "/a:b/c@d?x=1"`, `code "/a:b/c@d?x=1"`},
		{"userinfo without a scheme, @ in the query", Redaction{}, "alice:s3cr3t@h/x?e=bob@example.com", "h/x?e=bob@example.com"},
		{"path parameter", Redaction{}, `Get "https://h/app;jsessionid=s3cr3t/x": EOF`, `Get "https://h/app;jsessionid=REDACTED/x": EOF`},
		{"path parameter in an echoed target", Redaction{}, `malformed HTTP status code "/api;token=s3cr3t"`, `malformed HTTP status code "/api;token=REDACTED"`},
		{"escaped semicolon path parameter", Redaction{}, `Get "https://h/app%3Bjsessionid=s3cr3t": EOF`, `Get "https://h/app%3Bjsessionid=REDACTED": EOF`},
		{"path parameter before a query", Redaction{}, "http://alice:s3cr3t@h/a;sig=s3cr3t;b=s3cr3t/c?key=s3cr3t#s3cr3t", "http://h/a;sig=REDACTED/c?key=REDACTED"},
		{"path parameter with OmitQuery", Redaction{OmitQuery: true}, "http://h/a;sig=s3cr3t?b=1", "http://h/a;sig=REDACTED"},
		{"path parameter, fragment before the query", Redaction{}, "http://h/a;sig=s3cr3t#x?y", "http://h/a;sig=REDACTED"},
		{"nested query", Redaction{}, `Get "https://h/login?next=/cb?token=s3cr3t&page=2": EOF`, `Get "https://h/login?next=REDACTED&page=2": EOF`},
		{"nested encoded URL", Redaction{}, `Get "https://h/?redirect=https%3A%2F%2Fx%2Fcb%3Ftoken%3Ds3cr3t": EOF`, `Get "https://h/?redirect=REDACTED": EOF`},
		{"nested userinfo", Redaction{}, "http://h/?next=https://alice:s3cr3t@x/", "http://h/?next=REDACTED"},
		{"nested userinfo without //", Redaction{}, `Get "http://h/?next=https:alice:s3cr3t@x/&a=1": EOF`, `Get "http://h/?next=REDACTED&a=1": EOF`},
		{"semicolons in prose kept", Redaction{}, "http2: server sent GOAWAY and closed the connection; LastStreamID=1; a;b=c",
			"http2: server sent GOAWAY and closed the connection; LastStreamID=1; a;b=c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.rd.Text(tc.in); got != tc.want {
				t.Errorf("Text(%q) =\n  %q\nwant\n  %q", tc.in, got, tc.want)
			}
		})
	}
	plain := "read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer"
	if a := testing.AllocsPerRun(100, func() { (Redaction{}).Text(plain) }); a != 0 {
		t.Errorf("Text of an error that quotes no URL: %v allocs", a)
	}
}

// TestRedactionTextManyPorts: a text that quotes many invalid ports (a
// peer's, echoed) is redacted in one pass, not copied for each: its cost
// stays linear in its length.
func TestRedactionTextManyPorts(t *testing.T) {
	const n = 1000
	s := strings.Repeat(`invalid port ":s3cr3t" after host; `, n)
	var got string
	allocs := testing.AllocsPerRun(5, func() { got = (Redaction{}).Text(s) })
	if want := strings.Repeat(`invalid port "REDACTED" after host; `, n); got != want {
		t.Fatalf("Text = %.80q..., want %.80q...", got, want)
	}
	if allocs > 30 {
		t.Errorf("Text of %d invalid ports: %v allocations, want a few", n, allocs)
	}
}

// TestEventErrorTextRedacted: every format writes an event's error
// through its Spy's Redaction (Hook Panic's too), while the event keeps
// the error itself.
func TestEventErrorTextRedacted(t *testing.T) {
	var jsonOut, textOut, slogOut strings.Builder
	jsonSink, textSink := NewJSONSink(&jsonOut, nil), NewTextSink(&textOut, nil)
	err := errors.New(`Get "http://alice:s3cr3t@h/x?tenant=s3cr3t&token=visible": EOF`)
	var hookErr error
	spy := &Spy{
		Sink:      MultiSink(jsonSink, textSink, NewSlogSink(slog.New(slog.NewJSONHandler(&slogOut, &slog.HandlerOptions{Level: slog.LevelDebug})))),
		Redaction: Redaction{SecretKeys: []string{"tenant"}},
		Hooks: Hooks{Event: func(e *Event) {
			if e.Message == MsgRequestError {
				hookErr = e.Err
				panic("hook saw " + e.Err.Error())
			}
		}},
	}
	spy.Emit(Event{Message: MsgRequestError, Op: "request", Err: err})
	if hookErr != err {
		t.Errorf("the hook got %v, not the error itself", hookErr)
	}
	jsonSink.Close()
	textSink.Close()
	for name, out := range map[string]string{"JSON": jsonOut.String(), "text": textOut.String(), "slog": slogOut.String()} {
		if strings.Contains(out, "s3cr3t") || strings.Contains(out, "alice") {
			t.Errorf("%s leaks:\n%s", name, out)
		}
		if strings.Count(out, "tenant=REDACTED&token=visible") != 2 { // the event and the Hook Panic
			t.Errorf("%s: want the error, redacted, in the event and in the Hook Panic:\n%s", name, out)
		}
	}
}

// urlErrConn is a connection of a tunnelling library, over a real
// socket, whose errors name the tunnel's URL, credentials and all.
type urlErrConn struct{ net.Conn }

func (c urlErrConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("read wss://alice:s3cr3t@tunnel.example/t?token=s3cr3t: %w", err)
	}
	return n, err
}

// TestConnInfoLastErrorRedacted: a record's last error, which reports
// show, is redacted as events are.
func TestConnInfoLastErrorRedacted(t *testing.T) {
	c, s := tcpPair(t)
	defer c.Close()
	s.SetLinger(0)
	s.Close() // a reset: the read below fails
	var out strings.Builder
	sink := NewJSONSink(&out, nil)
	wc := (&Spy{Sink: sink}).WrapConn(urlErrConn{c}, Client)
	_, err := wc.Read(make([]byte, 1))
	if err == nil || !strings.Contains(err.Error(), "alice:s3cr3t") {
		t.Fatalf("Read: %v, want the tunnel's error as it is", err)
	}
	ci := RecordOf(wc).Snapshot()
	if ci.LastError == "" || strings.Contains(ci.LastError, "s3cr3t") || strings.Contains(ci.LastError, "alice") {
		t.Errorf("LastError = %q", ci.LastError)
	}
	if want := "wss://tunnel.example/t?token=REDACTED"; !strings.Contains(ci.LastError, want) {
		t.Errorf("LastError = %q, want it to hold %q", ci.LastError, want)
	}
	wc.Close()
	sink.Close()
	if strings.Contains(out.String(), "s3cr3t") {
		t.Errorf("events leak:\n%s", out.String())
	}
}
