// Istio's metrics and metadata exchange: the per-cluster table of label sets (bounded, lock-free),
// histograms in Envoy's buckets, response flags, gRPC message counting, the destination service
// read from Istio's cluster names, peer metadata encoded and decoded as Istio's proxies exchange
// it (malformed values ignored), and the Prometheus text a scrape gets.

#include <catch2/catch.hpp>

#include <map>
#include <thread>
#include <tuple>
#include <vector>

#include <google/protobuf/util/json_util.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/escaping.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "sidecar/config/listener.h"
#include "google/protobuf/struct.pb.h"
#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "sidecar/bootstrap.h"
#include "sidecar/istio_metrics.h"
#include "sidecar/istio_peer.h"
#include "sidecar/stats.h"

namespace meshpilot::sidecar {
namespace {

using Key = std::tuple<uint16_t, bool, bool, unsigned, std::optional<uint32_t>, uint16_t>;

std::map<Key, uint64_t> Counts(const IstioRequestTable& table) {
  std::map<Key, uint64_t> out;
  table.ForEach([&](const IstioRequestTable::LabelSet& s, const IstioRequestSeries& series) {
    out[{s.peer, s.inbound, s.grpc, s.response_code, s.grpc_status, s.response_flags}] +=
        series.requests.load();
  });
  return out;
}

IstioRequest Request(uint16_t peer, bool inbound, bool grpc, unsigned code,
                     std::optional<uint32_t> grpc_status = std::nullopt, uint16_t flags = 0) {
  return {.peer = peer, .inbound = inbound, .grpc = grpc, .response_code = code,
          .grpc_status = grpc_status, .response_flags = flags};
}

envoy::config::core::v3::Node NodeOf(const std::string& pod, std::map<std::string, std::string> labels,
                                      const std::string& workload = "") {
  NodeIdentity identity;
  identity.pod_name = pod;
  identity.namespace_ = "bookinfo";
  identity.pod_ip = "10.0.0.7";
  identity.labels = std::move(labels);
  identity.workload_name = workload;
  return *BuildNode(identity);
}

TEST_CASE("istio: requests count by peer, reporter, protocol, code, gRPC status and flags") {
  IstioRequestTable table;
  for (int i = 0; i < 3; ++i) table.Record(Request(0, false, false, 200));
  table.Record(Request(0, false, false, 503, std::nullopt, kUpstreamConnectionFailure));
  table.Record(Request(1, false, false, 200));
  table.Record(Request(1, true, false, 200));
  table.Record(Request(0, false, true, 200, 0));
  table.Record(Request(0, false, true, 200, 14));
  table.Record(Request(0, false, true, 200, 99));  // not a gRPC code: UNKNOWN
  auto c = Counts(table);
  CHECK(c.size() == 7);
  CHECK(c[{0, false, false, 200, std::nullopt, 0}] == 3);
  CHECK(c[{0, false, false, 503, std::nullopt, kUpstreamConnectionFailure}] == 1);
  CHECK(c[{1, false, false, 200, std::nullopt, 0}] == 1);
  CHECK(c[{1, true, false, 200, std::nullopt, 0}] == 1);
  CHECK(c[{0, false, true, 200, 0u, 0}] == 1);
  CHECK(c[{0, false, true, 200, 14u, 0}] == 1);
  CHECK(c[{0, false, true, 200, 2u, 0}] == 1);
  CHECK(table.untracked() == 0);
}

TEST_CASE("istio: concurrent recording loses nothing and creates one series per label set") {
  IstioRequestTable table;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&table] {
      for (int i = 0; i < 10000; ++i) table.Record(Request(i % 3, false, false, i % 2 ? 200 : 500));
    });
  }
  for (auto& thread : threads) thread.join();
  auto c = Counts(table);
  CHECK(c.size() == 6);
  uint64_t total = 0;
  for (const auto& [key, count] : c) total += count;
  CHECK(total == 40000);
}

