package grafana

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// config/grafana/ramp.json is what Board builds: regenerate it with make generate.
func TestCommittedBoardIsGenerated(t *testing.T) {
	want, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../config/grafana/ramp.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("config/grafana/ramp.json differs from grafana.Board(): run make generate")
	}
}

// Every panel has a query, every query names only metrics ramp or Istio export, and the
// variables leave nothing unexpanded.
func TestBoardQueries(t *testing.T) {
	d, err := Board()
	if err != nil {
		t.Fatal(err)
	}
	qs := Queries(d)
	panels := 0
	for _, p := range d.Panels {
		if p.Panel != nil && p.Panel.Type != "row" {
			panels++
		}
	}
	targets := 0
	for _, q := range qs {
		if strings.HasPrefix(q.Where, "panel ") {
			targets++
		}
		if !strings.Contains(q.Expr, "ramp_") && !strings.Contains(q.Expr, "istio_") {
			t.Errorf("%s: %s names neither ramp's nor Istio's metrics", q.Where, q.Expr)
		}
		if e := Expand(q.Expr, map[string]string{"namespace": "demo", "rollout": "podinfo", "workload": "podinfo"}, "1m"); strings.Contains(e, "$") {
			t.Errorf("%s: %s keeps a variable", q.Where, e)
		}
	}
	if panels == 0 || targets != panels {
		t.Errorf("%d panels, %d panel queries: want one query per panel", panels, targets)
	}
	if len(qs) != targets+4 {
		t.Errorf("%d queries: want the panels' %d, three variables' and the annotation's", len(qs), targets)
	}
}
