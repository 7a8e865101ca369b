package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceSpec is the Service in front of the target and the routing ramp generates for it.
// +kubebuilder:validation:XValidation:rule="!has(self.hosts) || !self.hosts.exists(h, h == '*') || (has(self.gateways) && !self.gateways.exists(g, g == 'mesh'))",message="hosts: * is allowed only on a VirtualService bound to gateways other than mesh (Istio rejects it for the mesh)"
// +kubebuilder:validation:XValidation:rule="!has(self.virtualServiceRef) || !(has(self.hosts) || has(self.gateways) || has(self.retries) || has(self.timeout))",message="hosts, gateways, retries and timeout configure the VirtualService ramp generates; with virtualServiceRef they belong to the referenced VirtualService: set them there"
// +kubebuilder:validation:XValidation:rule="!has(self.gatewayAPI) || !has(self.virtualServiceRef)",message="gatewayAPI and virtualServiceRef are two routers: ramp routes either with a Gateway API HTTPRoute or with an Istio VirtualService; set one"
// +kubebuilder:validation:XValidation:rule="!has(self.gatewayAPI) || !has(self.trafficPolicy)",message="trafficPolicy configures Istio's DestinationRule, which the Gateway API router does not use (the Gateway API has no field for it): remove trafficPolicy or gatewayAPI"
// +kubebuilder:validation:XValidation:rule="!has(self.gatewayAPI) || !has(self.retries)",message="retries: a standard-channel HTTPRoute (Gateway API v1.6) has no field for retries: remove retries or gatewayAPI"
// +kubebuilder:validation:XValidation:rule="!has(self.gatewayAPI) || !(has(self.hosts) || has(self.gateways))",message="hosts and gateways configure Istio's VirtualService: with gatewayAPI set gatewayAPI.hostnames and gatewayAPI.parentRefs instead"
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

	// Hosts of the VirtualService. Defaults to the Service's name. Each is a host name (its
	// first label may be a wildcard such as *.example.com) or an IP address; no two may overlap.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.all(a, self.all(b, a == b || !(a.startsWith('*') && b.endsWith(a.substring(1)))))",message="hosts must not overlap: Istio rejects a wildcard host (such as *.example.com) that covers another host of the same VirtualService"
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^([*]|([*]|[*]-)?[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)([.][a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*[.]?$') && !self.matches('^[^.]+[.](.*[.])?[0-9]+$') || isIP(self)",message="hosts must be host names (a wildcard only as the first label, e.g. *.example.com; at most 63 characters a label; the last label not all digits) or IP addresses"
	Hosts []string `json:"hosts,omitempty"`

	// Gateways of the VirtualService (e.g. istio-system/public-gateway, or mesh). Empty means
	// the mesh only. Each is <namespace>/<name> (both DNS-1123 labels) or a host name.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?/[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?$') || (self.matches('^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?([.][a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*[.]?$') && !self.matches('(^|[.])[0-9]+$'))",message="gateways must be <namespace>/<name>, both DNS-1123 labels (at most 63 characters: letters, digits and -), mesh, or a host name"
	Gateways []string `json:"gateways,omitempty"`

	// VirtualServiceRef routes through an existing VirtualService (one Git owns) instead of
	// the one ramp generates: ramp changes only the weights of the stable and canary
	// destinations in the named HTTP routes, and adds its own routes (named
	// ramp-<rollout>-...) before them for the header match and sticky sessions; every other
	// field and route stays as written. Without it ramp generates a VirtualService named
	// after the Rollout.
	// +optional
	VirtualServiceRef *VirtualServiceReference `json:"virtualServiceRef,omitempty"`

	// GatewayAPI routes with a Gateway API HTTPRoute (named after the Rollout) instead of
	// Istio's VirtualService and DestinationRule: ramp creates the Services <service>-stable
	// (the stable pods, by pod-template-hash) and <service>-canary (the canary's pods) and
	// shifts the HTTPRoute's backendRefs weights between them. For meshes and gateways that
	// implement HTTPRoute (Istio, Linkerd, Kuma, Cilium, Envoy Gateway, ...). Fields the
	// Gateway API has no field for (fault injection, sticky sessions, retries, trafficPolicy,
	// a header prefix match) are rejected with it.
	// +optional
	GatewayAPI *GatewayAPIRouting `json:"gatewayAPI,omitempty"`

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
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') && duration(self) >= duration('1ms') && duration(self) <= duration('8760h')",message="timeout must be between 1ms and 8760h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') || int(duration(self)) % 1000000 == 0",message="timeout must be a whole number of milliseconds (Istio rejects finer durations)"
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
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') && duration(self) >= duration('1ms') && duration(self) <= duration('8760h')",message="connectTimeout must be between 1ms and 8760h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') || int(duration(self)) % 1000000 == 0",message="connectTimeout must be a whole number of milliseconds (Istio rejects finer durations)"
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
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') && duration(self) >= duration('1ms') && duration(self) <= duration('8760h')",message="idleTimeout must be between 1ms and 8760h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') || int(duration(self)) % 1000000 == 0",message="idleTimeout must be a whole number of milliseconds (Istio rejects finer durations)"
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
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') && duration(self) >= duration('1ms') && duration(self) <= duration('8760h')",message="interval must be between 1ms and 8760h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') || int(duration(self)) % 1000000 == 0",message="interval must be a whole number of milliseconds (Istio rejects finer durations)"
	Interval *metav1.Duration `json:"interval,omitempty"`
	// BaseEjectionTime of an ejected host.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') && duration(self) >= duration('1ms') && duration(self) <= duration('8760h')",message="baseEjectionTime must be between 1ms and 8760h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') || int(duration(self)) % 1000000 == 0",message="baseEjectionTime must be a whole number of milliseconds (Istio rejects finer durations)"
	BaseEjectionTime *metav1.Duration `json:"baseEjectionTime,omitempty"`
	// MaxEjectionPercent of hosts that may be ejected, 0 to 100.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	MaxEjectionPercent *int32 `json:"maxEjectionPercent,omitempty"`
}

