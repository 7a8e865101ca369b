// Package istio renders the Istio objects ramp owns for a Rollout — one VirtualService and one
// DestinationRule, both named after the Rollout — and reads ramp's routing back from a live
// VirtualService. It is pure: no client, no I/O. Objects are Istio's own typed objects
// (istio.io/client-go networking/v1, specs from istio.io/api), so every field has Istio's type
// and durations are protobuf Durations; ApplyPatch turns one into the body of a server-side
// apply (Istio's apply configuration: the fields ramp sets, nothing else). The same input
// always yields the same object.
//
// # Shape
//
// The DestinationRule has the Service as host, the Rollout's traffic policy (if any), and two
// subsets: "stable" (pod-template-hash of the stable ReplicaSet) and "canary" (pods labelled
// ramp.dev/track=canary).
//
// The VirtualService has up to three HTTP routes, in this order:
//
//	ramp-canary   match the header (canary headerMatch, or the blue/green preview header)
//	              -> canary subset, weight 100; carries the fault injection, if any
//	ramp-sticky   match the sticky-session cookie (stickySessions) -> canary subset alone
//	ramp-primary  no match -> stable subset (100-w) and canary subset (w); during a mirror
//	              step it mirrors a percentage to the canary subset; with sticky sessions
//	              the canary destination's answers set the cookie
//
// Retries and timeout from spec.service apply to every route.
//
// A Rollout may instead reference a VirtualService Git owns (spec.service.virtualServiceRef):
// EditVirtualService changes only the weights, mirror and cookie of the routes it names and
// adds ramp's own routes before them (reference.go says exactly what, and why the edit is a
// read-modify-write: spec.http is an atomic list in Istio's CRD).
//
// # Why faults go only on the header route
//
// Istio applies an HTTPRoute's fault to every request the route matches, before Envoy picks one
// of the route's weighted destinations. A fault on ramp-primary would therefore hit stable
// traffic too. The header route has a single destination, the canary, so a fault there reaches
// the canary alone (and only the requests that opted in with the header). Without a header
// route there is nowhere safe to put a fault, so none is rendered.
//
// # Why both destinations are always listed
//
// ramp-primary always lists stable then canary, with weights summing to 100, even at 0% or
// 100% (weight 0, which proto3 JSON leaves out, sends a destination no traffic). The route's shape
// never changes over a rollout, only two integers do, so each server-side apply is a minimal
// diff, the list never gains or loses entries under another manager's feet, and ObservedRouting
// can read the weight back unambiguously.
//
// # Durations
//
// Istio's duration fields are google.protobuf.Duration. istiod decodes them with protobuf JSON,
// which accepts only decimal seconds ("30s", "1.500s"), while the CRD's CEL rules accept Go
// style too ("1m30s"). ramp renders durationpb values, which Istio's JSON marshaller writes in
// the protobuf form (0, 3, 6 or 9 fractional digits) that both accept.
package istio
