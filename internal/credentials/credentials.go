// Package credentials reads the Secrets ramp may use, and no others. A Rollout names its
// Secrets (Prometheus credentials, a Slack webhook), and whoever may create a Rollout is not
// necessarily allowed to read Secrets: ramp reading any Secret named would make it a confused
// deputy. So ramp reads only Secrets marked for it with a label, which takes the right to
// change the Secret to set; it checks the mark on the Secret's metadata first, so the data of
// a Secret not marked for ramp never reaches it.
package credentials

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Label marks a Secret ramp may read: Label=true.
const Label = "ramp.dev/credentials"

// ErrNotMarked: the Secret exists but is not marked for ramp.
var ErrNotMarked = errors.New("not marked for ramp")

// Check reports whether Secret namespace/name exists and is marked for ramp, reading only its
// metadata.
func Check(ctx context.Context, r client.Reader, namespace, name string) error {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, m); err != nil {
		return err
	}
	if m.Labels[Label] != "true" {
		return fmt.Errorf("Secret %q is %w: ramp reads only Secrets labelled %s=true (see docs/security.md)", name, ErrNotMarked, Label)
	}
	return nil
}

// Read returns the data of Secret namespace/name when it is marked for ramp.
func Read(ctx context.Context, r client.Reader, namespace, name string) (map[string][]byte, error) {
	if err := Check(ctx, r, namespace, name); err != nil {
		return nil, err
	}
	s := &corev1.Secret{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, s); err != nil {
		return nil, err
	}
	if s.Labels[Label] != "true" { // relabelled between the two reads
		return nil, fmt.Errorf("Secret %q is %w", name, ErrNotMarked)
	}
	return s.Data, nil
}

// ReadPlatform returns the data of Secret namespace/name when it lives in the platform's own
// namespace (the manager's): the credentials of a ClusterMetricTemplate, which only cluster
// admins write. Those are platform configuration and need no label; a Secret of any other
// namespace is refused unread.
func ReadPlatform(ctx context.Context, r client.Reader, platformNamespace, namespace, name string) (map[string][]byte, error) {
	if platformNamespace == "" || namespace != platformNamespace {
		return nil, fmt.Errorf("Secret %s/%s is not in the manager's namespace %q: ramp reads a ClusterMetricTemplate's credentials only there", namespace, name, platformNamespace)
	}
	s := &corev1.Secret{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, s); err != nil {
		return nil, err
	}
	return s.Data, nil
}
