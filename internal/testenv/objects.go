package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ReadObjects decodes every object of a (multi-document) YAML or JSON manifest file, skipping
// empty documents.
func ReadObjects(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// ServiceFor is the Service in front of d, as an application's manifests would have it: d's
// name, selecting d's pods, one HTTP port. ramp routes a Service's traffic, so every Rollout
// needs one.
func ServiceFor(d *appsv1.Deployment, port int32) *corev1.Service {
	sel := map[string]string{}
	if d.Spec.Selector != nil {
		maps.Copy(sel, d.Spec.Selector.MatchLabels)
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace},
		Spec: corev1.ServiceSpec{
			Selector: sel,
			Ports:    []corev1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromInt32(port)}},
		},
	}
}

// App creates the Deployment name (pods labelled app=name, one container called name running
// image, replicas of them), after opts have edited it, and its Service on port 80; it returns
// once the Deployment has rolled out.
func (e *Env) App(t TB, ns, name, image string, replicas int32, opts ...func(*appsv1.Deployment)) *appsv1.Deployment {
	t.Helper()
	lbl := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: image}}},
			},
		},
	}
	for _, o := range opts {
		o(d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, obj := range []client.Object{d, ServiceFor(d, 80)} {
		if err := e.Client.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
	}
	e.WaitRolledOut(t, d, replicas)
	return d
}

// WaitRolledOut waits (up to a minute) until d has n replicas, all updated, ready and
// available, and reads d back.
func (e *Env) WaitRolledOut(t TB, d *appsv1.Deployment, n int32) {
	t.Helper()
	err := WaitFor(context.Background(), time.Minute, func(ctx context.Context) (bool, error) {
		if err := e.Client.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
			return false, err
		}
		st := d.Status
		return st.ObservedGeneration == d.Generation && st.UpdatedReplicas == n && st.ReadyReplicas == n &&
			st.AvailableReplicas == n && st.Replicas == n, nil
	})
	if err != nil {
		t.Fatalf("Deployment %s rolled out: %v", d.Name, err)
	}
}