TEST_CASE("istio: the table is bounded; the rest is counted as untracked") {
  IstioRequestTable table;
  for (unsigned code = 100; code < 100 + IstioRequestTable::kSlots + 5; ++code) {
    table.Record(Request(0, false, false, code));
  }
  CHECK(Counts(table).size() == IstioRequestTable::kSlots);
  CHECK(table.untracked() == 5);
}

TEST_CASE("istio: histograms use Envoy's default buckets, a value on a bound in it") {
  Histogram h;
  for (uint64_t v : {0, 1, 2, 5, 6, 3600000, 3600001}) h.Record(v);
  const auto buckets = h.Buckets();
  CHECK(buckets.size() == kHistogramBounds.size() + 1);
  CHECK(buckets[0] == 1);   // <= 0.5: 0
  CHECK(buckets[1] == 1);   // <= 1: 1
  CHECK(buckets[2] == 2);   // <= 5: 2, 5
  CHECK(buckets[3] == 1);   // <= 10: 6
  CHECK(buckets[18] == 1);  // <= 3600000
  CHECK(buckets[19] == 1);  // +Inf
  CHECK(h.sum() == 0 + 1 + 2 + 5 + 6 + 3600000 + 3600001);
}

TEST_CASE("istio: response flags in Envoy's short names and order") {
  CHECK(ResponseFlagsString(0) == "-");
  CHECK(ResponseFlagsString(kNoRouteFound) == "NR");
  CHECK(ResponseFlagsString(kFaultInjected | kDelayInjected) == "DI,FI");
  CHECK(ResponseFlagsString(kUpstreamOverflow | kNoHealthyUpstream) == "UH,UO");
}

TEST_CASE("istio: gRPC messages are counted from their prefixes, however the stream is cut") {
  std::string stream;
  for (size_t size : {0u, 3u, 70000u}) {
    stream += '\0';
    stream += static_cast<char>(size >> 24);
    stream += static_cast<char>(size >> 16);
    stream += static_cast<char>(size >> 8);
    stream += static_cast<char>(size);
    stream += std::string(size, 'x');
  }
  for (size_t piece : {size_t{1}, size_t{2}, size_t{7}, size_t{16384}, stream.size()}) {
    GrpcMessageCounter counter;
    for (size_t at = 0; at < stream.size(); at += piece) {
      counter.Feed(std::string_view(stream).substr(at, piece));
    }
    CHECK(counter.messages() == 3);
  }
}

TEST_CASE("istio: destination service from the cluster name") {
  DestinationService d = DestinationOfCluster("outbound|9080|v1|reviews.bookinfo.svc.cluster.local");
  CHECK(d.known);
  CHECK(d.service == "reviews.bookinfo.svc.cluster.local");
  CHECK(d.name == "reviews");
  CHECK(d.namespace_ == "bookinfo");
  d = DestinationOfCluster("PassthroughCluster");
  CHECK_FALSE(d.known);
  CHECK(d.service == "PassthroughCluster");
  CHECK_FALSE(DestinationOfCluster("inbound|8080||").known);
}

TEST_CASE("istio: the node's metadata has what Istio's injector and agent give a pod") {
  auto node = NodeOf("reviews-v2-5d8f-abcde", {{"app", "reviews"}, {"version", "v2"}}, "reviews-v2");
  const auto& fields = node.metadata().fields();
  CHECK(fields.at("WORKLOAD_NAME").string_value() == "reviews-v2");
  CHECK(fields.at("CLUSTER_ID").string_value() == "Kubernetes");
  const auto& labels = fields.at("LABELS").struct_value().fields();
  CHECK(labels.at("service.istio.io/canonical-name").string_value() == "reviews");
  CHECK(labels.at("service.istio.io/canonical-revision").string_value() == "v2");
  // Without a workload name or labels: the pod, and Istio's "latest".
  auto bare = NodeOf("job-1", {});
  CHECK(bare.metadata().fields().at("WORKLOAD_NAME").string_value() == "job-1");
  CHECK(bare.metadata().fields().at("LABELS").struct_value().fields().at(
            "service.istio.io/canonical-revision").string_value() == "latest");
}

