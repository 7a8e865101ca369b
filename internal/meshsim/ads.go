package meshsim

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Type URLs of the xDS resources meshsim subscribes to.
var (
	routeType    = typeURL(&routev3.RouteConfiguration{})
	clusterType  = typeURL(&clusterv3.Cluster{})
	endpointType = typeURL(&endpointv3.ClusterLoadAssignment{})
)

func typeURL(m proto.Message) string {
	return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
}

// xdsKinds names the types in EnvoyConfig.Versions and Responses.
var xdsKinds = map[string]string{routeType: "rds", clusterType: "cds", endpointType: "eds"}

// adsClient is a sidecar's ADS stream to istiod: RDS for one route name, CDS (all
// clusters), EDS for the clusters of one host. Each response is ACKed and the resulting
// configuration handed to publish once it is complete (routes, clusters and every
// subscribed cluster's endpoints received).
type adsClient struct {
	addr    string
	node    *corev3.Node
	route   string   // RDS resource name: the Service's port
	hosts   []string // FQDNs whose outbound clusters get EDS subscriptions
	publish func(*EnvoyConfig)
	logf    func(format string, args ...any)
}

// sidecarNode is the identity a sidecar of src presents to istiod. ip is the proxy's address;
// no pod has it, so istiod takes the workload from the metadata.
func sidecarNode(src Source, ip, domain string) (*corev3.Node, error) {
	labels := map[string]any{}
	for k, v := range src.Labels {
		labels[k] = v
	}
	md, err := structpb.NewStruct(map[string]any{
		"NAMESPACE":         src.Namespace,
		"CLUSTER_ID":        "Kubernetes",
		"ISTIO_VERSION":     "1.31.0",
		"INTERCEPTION_MODE": "REDIRECT",
		"NAME":              src.Workload,
		"WORKLOAD_NAME":     src.Workload,
		"LABELS":            labels,
	})
	if err != nil {
		return nil, err
	}
	return &corev3.Node{
		Id:       fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.%s", ip, src.Workload, src.Namespace, src.Namespace, domain),
		Metadata: md,
	}, nil
}

