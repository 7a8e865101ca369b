package testenv

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// FluxManager is the field manager of Flux's kustomize-controller.
const FluxManager = "kustomize-controller"

// GitVirtualService is a VirtualService as a team keeps it in Git, in namespace ns, for the
// Service "web" (port 80): a legacy route ramp must leave alone, then the route "primary",
// with a timeout and retries, to the stable and canary subsets of ramp's DestinationRule
// (stable 100, canary 0), which a Rollout may name in spec.service.virtualServiceRef.
func GitVirtualService(ns, name, service string) *unstructured.Unstructured {
	doc := `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  labels: {app: web, team: shop}
spec:
  hosts: [SERVICE]
  http:
  - name: legacy
    match: [{uri: {prefix: /api/v1}}]
    route: [{destination: {host: SERVICE-legacy}}]
  - name: primary
    timeout: 3s
    retries: {attempts: 2, retryOn: 5xx}
    route:
    - destination: {host: SERVICE, subset: stable}
      weight: 100
    - destination: {host: SERVICE, subset: canary}
      weight: 0
`
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(strings.ReplaceAll(doc, "SERVICE", service)), &u.Object); err != nil {
		panic(err)
	}
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// Reapply applies obj every interval with server-side apply as manager, with force, until the
// returned stop is called, the way Flux's kustomize-controller corrects drift on every
// reconciliation; stop returns how many applies succeeded. An apply the API server refuses is
// reported through errf (once per distinct message) and the loop goes on.
func (e *Env) Reapply(ctx context.Context, manager string, obj *unstructured.Unstructured, interval time.Duration, errf func(string, ...any)) (stop func() int64) {
	ctx, cancel := context.WithCancel(ctx)
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		seen := map[string]bool{}
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			u := obj.DeepCopy()
			if err := e.Client.Patch(ctx, u, client.Apply, client.FieldOwner(manager), client.ForceOwnership); err != nil {
				if ctx.Err() == nil && !seen[err.Error()] {
					seen[err.Error()] = true
					errf("%s apply: %v", manager, err)
				}
				continue
			}
			n.Add(1)
		}
	}()
	return func() int64 {
		cancel()
		wg.Wait()
		return n.Load()
	}
}

// GitFields is what Git wrote into a VirtualService that a Rollout referencing it must never
// change: its labels, annotations and owners, and its spec without what ramp owns there (the
// weights, the mirror and the cookie of the named routes, and ramp's own routes, named
// ramp-<rollout>-...). Two versions with equal GitFields differ only in ramp's fields.
func GitFields(vs *networkingv1.VirtualService, rollout string, routes ...string) (meta string, spec *networking.VirtualService, err error) {
	b, err := json.Marshal(map[string]any{"labels": vs.Labels, "annotations": vs.Annotations, "owners": vs.OwnerReferences})
	if err != nil {
		return "", nil, err
	}
	spec = proto.Clone(&vs.Spec).(*networking.VirtualService)
	var http []*networking.HTTPRoute
	for _, h := range spec.Http {
		if strings.HasPrefix(h.Name, "ramp-"+rollout+"-") {
			continue
		}
		if slices.Contains(routes, h.Name) {
			h.Mirror, h.MirrorPercentage = nil, nil
			for _, d := range h.Route {
				d.Weight, d.Headers = 0, nil
			}
		}
		http = append(http, h)
	}
	spec.Http = http
	return string(b), spec, nil
}

// TypedVirtualService decodes a recorded VirtualService version into Istio's type.
func TypedVirtualService(u *unstructured.Unstructured) (*networkingv1.VirtualService, error) {
	b, err := u.MarshalJSON()
	if err != nil {
		return nil, err
	}
	vs := &networkingv1.VirtualService{}
	return vs, json.Unmarshal(b, vs)
}