TEST_CASE("istio: peer metadata round-trips as Istio's base64 Struct of the exchanged fields") {
  auto node = NodeOf("reviews-v2-1", {{"app", "reviews"}, {"version", "v2"}, {"team", "x"}},
                     "reviews-v2");
  const std::string header = EncodePeerMetadata(node.metadata());
  // Base64 of a serialized Struct with NAME, NAMESPACE, WORKLOAD_NAME, CLUSTER_ID and only the
  // labels Istio exchanges.
  std::string bytes;
  REQUIRE(absl::Base64Unescape(header, &bytes));
  google::protobuf::Struct decoded;
  REQUIRE(decoded.ParseFromString(bytes));
  CHECK(decoded.fields().at("NAME").string_value() == "reviews-v2-1");
  CHECK(decoded.fields().at("NAMESPACE").string_value() == "bookinfo");
  CHECK(decoded.fields().at("WORKLOAD_NAME").string_value() == "reviews-v2");
  CHECK(decoded.fields().count("INSTANCE_IPS") == 0);
  const auto& labels = decoded.fields().at("LABELS").struct_value().fields();
  CHECK(labels.at("app").string_value() == "reviews");
  CHECK(labels.count("team") == 0);
  CHECK(EncodePeerMetadata(node.metadata()) == header);  // deterministic

  std::optional<WorkloadLabels> peer = DecodePeerMetadata(header);
  REQUIRE(peer);
  CHECK(peer->workload == "reviews-v2");
  CHECK(peer->namespace_ == "bookinfo");
  CHECK(peer->app == "reviews");
  CHECK(peer->version == "v2");
  CHECK(peer->canonical_service == "reviews");
  CHECK(peer->canonical_revision == "v2");
  CHECK(peer->cluster == "Kubernetes");
  // Istio decodes without padding; so do we.
  std::string unpadded = header;
  while (!unpadded.empty() && unpadded.back() == '=') unpadded.pop_back();
  CHECK(DecodePeerMetadata(unpadded) == peer);
}

TEST_CASE("istio: a peer that sends fewer fields is unknown in those") {
  google::protobuf::Struct metadata;
  (*metadata.mutable_fields())["NAMESPACE"].set_string_value("default");
  std::string header;
  absl::Base64Escape(metadata.SerializeAsString(), &header);
  std::optional<WorkloadLabels> peer = DecodePeerMetadata(header);
  REQUIRE(peer);
  CHECK(peer->namespace_ == "default");
  CHECK(peer->workload == "unknown");
  CHECK(peer->app == "unknown");
  CHECK(peer->canonical_revision == "latest");
}

TEST_CASE("istio: malformed peer metadata is ignored") {
  CHECK_FALSE(DecodePeerMetadata(""));
  CHECK_FALSE(DecodePeerMetadata("not base64 at all!"));
  std::string not_a_struct;
  absl::Base64Escape(std::string("\xff\xff\xff\xff garbage", 13), &not_a_struct);
  CHECK_FALSE(DecodePeerMetadata(not_a_struct));
  std::string huge;
  absl::Base64Escape(std::string(10000, 'a'), &huge);
  CHECK_FALSE(DecodePeerMetadata(huge));

  PeerDirectory directory;
  CHECK(directory.Find("not base64 at all!") == PeerDirectory::kUnknown);
  CHECK(directory.Find(not_a_struct) == PeerDirectory::kUnknown);
}

