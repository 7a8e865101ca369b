package endpoints

import "testing"

func TestAllows(t *testing.T) {
	l := MustParse("http://prometheus.istio-system:9090, https://thanos.example.com/api/prom")
	for _, c := range []struct {
		address string
		ok      bool
	}{
		{"http://prometheus.istio-system:9090", true},
		{"http://prometheus.istio-system:9090/", true},
		{"http://PROMETHEUS.istio-system:9090", true},
		{"https://thanos.example.com/api/prom", true},
		{"https://thanos.example.com:443/api/prom/", true},
		{"https://thanos.example.com/api/prom/sub", true},
		{"https://thanos.example.com/api/prometheus", false}, // not under /api/prom
		{"https://thanos.example.com/api/prom/../../admin", false},
		{"https://thanos.example.com/", false},
		{"http://thanos.example.com/api/prom", false},  // scheme
		{"http://prometheus.istio-system:9091", false}, // port
		{"http://prometheus.istio-system", false},      // port 80
		{"http://prometheus.istio-system.evil.com:9090", false},
		{"http://user:pw@prometheus.istio-system:9090", false},
		{"http://169.254.169.254/latest/meta-data", false},
		{"file:///etc/passwd", false},
		{"", false},
	} {
		if err := l.Allows(c.address); (err == nil) != c.ok {
			t.Errorf("Allows(%q) = %v, want allowed=%t", c.address, err, c.ok)
		}
	}
	if err := (List{}).Allows("http://prometheus.istio-system:9090"); err == nil {
		t.Errorf("the zero List allows an address")
	}
}

func TestParseRejectsWhatCannotBeABaseURL(t *testing.T) {
	for _, bad := range []string{"prometheus:9090", "ftp://x", "http://", "http://u:p@x", "http://x/?q=1"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if l, err := Parse(" , "); err != nil || l.String() != "none" {
		t.Errorf("empty list: %v %q", err, l.String())
	}
}

// A refusal says what the address was for: a gate's URL is not "an analysis endpoint".
func TestRefusalNamesWhatTheAddressIsFor(t *testing.T) {
	l := MustParse("http://prometheus.istio-system:9090")
	for _, c := range []struct {
		name, want string
		allows     func(string) error
	}{
		{"analysis", "http://evil:80 is not an analysis endpoint the platform allows (allowed: http://prometheus.istio-system:9090)", l.Allows},
		{"analysis, explicitly", "http://evil:80 is not an analysis endpoint the platform allows (allowed: http://prometheus.istio-system:9090)",
			func(a string) error { return l.AllowsAs(Analysis, a) }},
		{"gate", "http://evil:80 is not a gate endpoint the platform allows (allowed: http://prometheus.istio-system:9090)",
			func(a string) error { return l.AllowsAs(Gate, a) }},
		{"gate, nothing allowed", "http://evil:80 is not a gate endpoint the platform allows (allowed: none)",
			func(a string) error { return List{}.AllowsAs(Gate, a) }},
	} {
		if err := c.allows("http://evil:80"); err == nil || err.Error() != c.want {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}
