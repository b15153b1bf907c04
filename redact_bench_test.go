package connscope

import (
	"net/url"
	"testing"
)

// BenchmarkTarget measures Redaction.Target on targets like those of
// traced requests: it runs once per request. For instruction counts, run
// the test binary under valgrind --tool=callgrind with GOGC=off,
// GOMAXPROCS=1 and GODEBUG=asyncpreemptoff=1, at -test.benchtime 300000x
// and 100000x, and divide the difference of the totals by 200000.
func BenchmarkTarget(b *testing.B) {
	for _, bc := range []struct{ name, url string }{
		{"local", "http://127.0.0.1:34567/bench?page=1"},
		{"rest", "https://api.example.com/v2/projects/42/issues?state=open&sort=updated&per_page=50&page=3"},
		{"secret", "https://api.example.com/v1/items?page=2&access_token=s3cr3t&sort=name"},
		{"noquery", "https://api.example.com/v1/items/42"},
		{"long", "https://api.example.com/v1/search?q=connection+tracing&lang=en&region=eu-west-1&fields=id,name,created_at,updated_at&sort=-updated_at&limit=100&offset=200&include=owner,labels"},
		{"escaped", "https://api.example.com/v1/search?q=connection%20tracing&since=2024-01-01T00%3A00%3A00Z&next=https%3A%2F%2Fapi.example.com%2Fv1%3Fpage%3D2"},
		{"pathparam", "https://api.example.com/app;jsessionid=s3cr3t/items?page=2"},
		{"nested", "https://api.example.com/login?next=https%3A%2F%2Fapp.example.com%2Fcb%3Fcode%3Ds3cr3t&page=2"},
	} {
		u, err := url.Parse(bc.url)
		if err != nil {
			b.Fatal(err)
		}
		var rd Redaction
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rd.Target("GET", u)
			}
		})
	}
}