TEST_CASE("istio: the peer directory gives one index per peer, across threads, bounded") {
  PeerDirectory directory;
  const std::string a = EncodePeerMetadata(NodeOf("a-1", {{"app", "a"}}).metadata());
  const std::string b = EncodePeerMetadata(NodeOf("b-1", {{"app", "b"}}).metadata());
  const uint16_t ia = directory.Find(a);
  CHECK(ia != PeerDirectory::kUnknown);
  CHECK(directory.Find(a) == ia);
  CHECK(directory.Find(b) != ia);
  CHECK(directory.Labels(ia).app == "a");
  uint16_t from_thread = 0;
  std::thread([&] { from_thread = directory.Find(a); }).join();
  CHECK(from_thread == ia);
  // A second directory knows nothing of the first's peers.
  PeerDirectory other;
  CHECK(other.Labels(other.Find(b)).app == "b");
  for (size_t i = 0; i < PeerDirectory::kMaxPeers; ++i) {
    directory.Find(EncodePeerMetadata(NodeOf("p", {{"app", "p" + std::to_string(i)}}).metadata()));
  }
  CHECK(directory.Find(EncodePeerMetadata(NodeOf("late", {{"app", "late"}}).metadata())) ==
        PeerDirectory::kUnknown);
  CHECK(directory.Find(a) == ia);
}

