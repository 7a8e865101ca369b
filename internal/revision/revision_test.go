package revision

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func tmpl(image string, labels map[string]string) *corev1.PodTemplateSpec {
	t := &corev1.PodTemplateSpec{}
	t.Labels = labels
	t.Spec.Containers = []corev1.Container{{Name: "app", Image: image}}
	return t
}

func TestOfIgnoresPodTemplateHash(t *testing.T) {
	a := tmpl("img:1", map[string]string{"app": "web"})
	b := tmpl("img:1", map[string]string{"app": "web", appsv1.DefaultDeploymentUniqueLabelKey: "abc"})
	if Of(a) != Of(b) {
		t.Fatal("pod-template-hash label must not change the revision")
	}
	if b.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != "abc" {
		t.Fatal("Of must not modify its argument")
	}
}

func TestOfChangesWithTemplate(t *testing.T) {
	base := Of(tmpl("img:1", map[string]string{"app": "web"}))
	for name, other := range map[string]*corev1.PodTemplateSpec{
		"image": tmpl("img:2", map[string]string{"app": "web"}),
		"label": tmpl("img:1", map[string]string{"app": "web", "v": "2"}),
	} {
		if Of(other) == base {
			t.Errorf("%s change must change the revision", name)
		}
	}
	if got := len(base); got != 10 {
		t.Errorf("revision %q: want 10 hex characters", base)
	}
	// Stable across calls, map order included.
	for i := 0; i < 20; i++ {
		if Of(tmpl("img:1", map[string]string{"app": "web", "a": "1", "b": "2"})) != Of(tmpl("img:1", map[string]string{"b": "2", "a": "1", "app": "web"})) {
			t.Fatal("revision depends on map order")
		}
	}
}