// ClientTLS is the TLS mode of connections to the service.
// +kubebuilder:validation:XValidation:rule="self.mode != 'MUTUAL' || (has(self.credentialName) && self.credentialName.size() > 0)",message="mode MUTUAL needs credentialName: ramp cannot set client certificate files, and Istio rejects MUTUAL without either"
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
// +kubebuilder:validation:XValidation:rule="self.attempts > 0 || (!has(self.perTryTimeout) && !has(self.retryOn))",message="attempts 0 disables retries: Istio rejects perTryTimeout or retryOn with it; remove them or set attempts above 0"
type HTTPRetry struct {
	// Attempts, 0 disables retries.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Attempts int32 `json:"attempts"`
	// PerTryTimeout of each attempt.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') && duration(self) >= duration('1ms') && duration(self) <= duration('8760h')",message="perTryTimeout must be between 1ms and 8760h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(0*([0-9]{1,5}([.][0-9]*)?h|[0-9]{1,7}([.][0-9]*)?m|[0-9]{1,9}([.][0-9]*)?s|[0-9]{1,12}([.][0-9]*)?ms))+$') || int(duration(self)) % 1000000 == 0",message="perTryTimeout must be a whole number of milliseconds (Istio rejects finer durations)"
	PerTryTimeout *metav1.Duration `json:"perTryTimeout,omitempty"`
	// RetryOn conditions, comma separated: Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on
	// values Istio accepts (5xx, gateway-error, reset, reset-before-request, connect-failure,
	// retriable-4xx, refused-stream, retriable-status-codes, retriable-headers,
	// envoy-ratelimited, http3-post-connect-failure, cancelled, deadline-exceeded, internal,
	// resource-exhausted, unavailable) or HTTP status codes.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[a-z0-9-]+(,[a-z0-9-]+)*$`
	// +kubebuilder:validation:XValidation:rule="self.split(',').all(p, p in ['5xx','gateway-error','reset','reset-before-request','connect-failure','retriable-4xx','refused-stream','retriable-status-codes','retriable-headers','envoy-ratelimited','http3-post-connect-failure','cancelled','deadline-exceeded','internal','resource-exhausted','unavailable'] || p in ['100','101','102','103','200','201','202','203','204','205','206','207','208','226','300','301','302','303','304','305','307','308','400','401','402','403','404','405','406','407','408','409','410','411','412','413','414','415','416','417','418','421','422','423','424','425','426','428','429','431','451','500','501','502','503','504','505','506','507','508','510','511'])",message="retryOn holds a condition Istio does not know: use those listed in the field description, or HTTP status codes"
	RetryOn string `json:"retryOn,omitempty"`
}

