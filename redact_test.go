package connscope

import (
	"net/url"
	"strings"
	"testing"
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
		{"http default port", Redaction{}, "POST", "http://example.com/a/b", "POST http://example.com:80/a/b"},
		{"explicit port kept", Redaction{}, "GET", "https://example.com:8443/x", "GET https://example.com:8443/x"},
		{"ws default port", Redaction{}, "GET", "wss://example.com/chat", "GET wss://example.com:443/chat"},
		{"IPv6 host", Redaction{}, "GET", "http://[::1]/x", "GET http://[::1]:80/x"},
		{"IPv6 host with port", Redaction{}, "GET", "https://[2001:db8::1]:8443/x", "GET https://[2001:db8::1]:8443/x"},
		{"fragment dropped", Redaction{}, "GET", "https://example.com/p#s3cr3t", "GET https://example.com:443/p"},
		{"escaped path kept", Redaction{}, "GET", "http://h/a%20b/c%2Fd", "GET http://h:80/a%20b/c%2Fd"},
		{"token", Redaction{}, "GET", "https://h/p?token=s3cr3t&page=2", "GET https://h:443/p?token=REDACTED&page=2"},
		{"api_key", Redaction{}, "GET", "https://h/?api_key=s3cr3t", "GET https://h:443/?api_key=REDACTED"},
		{"X-Amz-Signature", Redaction{}, "GET", "https://b.s3.amazonaws.com/o?X-Amz-Algorithm=AWS4&X-Amz-Credential=s3cr3t&X-Amz-Signature=s3cr3t",
			"GET https://b.s3.amazonaws.com:443/o?X-Amz-Algorithm=AWS4&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED"},
		{"password", Redaction{}, "GET", "http://h/login?user=bob&password=s3cr3t", "GET http://h:80/login?user=bob&password=REDACTED"},
		{"case-insensitive", Redaction{}, "GET", "http://h/?ACCESS_TOKEN=s3cr3t&Sig=s3cr3t", "GET http://h:80/?ACCESS_TOKEN=REDACTED&Sig=REDACTED"},
		{"oauth code, session, jwt", Redaction{}, "GET", "http://h/cb?code=s3cr3t&sessionid=s3cr3t&jwt=s3cr3t&state=ok", "GET http://h:80/cb?code=REDACTED&sessionid=REDACTED&jwt=REDACTED&state=ok"},
		{"escaped key", Redaction{}, "GET", "http://h/?api%5Fkey=s3cr3t", "GET http://h:80/?api%5Fkey=REDACTED"},
		{"repeated key", Redaction{}, "GET", "http://h/?token=s3cr3t&token=s3cr3t", "GET http://h:80/?token=REDACTED&token=REDACTED"},
		{"key without value kept", Redaction{}, "GET", "http://h/?token&x=1", "GET http://h:80/?token&x=1"},
		{"order and encoding kept", Redaction{}, "GET", "http://h/?b=2&a=%20x&key=s3cr3t", "GET http://h:80/?b=2&a=%20x&key=REDACTED"},
		{"OmitQuery", Redaction{OmitQuery: true}, "GET", "http://h/p?user=bob&token=s3cr3t", "GET http://h:80/p"},
		{"custom SecretKeys replace the defaults", Redaction{SecretKeys: []string{"tenant"}}, "GET", "http://h/?tenant=s3cr3t&token=visible", "GET http://h:80/?tenant=REDACTED&token=visible"},
		{"empty SecretKeys redacts no query key", Redaction{SecretKeys: []string{}}, "GET", "http://h/?token=visible", "GET http://h:80/?token=visible"},
		{"no scheme", Redaction{}, "CONNECT", "//proxy.example:3128", "CONNECT proxy.example:3128"},
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
	// is still added unambiguously.
	for _, tc := range []struct{ host, want string }{
		{"fe80::", "GET http://[fe80::]:80/"},
		{"h:", "GET http://h:80/"},
		{"[::1]:", "GET http://[::1]:80/"},
	} {
		if got := (Redaction{}).Target("GET", &url.URL{Scheme: "http", Host: tc.host, Path: "/"}); got != tc.want {
			t.Errorf("Target with Host %q = %q, want %q", tc.host, got, tc.want)
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
	for _, tc := range []struct {
		name string
		f    func()
		want float64
	}{
		{"IsSecret plain", func() { rd.IsSecret("page") }, 0},
		{"IsSecret mixed case", func() { rd.IsSecret("X-Api-Key") }, 0},
		{"Query without secrets", func() { rd.Query(u.RawQuery) }, 0},
		{"Target", func() { rd.Target("GET", u) }, 1},
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
