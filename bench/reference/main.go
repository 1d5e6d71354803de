// Command reference serves, over ADS, the resources of meshpilot /debug/config_dump files to
// every node, with envoyproxy/go-control-plane's snapshot cache and server: the reference the
// xDS benchmarks (bench/xds_push) compare meshpilot against.
//
// Every dump in --dump is loaded (and checked for consistency) at start; the first is served,
// and each SIGHUP publishes the next one (cycling), so a push measures go-control-plane's
// serving, not JSON parsing. By default each type's version is a hash of its resources, so
// only the types that changed are pushed, as meshpilot does; --per-type-versions=false gives
// every type the snapshot's counter instead (the simplest use of the library: every change
// pushes all four types).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	// The types meshpilot's resources embed in Any fields: imported so protojson resolves them.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// sharedNode maps every node to one snapshot: the benchmark's proxies all get the same config.
type sharedNode struct{}

func (sharedNode) ID(*core.Node) string { return "shared" }

// sections maps the envoy.admin.v3 *ConfigDump sections of a config dump to xDS types.
var sections = map[string]struct {
	list, field string
	typeURL     resourcev3.Type
}{
	"type.googleapis.com/envoy.admin.v3.ClustersConfigDump":  {"dynamic_active_clusters", "cluster", resourcev3.ClusterType},
	"type.googleapis.com/envoy.admin.v3.EndpointsConfigDump": {"dynamic_endpoint_configs", "endpoint_config", resourcev3.EndpointType},
	"type.googleapis.com/envoy.admin.v3.ListenersConfigDump": {"dynamic_listeners", "listener", resourcev3.ListenerType},
	"type.googleapis.com/envoy.admin.v3.RoutesConfigDump":    {"dynamic_route_configs", "route_config", resourcev3.RouteType},
}

// loadDump reads a meshpilot config dump into resources by type URL.
func loadDump(path string) (map[resourcev3.Type][]types.Resource, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var dump struct {
		Configs []map[string]json.RawMessage `json:"configs"`
	}
	if err := json.Unmarshal(raw, &dump); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[resourcev3.Type][]types.Resource{}
	for _, config := range dump.Configs {
		var dumpType string
		if err := json.Unmarshal(config["@type"], &dumpType); err != nil {
			return nil, fmt.Errorf("%s: config without @type: %w", path, err)
		}
		section, ok := sections[dumpType]
		if !ok {
			continue
		}
		var items []map[string]json.RawMessage
		if list, ok := config[section.list]; ok {
			if err := json.Unmarshal(list, &items); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", path, section.list, err)
			}
		}
		for i, item := range items {
			var any anypb.Any
			if err := protojson.Unmarshal(item[section.field], &any); err != nil {
				return nil, fmt.Errorf("%s: %s[%d]: %w", path, section.list, i, err)
			}
			message, err := any.UnmarshalNew()
			if err != nil {
				return nil, fmt.Errorf("%s: %s[%d]: %w", path, section.list, i, err)
			}
			out[section.typeURL] = append(out[section.typeURL], message.(types.Resource))
		}
	}
	return out, nil
}

// contentVersion hashes a type's resources (deterministic bytes, by name), like meshpilot's
// versions: unchanged resources keep their version.
func contentVersion(items []types.Resource) (string, error) {
	byName := map[string][]byte{}
	names := make([]string, 0, len(items))
	for _, item := range items {
		bytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(item)
		if err != nil {
			return "", err
		}
		name := cachev3.GetResourceName(item)
		byName[name] = bytes
		names = append(names, name)
	}
	sort.Strings(names)
	hash := sha256.New()
	for _, name := range names {
		hash.Write([]byte(name))
		hash.Write([]byte{0})
		hash.Write(byName[name])
	}
	return hex.EncodeToString(hash.Sum(nil))[:16], nil
}

// buildSnapshot loads one dump into a consistent snapshot.
func buildSnapshot(path string, version int, perTypeVersions bool) (*cachev3.Snapshot, error) {
	start := time.Now()
	resources, err := loadDump(path)
	if err != nil {
		return nil, err
	}
	snapshot, err := cachev3.NewSnapshot(strconv.Itoa(version), resources)
	if err != nil {
		return nil, err
	}
	if perTypeVersions {
		for typeURL, items := range resources {
			v, err := contentVersion(items)
			if err != nil {
				return nil, err
			}
			snapshot.Resources[cachev3.GetResponseType(typeURL)].Version = v
		}
	}
	if err := snapshot.Consistent(); err != nil {
		return nil, fmt.Errorf("%s: inconsistent snapshot: %w", path, err)
	}
	log.Printf("%s: %d clusters, %d endpoints, %d listeners, %d routes (loaded in %v)", path,
		len(resources[resourcev3.ClusterType]), len(resources[resourcev3.EndpointType]),
		len(resources[resourcev3.ListenerType]), len(resources[resourcev3.RouteType]),
		time.Since(start).Round(time.Millisecond))
	return snapshot, nil
}

func main() {
	dumps := flag.String("dump", "", "comma-separated meshpilot /debug/config_dump JSON files: "+
		"the first is served, each SIGHUP serves the next (cycling)")
	port := flag.Int("port", 18010, "ADS port on 127.0.0.1")
	perTypeVersions := flag.Bool("per-type-versions", true,
		"version each type by a hash of its resources (false: one counter for all types)")
	flag.Parse()
	if *dumps == "" {
		log.Fatal("--dump is required")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var snapshots []*cachev3.Snapshot
	for i, path := range strings.Split(*dumps, ",") {
		snapshot, err := buildSnapshot(path, i+1, *perTypeVersions)
		if err != nil {
			log.Fatal(err)
		}
		snapshots = append(snapshots, snapshot)
	}
	// ads=true: EDS/RDS answers wait until every named resource is asked for, as for Envoy.
	cache := cachev3.NewSnapshotCache(true, sharedNode{}, nil)
	current := 0
	if err := cache.SetSnapshot(ctx, "shared", snapshots[current]); err != nil {
		log.Fatal(err)
	}

	listener, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		log.Fatal(err)
	}
	grpcServer := grpc.NewServer(grpc.MaxConcurrentStreams(1 << 20))
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(grpcServer,
		serverv3.NewServer(ctx, cache, serverv3.CallbackFuncs{}))
	go func() {
		if err := grpcServer.Serve(listener); err != nil {
			log.Fatal(err)
		}
	}()
	log.Printf("serving ADS on %s", listener.Addr())

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	for sig := range signals {
		if sig != syscall.SIGHUP {
			break
		}
		current = (current + 1) % len(snapshots)
		if err := cache.SetSnapshot(ctx, "shared", snapshots[current]); err != nil {
			log.Printf("SIGHUP: %v", err)
			continue
		}
		log.Printf("SIGHUP: serving snapshot %d", current+1)
	}
	grpcServer.Stop()
}
