package manager

import (
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

func TestAutoMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name, gomemlimit, memoryMax string
		want                        int64
		ok                          bool
	}{
		{"256Mi container", "", "268435456\n", 241591910, true},
		{"1Gi container", "", "1073741824", 966367641, true},
		{"no limit", "", "max\n", 0, false},
		{"not cgroup v2 (file unreadable)", "", "", 0, false},
		{"garbage", "", "lots", 0, false},
		{"zero", "", "0\n", 0, false},
		{"GOMEMLIMIT set wins", "120MiB", "268435456\n", 0, false},
		{"GOMEMLIMIT=off wins too", "off", "268435456\n", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := AutoMemoryLimit(tc.gomemlimit, tc.memoryMax)
			if got != tc.want || ok != tc.ok {
				t.Errorf("AutoMemoryLimit(%q, %q) = %d, %t; want %d, %t", tc.gomemlimit, tc.memoryMax, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestParseShardAndLeaderElectionID(t *testing.T) {
	if s, err := ParseShard(""); err != nil || s != nil {
		t.Errorf(`ParseShard("") = %v, %v; want nil (every Rollout)`, s, err)
	}
	for _, tc := range []struct {
		selector string
		labels   map[string]string
		match    bool
	}{
		{ShardLabel + "=shard1", map[string]string{ShardLabel: "shard1"}, true},
		{ShardLabel + "=shard1", map[string]string{ShardLabel: "shard2"}, false},
		{ShardLabel + "=shard1", nil, false},
		{"!" + ShardLabel, nil, true},
		{"!" + ShardLabel, map[string]string{ShardLabel: "shard1"}, false},
		{ShardLabel + " in (shard1,shard2)", map[string]string{ShardLabel: "shard2"}, true},
	} {
		s, err := ParseShard(tc.selector)
		if err != nil {
			t.Fatalf("ParseShard(%q): %v", tc.selector, err)
		}
		if got := s.Matches(labelSet(tc.labels)); got != tc.match {
			t.Errorf("%q matches %v = %t, want %t", tc.selector, tc.labels, got, tc.match)
		}
	}
	if _, err := ParseShard("a=b=c"); err == nil {
		t.Error("an invalid selector was accepted")
	}
	if LeaderElectionID("") != "ramp-controller.ramp.dev" {
		t.Errorf("unsharded Lease renamed: %q", LeaderElectionID(""))
	}
	a, b := LeaderElectionID(ShardLabel+"=shard1"), LeaderElectionID("!"+ShardLabel)
	if a == b || a == LeaderElectionID("") || a != LeaderElectionID(ShardLabel+"=shard1") {
		t.Errorf("shards' Leases not distinct and stable: %q, %q", a, b)
	}
}

func labelSet(m map[string]string) labels.Set { return labels.Set(m) }