TEST_CASE("istio: the scrape labels both sides as Istio's stats filter does") {
  PeerDirectory peers;
  peers.SetLocal(NodeOf("productpage-v1-1", {{"app", "productpage"}, {"version", "v1"}},
                        "productpage-v1"));
  const uint16_t reviews = peers.Find(EncodePeerMetadata(
      NodeOf("reviews-v2-1", {{"app", "reviews"}, {"version", "v2"}}, "reviews-v2").metadata()));
  StatsStore store;
  store.set_peers(&peers);
  IstioRequest outbound = Request(reviews, false, false, 200);
  outbound.duration_ms = 7;
  outbound.request_bytes = 10;
  outbound.response_bytes = 300;
  store.Cluster("outbound|9080|v2|reviews.bookinfo.svc.cluster.local")->istio_requests.Record(outbound);
  // Two inbound ports of the workload, without a peer: one series.
  store.Cluster("inbound|9080||")->istio_requests.Record(Request(0, true, true, 200, 5));
  store.Cluster("inbound|9081||")->istio_requests.Record(Request(0, true, true, 200, 5));
  store.Listener("0.0.0.0_9080")->istio_unrouted->Record(
      Request(0, false, false, 404, std::nullopt, kNoRouteFound));
  IstioTcpCounters& tcp =
      store.Cluster("outbound|3306||db.bookinfo.svc.cluster.local")->istio_tcp.For(false, 0);
  tcp.opened += 1;
  tcp.closed += 1;
  tcp.sent_bytes += 5;
  tcp.received_bytes += 8;
  const std::string text = store.RenderPrometheus();
  const std::string source =
      "reporter=\"source\",source_workload=\"productpage-v1\","
      "source_canonical_service=\"productpage\",source_canonical_revision=\"v1\","
      "source_workload_namespace=\"bookinfo\",source_principal=\"unknown\","
      "source_app=\"productpage\",source_version=\"v1\",source_cluster=\"Kubernetes\"";
  const std::string outbound_labels =
      source +
      ",destination_workload=\"reviews-v2\",destination_workload_namespace=\"bookinfo\","
      "destination_principal=\"unknown\",destination_app=\"reviews\",destination_version=\"v2\","
      "destination_service=\"reviews.bookinfo.svc.cluster.local\","
      "destination_canonical_service=\"reviews\",destination_canonical_revision=\"v2\","
      "destination_service_name=\"reviews\",destination_service_namespace=\"bookinfo\","
      "destination_cluster=\"Kubernetes\",request_protocol=\"http\",response_code=\"200\","
      "grpc_response_status=\"\",response_flags=\"-\",connection_security_policy=\"unknown\"";
  CHECK(text.find("# TYPE istio_requests_total counter\n") != std::string::npos);
  CHECK(text.find("istio_requests_total{" + outbound_labels + "} 1\n") != std::string::npos);
  CHECK(text.find("# TYPE istio_request_duration_milliseconds histogram\n") != std::string::npos);
  CHECK(text.find("istio_request_duration_milliseconds_bucket{" + outbound_labels +
                  ",le=\"5\"} 0\n") != std::string::npos);
  CHECK(text.find("istio_request_duration_milliseconds_bucket{" + outbound_labels +
                  ",le=\"10\"} 1\n") != std::string::npos);
  CHECK(text.find("istio_request_duration_milliseconds_bucket{" + outbound_labels +
                  ",le=\"+Inf\"} 1\n") != std::string::npos);
  CHECK(text.find("istio_request_duration_milliseconds_sum{" + outbound_labels + "} 7\n") !=
        std::string::npos);
  CHECK(text.find("istio_request_duration_milliseconds_count{" + outbound_labels + "} 1\n") !=
        std::string::npos);
  CHECK(text.find("istio_request_bytes_sum{" + outbound_labels + "} 10\n") != std::string::npos);
  CHECK(text.find("istio_response_bytes_sum{" + outbound_labels + "} 300\n") != std::string::npos);

  // Inbound: the peer is unknown, this workload is the destination; the inbound cluster has
  // no service name, so the destination service is the canonical service, as in Istio.
  CHECK(text.find(
            "istio_requests_total{reporter=\"destination\",source_workload=\"unknown\","
            "source_canonical_service=\"unknown\",source_canonical_revision=\"latest\","
            "source_workload_namespace=\"unknown\",source_principal=\"unknown\","
            "source_app=\"unknown\",source_version=\"unknown\",source_cluster=\"unknown\","
            "destination_workload=\"productpage-v1\","
            "destination_workload_namespace=\"bookinfo\",destination_principal=\"unknown\","
            "destination_app=\"productpage\",destination_version=\"v1\","
            "destination_service=\"productpage\",destination_canonical_service=\"productpage\","
            "destination_canonical_revision=\"v1\",destination_service_name=\"productpage\","
            "destination_service_namespace=\"bookinfo\",destination_cluster=\"Kubernetes\","
            "request_protocol=\"grpc\",response_code=\"200\",grpc_response_status=\"5\","
            "response_flags=\"-\",connection_security_policy=\"none\"} 2\n") !=
        std::string::npos);
  CHECK(text.find("istio_request_messages_total{reporter=\"destination\"") != std::string::npos);
  CHECK(text.find("istio_request_messages_total{reporter=\"source\"") == std::string::npos);
  // No route: no cluster, destination service unknown, NR.
  CHECK(text.find("destination_service=\"unknown\",destination_canonical_service=\"unknown\","
                  "destination_canonical_revision=\"latest\",destination_service_name=\"unknown\","
                  "destination_service_namespace=\"unknown\",destination_cluster=\"unknown\","
                  "request_protocol=\"http\",response_code=\"404\",grpc_response_status=\"\","
                  "response_flags=\"NR\"") != std::string::npos);
  // TCP: no response code; the peer is unknown.
  const std::string tcp_labels =
      source +
      ",destination_workload=\"unknown\",destination_workload_namespace=\"unknown\","
      "destination_principal=\"unknown\",destination_app=\"unknown\","
      "destination_version=\"unknown\",destination_service=\"db.bookinfo.svc.cluster.local\","
      "destination_canonical_service=\"unknown\",destination_canonical_revision=\"latest\","
      "destination_service_name=\"db\",destination_service_namespace=\"bookinfo\","
      "destination_cluster=\"unknown\",request_protocol=\"tcp\",response_flags=\"-\","
      "connection_security_policy=\"unknown\"";
  CHECK(text.find("istio_tcp_connections_opened_total{" + tcp_labels + "} 1\n") != std::string::npos);
  CHECK(text.find("istio_tcp_connections_closed_total{" + tcp_labels + "} 1\n") != std::string::npos);
  CHECK(text.find("istio_tcp_sent_bytes_total{" + tcp_labels + "} 5\n") != std::string::npos);
  CHECK(text.find("istio_tcp_received_bytes_total{" + tcp_labels + "} 8\n") != std::string::npos);

  // /stats: the counters in Envoy's istiocustom. names.
  const std::string stats = store.RenderText();
  CHECK(stats.find("istiocustom.istio_requests_total.reporter.source.source_workload."
                   "productpage-v1.") != std::string::npos);
  CHECK(stats.find("istiocustom.istio_tcp_sent_bytes_total.reporter.source.") != std::string::npos);
}