// VirtualServiceReference names a VirtualService in the Rollout's namespace and the HTTP
// routes of it ramp may change.
type VirtualServiceReference struct {
	// Name of the VirtualService.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Routes are the names of the HTTP routes whose destinations ramp weights. Each must
	// route to the Service's stable and canary subsets (the DestinationRule ramp generates)
	// and nowhere else.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:XValidation:rule="!self.startsWith('ramp-')",message="routes must not start with ramp-: ramp names its own routes so"
	Routes []string `json:"routes"`
}

// GatewayAPIRouting is the HTTPRoute ramp generates, or the one Git keeps that it weights.
// +kubebuilder:validation:XValidation:rule="!has(self.httpRouteRef) || !(has(self.parentRefs) || has(self.hostnames))",message="parentRefs and hostnames configure the HTTPRoute ramp generates; with httpRouteRef they belong to the referenced HTTPRoute: set them there"
type GatewayAPIRouting struct {
	// ParentRefs of the HTTPRoute: the Gateways (north-south) or the Service (east-west, the
	// mesh: GAMMA) it attaches to. Defaults to the Service itself, for mesh traffic.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	ParentRefs []GatewayParentReference `json:"parentRefs,omitempty"`

	// Hostnames of the HTTPRoute (for Gateway parents). Empty matches every host.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Hostnames []string `json:"hostnames,omitempty"`

	// HTTPRouteRef routes through an existing HTTPRoute (one Git owns) instead of the one ramp
	// generates: ramp changes only the weights of the <service>-stable and <service>-canary
	// backendRefs in the named rules, their mirror filter during a mirror step, and adds its
	// own header rules (named ramp-<rollout>-header-<rule>); every other field and rule stays
	// as written.
	// +optional
	HTTPRouteRef *HTTPRouteReference `json:"httpRouteRef,omitempty"`
}

// HTTPRouteReference names an HTTPRoute in the Rollout's namespace and the rules of it ramp
// may change.
type HTTPRouteReference struct {
	// Name of the HTTPRoute.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Rules are the names of the HTTPRoute's rules whose backendRefs ramp weights. Each must
	// have exactly two backendRefs, the Services <service>-stable and <service>-canary.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=176
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +kubebuilder:validation:items:XValidation:rule="!self.startsWith('ramp-')",message="rules must not start with ramp-: ramp names its own rules so"
	Rules []string `json:"rules"`
}

// GatewayParentReference is a Gateway or a Service the HTTPRoute attaches to.
type GatewayParentReference struct {
	// Kind of the parent: Gateway (group gateway.networking.k8s.io) or Service (core).
	// +kubebuilder:validation:Enum=Gateway;Service
	// +kubebuilder:default=Gateway
	// +optional
	Kind string `json:"kind,omitempty"`
	// Name of the parent.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Namespace of the parent; defaults to the Rollout's.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace,omitempty"`
	// SectionName is a listener of the Gateway (or a port name of the Service).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	SectionName string `json:"sectionName,omitempty"`
	// Port of the parent the route attaches to.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port *int32 `json:"port,omitempty"`
}
