package gitops

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// versions records every version of the objects of one kind in a namespace, as a watch
// delivers them, so a test can replay them in the API server's order (the resourceVersions of
// one etcd increase).
type versions struct {
	mu      sync.Mutex
	entries []version
}

type version struct {
	rv  int64
	obj *unstructured.Unstructured
}

func recordVersions(t testing.TB, ns, apiVersion, kind string) *versions {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	must(t, err)
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion(apiVersion)
	list.SetKind(kind + "List")
	ctx, cancel := context.WithCancel(context.Background())
	w, err := wc.Watch(ctx, list, client.InNamespace(ns))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	v := &versions{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			rv, err := strconv.ParseInt(u.GetResourceVersion(), 10, 64)
			if err != nil {
				continue
			}
			v.mu.Lock()
			v.entries = append(v.entries, version{rv: rv, obj: u})
			v.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); w.Stop(); <-done })
	return v
}

// of returns the recorded versions of the named object, in order.
func (v *versions) of(name string) []*unstructured.Unstructured {
	v.mu.Lock()
	all := slices.Clone(v.entries)
	v.mu.Unlock()
	slices.SortStableFunc(all, func(a, b version) int { return cmp.Compare(a.rv, b.rv) })
	var out []*unstructured.Unstructured
	for _, e := range all {
		if e.obj.GetName() == name {
			out = append(out, e.obj)
		}
	}
	return out
}

// eventReasons lists the reasons of the Events about the named Rollout.
func eventReasons(t testing.TB, ns, rollout string) []string {
	t.Helper()
	var list corev1.EventList
	must(t, env.Client.List(context.Background(), &list, client.InNamespace(ns)))
	var out []string
	for _, e := range list.Items {
		if e.InvolvedObject.Kind == "Rollout" && e.InvolvedObject.Name == rollout {
			out = append(out, e.Reason)
		}
	}
	return out
}
