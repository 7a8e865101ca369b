package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceSpec is the Service in front of the target and the routing ramp generates for it.
type ServiceSpec struct {
	// Name of the Kubernetes Service selecting the target's pods. Defaults to the target's name.
	// It is the DestinationRule's host and the route destination.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name,omitempty"`

	// Port of the Service that traffic is routed to.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`

	// Hosts of the VirtualService. Defaults to the Service's name.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=255
	Hosts []string `json:"hosts,omitempty"`

	// Gateways of the VirtualService (e.g. istio-system/public-gateway, or mesh). Empty means
	// the mesh only.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=255
	Gateways []string `json:"gateways,omitempty"`

	// TrafficPolicy of the generated DestinationRule.
	// +optional
	TrafficPolicy *TrafficPolicy `json:"trafficPolicy,omitempty"`

	// Retries for the route.
	// +optional
	Retries *HTTPRetry `json:"retries,omitempty"`

	// Timeout of a request on the route.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms')",message="timeout must be at least 1ms"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// TrafficPolicy is the DestinationRule's traffic policy, applied to both subsets.
type TrafficPolicy struct {
	// +optional
	ConnectionPool *ConnectionPool `json:"connectionPool,omitempty"`
	// +optional
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`
	// +optional
	TLS *ClientTLS `json:"tls,omitempty"`
}

// ConnectionPool limits connections and requests to the service (circuit breaking).
type ConnectionPool struct {
	// +optional
	TCP *TCPConnectionPool `json:"tcp,omitempty"`
	// +optional
	HTTP *HTTPConnectionPool `json:"http,omitempty"`
}

// TCPConnectionPool limits TCP connections.
type TCPConnectionPool struct {
	// MaxConnections to each host.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxConnections *int32 `json:"maxConnections,omitempty"`
	// ConnectTimeout of a TCP connection.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms')",message="connectTimeout must be at least 1ms"
	ConnectTimeout *metav1.Duration `json:"connectTimeout,omitempty"`
}

// HTTPConnectionPool limits HTTP requests.
type HTTPConnectionPool struct {
	// +optional
	// +kubebuilder:validation:Minimum=1
	HTTP1MaxPendingRequests *int32 `json:"http1MaxPendingRequests,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=1
	HTTP2MaxRequests *int32 `json:"http2MaxRequests,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxRequestsPerConnection *int32 `json:"maxRequestsPerConnection,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxRetries *int32 `json:"maxRetries,omitempty"`
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms')",message="idleTimeout must be at least 1ms"
	IdleTimeout *metav1.Duration `json:"idleTimeout,omitempty"`
}

// OutlierDetection ejects hosts that keep failing.
type OutlierDetection struct {
	// Consecutive5xxErrors before a host is ejected.
	// +optional
	// +kubebuilder:validation:Minimum=1
	Consecutive5xxErrors *int32 `json:"consecutive5xxErrors,omitempty"`
	// Interval between ejection sweeps.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms')",message="interval must be at least 1ms"
	Interval *metav1.Duration `json:"interval,omitempty"`
	// BaseEjectionTime of an ejected host.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms')",message="baseEjectionTime must be at least 1ms"
	BaseEjectionTime *metav1.Duration `json:"baseEjectionTime,omitempty"`
	// MaxEjectionPercent of hosts that may be ejected, 0 to 100.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	MaxEjectionPercent *int32 `json:"maxEjectionPercent,omitempty"`
}

// ClientTLS is the TLS mode of connections to the service.
type ClientTLS struct {
	// Mode: DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL.
	// +kubebuilder:validation:Enum=DISABLE;SIMPLE;MUTUAL;ISTIO_MUTUAL
	Mode string `json:"mode"`
	// SNI presented to the server.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	SNI string `json:"sni,omitempty"`
	// CredentialName of the Secret holding client certificates (SIMPLE or MUTUAL).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	CredentialName string `json:"credentialName,omitempty"`
}

// HTTPRetry retries failed requests on the route.
type HTTPRetry struct {
	// Attempts, 0 disables retries.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Attempts int32 `json:"attempts"`
	// PerTryTimeout of each attempt.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms')",message="perTryTimeout must be at least 1ms"
	PerTryTimeout *metav1.Duration `json:"perTryTimeout,omitempty"`
	// RetryOn conditions, comma separated (Envoy's x-envoy-retry-on values, e.g. 5xx,reset).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[a-z0-9-]+(,[a-z0-9-]+)*$`
	RetryOn string `json:"retryOn,omitempty"`
}
