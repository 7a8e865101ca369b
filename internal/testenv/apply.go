package testenv

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Apply applies objs in order with server-side apply as fieldOwner, the way `kubectl apply`
// walks a build's output, and fails on the first object the API server rejects. The objects
// keep their namespaces.
func (e *Env) Apply(ctx context.Context, fieldOwner string, objs []*unstructured.Unstructured) error {
	for _, u := range objs {
		if err := e.Client.Patch(ctx, u, client.Apply, client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("%s %s/%s rejected: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	return nil
}
