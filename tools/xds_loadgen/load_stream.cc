#include "tools/xds_loadgen/load_stream.h"

#include <string_view>
#include <utility>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"

namespace meshpilot::loadgen {
namespace {

constexpr char kCds[] = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
constexpr char kEds[] = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
constexpr char kLds[] = "type.googleapis.com/envoy.config.listener.v3.Listener";
constexpr char kRds[] = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

using envoy::config::cluster::v3::Cluster;
using envoy::config::listener::v3::Filter;
using envoy::config::listener::v3::Listener;
using envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;

// The EDS names Envoy would ask for: one per EDS cluster, its service_name if set.
std::set<std::string> EdsNames(const DiscoveryResponse& response) {
  std::set<std::string> names;
  Cluster cluster;
  for (const auto& any : response.resources()) {
    if (!any.UnpackTo(&cluster) || cluster.type() != Cluster::EDS) continue;
    const std::string& service_name = cluster.eds_cluster_config().service_name();
    names.insert(service_name.empty() ? cluster.name() : service_name);
  }
  return names;
}

void AddRouteName(const google::protobuf::Any& config, std::set<std::string>& names) {
  HttpConnectionManager manager;
  if (!config.Is<HttpConnectionManager>() || !config.UnpackTo(&manager)) return;
  if (manager.has_rds()) names.insert(manager.rds().route_config_name());
}

// The RDS names Envoy would ask for: every HttpConnectionManager's rds.route_config_name.
std::set<std::string> RdsNames(const DiscoveryResponse& response) {
  std::set<std::string> names;
  Listener listener;
  for (const auto& any : response.resources()) {
    if (!any.UnpackTo(&listener)) continue;
    auto add_chain = [&](const envoy::config::listener::v3::FilterChain& chain) {
      for (const Filter& filter : chain.filters()) AddRouteName(filter.typed_config(), names);
    };
    for (const auto& chain : listener.filter_chains()) add_chain(chain);
    if (listener.has_default_filter_chain()) add_chain(listener.default_filter_chain());
    if (listener.has_api_listener()) AddRouteName(listener.api_listener().api_listener(), names);
  }
  return names;
}

bool Holds(const DiscoveryResponse& response, const std::string& needle) {
  if (needle.empty()) return false;
  for (const auto& any : response.resources()) {
    if (std::string_view(any.value()).find(needle) != std::string_view::npos) return true;
  }
  return false;
}

}  // namespace

std::string SocketAddressNeedle(const std::string& address) {
  if (address.empty() || address.size() > 127) return "";
  // Field 2, wire type 2 (length-delimited), one-byte length, then the bytes.
  std::string needle;
  needle.push_back(static_cast<char>((2 << 3) | 2));
  needle.push_back(static_cast<char>(address.size()));
  needle += address;
  return needle;
}

LoadStream::LoadStream(envoy::config::core::v3::Node node, std::string watch_needle,
                       StreamEvents events)
    : node_(std::move(node)), watch_needle_(std::move(watch_needle)), events_(std::move(events)) {}

void LoadStream::Start(envoy::service::discovery::v3::AggregatedDiscoveryService::Stub& stub) {
  stub.async()->StreamAggregatedResources(&context_, this);
  {
    std::lock_guard lock(mu_);
    started_ = Clock::now();
    // As Envoy starts: CDS and LDS wildcard; EDS and RDS follow from what they name.
    writes_.push_back(DiscoveryRequest());
    writes_.back().set_type_url(kCds);
    *writes_.back().mutable_node() = node_;
    node_sent_ = true;
    writes_.push_back(DiscoveryRequest());
    writes_.back().set_type_url(kLds);
  }
  // No reaction can run before StartCall, and the front stays put until OnWriteDone.
  StartWrite(&writes_.front());
  StartRead(&response_);
  StartCall();
}

bool LoadStream::ArmWatch() {
  std::lock_guard lock(mu_);
  watch_armed_ = true;
  return last_eds_has_watched_;
}

std::optional<Clock::duration> LoadStream::sync_time() const {
  std::lock_guard lock(mu_);
  if (!synced_at_) return std::nullopt;
  return *synced_at_ - started_;
}

std::optional<Clock::time_point> LoadStream::changed_at() const {
  std::lock_guard lock(mu_);
  return changed_at_;
}

void LoadStream::OnReadDone(bool ok) {
  if (!ok) return;  // the stream is over; OnDone follows
  responses_.fetch_add(1, std::memory_order_relaxed);
  bytes_.fetch_add(response_.ByteSizeLong(), std::memory_order_relaxed);
  bool was_synced, was_changed;
  bool now_synced, now_changed;
  {
    std::lock_guard lock(mu_);
    was_synced = synced_at_.has_value();
    was_changed = changed_at_.has_value();
    HandleLocked(response_);
    now_synced = synced_at_.has_value();
    now_changed = changed_at_.has_value();
  }
  StartRead(&response_);
  if (now_synced && !was_synced && events_.synced) events_.synced();
  if (now_changed && !was_changed && events_.changed) events_.changed();
}

void LoadStream::HandleLocked(const DiscoveryResponse& response) {
  const std::string& type = response.type_url();
  TypeState* state = type == kCds ? &cds_
                     : type == kEds ? &eds_
                     : type == kLds ? &lds_
                     : type == kRds ? &rds_
                                    : nullptr;
  if (state == nullptr) return;
  state->version = response.version_info();
  state->nonce = response.nonce();
  if (state == &cds_ || state == &lds_) {
    state->received = true;
  } else if (static_cast<size_t>(response.resources_size()) >= state->names.size()) {
    // A SotW answer for every name asked for (an answer to an older request has fewer).
    state->received = true;
  }
  if (state == &eds_) {
    last_eds_has_watched_ = Holds(response, watch_needle_);
    if (watch_armed_ && last_eds_has_watched_ && !changed_at_) changed_at_ = Clock::now();
  }
  SendLocked(type, *state);  // the ACK

  // Like Envoy: clusters name the endpoints to fetch, listeners the routes.
  if (state == &cds_ || state == &lds_) {
    TypeState& named = state == &cds_ ? eds_ : rds_;
    std::set<std::string> names = state == &cds_ ? EdsNames(response) : RdsNames(response);
    if (names != named.names) {
      named.names = std::move(names);
      named.received = named.names.empty();
      SendLocked(state == &cds_ ? kEds : kRds, named);
    }
  }
  CheckSyncedLocked();
}

void LoadStream::SendLocked(const std::string& type_url, const TypeState& state) {
  DiscoveryRequest& request = writes_.emplace_back();
  request.set_type_url(type_url);
  request.set_version_info(state.version);
  request.set_response_nonce(state.nonce);
  if (type_url == kEds || type_url == kRds) {
    for (const std::string& name : state.names) request.add_resource_names(name);
  }
  if (!node_sent_) {
    *request.mutable_node() = node_;
    node_sent_ = true;
  }
  if (writes_.size() == 1) StartWrite(&writes_.front());
}

void LoadStream::CheckSyncedLocked() {
  if (synced_at_) return;
  bool eds_done = eds_.received || (cds_.received && eds_.names.empty());
  bool rds_done = rds_.received || (lds_.received && rds_.names.empty());
  if (cds_.received && lds_.received && eds_done && rds_done) synced_at_ = Clock::now();
}

void LoadStream::OnWriteDone(bool ok) {
  std::lock_guard lock(mu_);
  writes_.pop_front();
  if (!ok) {
    writes_.clear();
    return;
  }
  if (!writes_.empty()) StartWrite(&writes_.front());
}

void LoadStream::OnDone(const grpc::Status& status) {
  {
    std::lock_guard lock(mu_);
    status_ = status;
  }
  if (events_.done) events_.done();
}

}  // namespace meshpilot::loadgen