// run keeps a stream open until ctx ends, reconnecting after a second when it breaks.
func (c *adsClient) run(ctx context.Context, onErr func(error)) {
	for ctx.Err() == nil {
		err := c.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		onErr(fmt.Errorf("meshsim: xDS stream to istiod %s: %w", c.addr, err))
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (c *adsClient) stream(ctx context.Context) error {
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	send := func(typ string, names []string, version, nonce string) error {
		return st.Send(&discoveryv3.DiscoveryRequest{Node: c.node, TypeUrl: typ, ResourceNames: names, VersionInfo: version, ResponseNonce: nonce})
	}
	// Clusters first, as Envoy asks: istiod answers each type on its own.
	if err := send(clusterType, nil, "", ""); err != nil {
		return err
	}
	if err := send(routeType, []string{c.route}, "", ""); err != nil {
		return err
	}

	cfg := &EnvoyConfig{Versions: map[string]string{}, Responses: map[string]int{}}
	var haveRoutes, haveClusters bool
	var edsNames []string
	var edsVersion, edsNonce string
	loads := map[string]*endpointv3.ClusterLoadAssignment{}
	// defs are the clusters of the last CDS response, by name: a cluster whose definition
	// changes warms again.
	defs := map[string]*clusterv3.Cluster{}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		typ := resp.GetTypeUrl()
		kind, known := xdsKinds[typ]
		if !known {
			continue // nothing else was asked for
		}
		cfg.Responses[kind]++
		names := edsNames
		switch typ {
		case routeType:
			names = []string{c.route}
			for _, a := range resp.GetResources() {
				rc := &routev3.RouteConfiguration{}
				if err := a.UnmarshalTo(rc); err != nil {
					return fmt.Errorf("decoding a RouteConfiguration: %w", err)
				}
				if rc.GetName() == c.route {
					cfg.Routes, haveRoutes = rc, true
				}
			}
		case clusterType:
			names = nil
			var clusters []*clusterv3.Cluster
			next := make(map[string]*clusterv3.Cluster, len(resp.GetResources()))
			for _, a := range resp.GetResources() {
				cl := &clusterv3.Cluster{}
				if err := a.UnmarshalTo(cl); err != nil {
					return fmt.Errorf("decoding a Cluster: %w", err)
				}
				// Envoy warms an updated cluster as it does a new one: the old cluster, with
				// its settings and endpoints, serves until the new one has its load assignment,
				// which istiod sends after the CDS push that changed it (initial_fetch_timeout
				// 0: no timeout). Forgetting the old endpoints holds the push until then; a
				// cluster re-sent unchanged (every CDS push re-sends them all) is not updated
				// and keeps them.
				if old, ok := defs[cl.GetName()]; ok && !proto.Equal(old, cl) {
					delete(loads, cl.GetName())
				}
				clusters = append(clusters, cl)
				next[cl.GetName()] = cl
			}
			cfg.Clusters, haveClusters, defs = clusters, true, next
		case endpointType:
			for _, a := range resp.GetResources() {
				cla := &endpointv3.ClusterLoadAssignment{}
				if err := a.UnmarshalTo(cla); err != nil {
					return fmt.Errorf("decoding a ClusterLoadAssignment: %w", err)
				}
				loads[cla.GetClusterName()] = cla
			}
			edsVersion, edsNonce = resp.GetVersionInfo(), resp.GetNonce()
		}
		cfg.Versions[kind] = resp.GetVersionInfo()
		// ACK: the version and nonce applied, for the same resources.
		if err := send(typ, names, resp.GetVersionInfo(), resp.GetNonce()); err != nil {
			return err
		}
		if typ == clusterType {
			// Subscribe to the endpoints of the host's EDS clusters when they change.
			var want []string
			for _, cl := range cfg.Clusters {
				if _, _, host, ok := parseClusterName(cl.GetName()); ok && slices.Contains(c.hosts, host) && cl.GetType() == clusterv3.Cluster_EDS {
					want = append(want, cl.GetName())
				}
			}
			slices.Sort(want)
			if !slices.Equal(want, edsNames) {
				edsNames = want
				maps.DeleteFunc(loads, func(name string, _ *endpointv3.ClusterLoadAssignment) bool { return !slices.Contains(want, name) })
				if err := send(endpointType, edsNames, edsVersion, edsNonce); err != nil {
					return err
				}
			}
		}
		cfg.Endpoints = slices.Collect(maps.Values(loads))
		if haveRoutes && haveClusters && len(loads) == len(edsNames) {
			snap := *cfg
			snap.Versions, snap.Responses = maps.Clone(cfg.Versions), maps.Clone(cfg.Responses)
			snap.Clusters, snap.Endpoints = slices.Clone(cfg.Clusters), slices.Clone(cfg.Endpoints)
			c.publish(&snap)
		}
	}
}

// routeName is the RDS name of a sidecar's outbound HTTP route for a port.
func routeName(port uint32) string { return strconv.FormatUint(uint64(port), 10) }

// proxyIP is the address the simulated sidecar announces: outside KWOK's pod range, so no
// pod has it.
const proxyIP = "10.255.0.9"

// startXDS opens the ADS stream to istiod for the Service's port and waits for the first
// complete configuration.
func (s *Sim) startXDS(ctx context.Context) error {
	s.buildMu.Lock()
	svc := s.topo.Service
	s.buildMu.Unlock()
	src := s.opts.Source
	domain := cmp.Or(s.opts.ClusterDomain, "cluster.local")
	port := src.Port
	if port == 0 {
		if svc == nil || len(svc.Spec.Ports) == 0 {
			return fmt.Errorf("meshsim: service %s/%s has no port to subscribe to (set Source.Port)", s.opts.Namespace, s.opts.Service)
		}
		port = uint32(svc.Spec.Ports[0].Port)
	}
	node, err := sidecarNode(src, proxyIP, domain)
	if err != nil {
		return err
	}
	c := &adsClient{
		addr:    s.opts.XDSAddr,
		node:    node,
		route:   routeName(port),
		hosts:   []string{s.opts.Service + "." + s.opts.Namespace + ".svc." + domain},
		publish: s.setEnvoy,
	}
	for _, b := range s.opts.Backends {
		c.hosts = append(c.hosts, b+"."+s.opts.Namespace+".svc."+domain)
	}
	s.wg.Go(func() {
		c.run(ctx, func(err error) {
			s.buildMu.Lock()
			s.xdsErr = err
			s.buildMu.Unlock()
			if s.opts.Logf != nil {
				s.opts.Logf("%v", err)
			}
		})
	})
	t := time.NewTimer(s.opts.XDSTimeout)
	defer t.Stop()
	select {
	case <-s.envoyReady:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		s.buildMu.Lock()
		err := s.xdsErr
		s.buildMu.Unlock()
		return fmt.Errorf("meshsim: no complete configuration from istiod %s within %s (last error: %v)", s.opts.XDSAddr, s.opts.XDSTimeout, err)
	}
}

// setEnvoy installs a configuration istiod sent and rebuilds the Router with it.
func (s *Sim) setEnvoy(e *EnvoyConfig) {
	s.buildMu.Lock()
	s.envoy, s.xdsErr = e, nil
	warnings := s.rebuild()
	s.buildMu.Unlock()
	s.readyOnce.Do(func() { close(s.envoyReady) })
	select {
	case s.kick <- struct{}{}:
	default: // a re-read is already due
	}
	if s.opts.Logf != nil && warnings != "" {
		s.opts.Logf("meshsim: %s", warnings)
	}
}

// Envoy is the last complete configuration istiod served (nil before it arrived).
func (s *Sim) Envoy() *EnvoyConfig {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	return s.envoy
}