TEST_CASE("istio: peer labels are escaped in the Prometheus text") {
  PeerDirectory peers;
  google::protobuf::Struct metadata;
  (*metadata.mutable_fields())["WORKLOAD_NAME"].set_string_value("evil\"}\nx");
  std::string header;
  absl::Base64Escape(metadata.SerializeAsString(), &header);
  const uint16_t evil = peers.Find(header);
  StatsStore store;
  store.set_peers(&peers);
  store.Cluster("inbound|80||")->istio_requests.Record(Request(evil, true, false, 200));
  CHECK(store.RenderPrometheus().find("source_workload=\"evil\\\"}\\nx\"") != std::string::npos);
}

TEST_CASE("istio: meshpilot's istio.metadata_exchange turns the exchange on, by direction") {
  // The golden listeners meshpilot writes for a sidecar with inbound ports.
  std::ifstream in(std::filesystem::path(MESHPILOT_SOURCE_DIR) /
                   "tests/golden/inbound_listeners/expected/sidecar/lds.json");
  std::stringstream text;
  text << in.rdbuf();
  int inbound_chains = 0, outbound_chains = 0;
  for (const auto& resource : nlohmann::json::parse(text.str())) {
    google::protobuf::Any any;
    REQUIRE(google::protobuf::util::JsonStringToMessage(resource.dump(), &any).ok());
    envoy::config::listener::v3::Listener proto;
    REQUIRE(any.UnpackTo(&proto));
    auto listener = config::ParseListener(proto);
    REQUIRE(listener.ok());
    for (const config::FilterChain& chain : (*listener)->chains) {
      const auto* http = std::get_if<config::HttpChain>(&chain.filter);
      if (http == nullptr) continue;
      const auto& e = http->peer_exchange;
      INFO(proto.name() << " " << chain.name);
      if ((*listener)->inbound) {
        ++inbound_chains;
        CHECK((e.from_request && e.to_response && !e.from_response && !e.to_request));
      } else {
        ++outbound_chains;
        CHECK((!e.from_request && !e.to_response && e.from_response && e.to_request));
      }
    }
  }
  CHECK(inbound_chains > 0);
  CHECK(outbound_chains > 0);

  // Without the filter (or Envoy's config without Istio's): no exchange.
  envoy::config::listener::v3::Listener bare;
  bare.set_name("bare");
  bare.mutable_address()->mutable_socket_address()->set_address("0.0.0.0");
  bare.mutable_address()->mutable_socket_address()->set_port_value(80);
  envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager hcm;
  hcm.set_stat_prefix("bare");
  hcm.mutable_route_config()->set_name("bare");
  auto* router = hcm.add_http_filters();
  router->set_name("envoy.filters.http.router");
  router->mutable_typed_config()->PackFrom(envoy::extensions::filters::http::router::v3::Router());
  auto* filter = bare.add_filter_chains()->add_filters();
  filter->set_name("envoy.filters.network.http_connection_manager");
  filter->mutable_typed_config()->PackFrom(hcm);
  auto parsed = config::ParseListener(bare);
  REQUIRE(parsed.ok());
  const auto& e = std::get<config::HttpChain>((*parsed)->chains[0].filter).peer_exchange;
  CHECK_FALSE((e.from_request || e.to_response || e.from_response || e.to_request));
}

}  // namespace
}  // namespace meshpilot::sidecar
