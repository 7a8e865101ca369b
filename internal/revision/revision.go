// Package revision identifies a pod template by a short, stable hash.
package revision

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// Label and annotation ramp puts on what it creates.
const (
	// Annotation on the canary Deployment: the revision it was rendered from.
	Annotation = "ramp.dev/revision"
)

// Of hashes a pod template as the API server stores it. The pod-template-hash label (added
// to ReplicaSet templates by the Deployment controller) is left out, so a Deployment's
// template and the template of the ReplicaSet that runs it hash alike. Both come defaulted
// from the API server, so defaulted fields do not make them differ.
func Of(t *corev1.PodTemplateSpec) string {
	c := t.DeepCopy()
	delete(c.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	// encoding/json writes struct fields in order and map keys sorted: deterministic.
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // a PodTemplateSpec always marshals
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:5])
}
