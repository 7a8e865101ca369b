package plugin

import (
	"context"
	"errors"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// rolloutsGVR is the Rollout resource.
var rolloutsGVR = rampv1.GroupVersion.WithResource("rollouts")

// clients talk to the cluster for one command.
type clients struct {
	dynamic   dynamic.Interface
	rollouts  dynamic.NamespaceableResourceInterface
	kube      kubernetes.Interface
	namespace string
}

func (o *Options) clients() (*clients, error) {
	if err := o.validateColor(); err != nil {
		return nil, err
	}
	cfg, err := o.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = FieldManager
	ns, _, err := o.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &clients{dynamic: dyn, rollouts: dyn.Resource(rolloutsGVR), kube: kube, namespace: ns}, nil
}

// toRollout converts an unstructured Rollout.
func toRollout(u *unstructured.Unstructured) (*rampv1.Rollout, error) {
	ro := &rampv1.Rollout{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, ro); err != nil {
		return nil, fmt.Errorf("decoding Rollout %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return ro, nil
}

// get reads a Rollout.
func (cl *clients) get(ctx context.Context, name string) (*unstructured.Unstructured, *rampv1.Rollout, error) {
	u, err := cl.rollouts.Namespace(cl.namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, fmt.Errorf("rollout %q not found in namespace %q", name, cl.namespace)
		}
		return nil, nil, err
	}
	ro, err := toRollout(u)
	return u, ro, err
}

// errDeleted: the Rollout was deleted while watched.
var errDeleted = errors.New("the rollout was deleted")

// watchRollout calls fn with the Rollout now and on every change until fn returns true or an
// error, or ctx ends. It survives watch timeouts and expired resource versions by reading the
// Rollout again.
func (cl *clients) watchRollout(ctx context.Context, name string, fn func(*rampv1.Rollout) (bool, error)) error {
	for {
		u, ro, err := cl.get(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if done, err := fn(ro); done || err != nil {
			return err
		}
		w, err := cl.rollouts.Namespace(cl.namespace).Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
			ResourceVersion: u.GetResourceVersion(),
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		done, err := cl.drain(ctx, w, fn)
		w.Stop()
		if done || err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The watch ended (server timeout, expired version): read again and watch again.
	}
}

func (cl *clients) drain(ctx context.Context, w watch.Interface, fn func(*rampv1.Rollout) (bool, error)) (bool, error) {
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false, nil
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				u, ok := ev.Object.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				ro, err := toRollout(u)
				if err != nil {
					return false, err
				}
				if done, err := fn(ro); done || err != nil {
					return done, err
				}
			case watch.Deleted:
				return false, errDeleted
			case watch.Error:
				return false, nil
			}
		}
	}
}

// eventsFor lists the events about a Rollout from core/v1 and events.k8s.io/v1 and merges
// them: the API server stores both in one resource, so the same event usually appears in both
// and is kept once (by UID). An error from one API is ignored when the other answered.
func (cl *clients) eventsFor(ctx context.Context, ro *rampv1.Rollout) ([]Event, error) {
	byUID := map[string]Event{}
	add := func(e Event) {
		if old, ok := byUID[e.UID]; !ok || e.Time.After(old.Time) {
			byUID[e.UID] = e
		}
	}
	coreSel := fields.Set{"involvedObject.kind": "Rollout", "involvedObject.name": ro.Name}.AsSelector().String()
	core, coreErr := cl.kube.CoreV1().Events(ro.Namespace).List(ctx, metav1.ListOptions{FieldSelector: coreSel})
	if coreErr == nil {
		for _, e := range core.Items {
			if e.InvolvedObject.UID != "" && ro.UID != "" && e.InvolvedObject.UID != ro.UID {
				continue // about an earlier Rollout of the same name
			}
			add(fromCoreEvent(&e))
		}
	}
	newSel := fields.Set{"regarding.kind": "Rollout", "regarding.name": ro.Name}.AsSelector().String()
	evs, newErr := cl.kube.EventsV1().Events(ro.Namespace).List(ctx, metav1.ListOptions{FieldSelector: newSel})
	if newErr == nil {
		for _, e := range evs.Items {
			if e.Regarding.UID != "" && ro.UID != "" && e.Regarding.UID != ro.UID {
				continue
			}
			t := e.EventTime.Time
			if e.Series != nil && !e.Series.LastObservedTime.IsZero() {
				t = e.Series.LastObservedTime.Time
			}
			if t.IsZero() {
				t = e.DeprecatedLastTimestamp.Time
			}
			if t.IsZero() {
				t = e.CreationTimestamp.Time
			}
			count := e.DeprecatedCount
			if e.Series != nil && e.Series.Count > count {
				count = e.Series.Count
			}
			add(Event{UID: string(e.UID), Type: e.Type, Reason: e.Reason, Message: e.Note, Count: count, Time: t})
		}
	}
	if coreErr != nil && newErr != nil {
		return nil, fmt.Errorf("listing events: %w", coreErr)
	}
	out := make([]Event, 0, len(byUID))
	for _, e := range byUID {
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].UID < out[j].UID
	})
	return out, nil
}

func fromCoreEvent(e *corev1.Event) Event {
	t := e.LastTimestamp.Time
	if e.Series != nil && !e.Series.LastObservedTime.IsZero() {
		t = e.Series.LastObservedTime.Time
	}
	if t.IsZero() {
		t = e.EventTime.Time
	}
	if t.IsZero() {
		t = e.FirstTimestamp.Time
	}
	if t.IsZero() {
		t = e.CreationTimestamp.Time
	}
	count := e.Count
	if e.Series != nil && e.Series.Count > count {
		count = e.Series.Count
	}
	return Event{UID: string(e.UID), Type: e.Type, Reason: e.Reason, Message: e.Message, Count: count, Time: t}
}
