package credentials

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// A ClusterMetricTemplate's Secret is read only in the platform's namespace, label or not;
// one elsewhere is refused without a request.
func TestReadPlatform(t *testing.T) {
	var gets []string
	c := fake.NewClientBuilder().WithObjects(
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ramp-system", Name: "thanos"}, Data: map[string][]byte{"token": []byte("t")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-admin"}, Data: map[string][]byte{"password": []byte("p")}},
	).WithInterceptorFuncs(interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		gets = append(gets, key.String())
		return c.Get(ctx, key, obj, opts...)
	}}).Build()
	ctx := context.Background()

	data, err := ReadPlatform(ctx, c, "ramp-system", "ramp-system", "thanos")
	if err != nil || string(data["token"]) != "t" {
		t.Errorf("platform Secret: %v %v", data, err)
	}
	for _, platform := range []string{"ramp-system", ""} {
		if _, err := ReadPlatform(ctx, c, platform, "shop", "db-admin"); err == nil || !strings.Contains(err.Error(), "not in the manager's namespace") {
			t.Errorf("platform namespace %q: Secret of another namespace: %v", platform, err)
		}
	}
	if strings.Join(gets, " ") != "ramp-system/thanos" {
		t.Errorf("requests %v, want only ramp-system/thanos", gets)
	}
}
