package gitops

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

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
