#include "controlplane/xds/stream.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controlplane/xds/server.h"
#include "spdlog/spdlog.h"

namespace meshpilot::xds {
namespace {

using cache::ResourceType;
using envoy::service::discovery::v3::DeltaDiscoveryRequest;
using envoy::service::discovery::v3::DeltaDiscoveryResponse;
using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

constexpr std::string_view kControlPlaneId = "meshpilot";

std::chrono::duration<double> Since(std::chrono::steady_clock::time_point start) {
  return std::chrono::steady_clock::now() - start;
}

// The version a response carries, for the per-type bookkeeping.
const std::string& VersionOf(const DiscoveryResponse& response) {
  return response.version_info();
}
const std::string& VersionOf(const DeltaDiscoveryResponse& response) {
  return response.system_version_info();
}

bool IsRouteType(ResourceType type) {
  return type == ResourceType::kListener || type == ResourceType::kRoute;
}

// The types whose removals wait for the listeners and routes, in push order.
constexpr std::array<ResourceType, 2> kHeldTypes = {ResourceType::kCluster,
                                                    ResourceType::kEndpoint};

}  // namespace

// --- Stream ----------------------------------------------------------------------------

Stream::Stream(AdsServer& server, grpc::CallbackServerContext* context, Protocol protocol)
    : server_(server) {
  status_.peer = context->peer();
  status_.protocol = protocol;
  status_.connected_at = std::chrono::system_clock::now();
}

bool Stream::HasProxy() const {
  std::lock_guard lock(mu_);
  return has_proxy_;
}

StreamStatus Stream::Status() const {
  std::lock_guard lock(mu_);
  StreamStatus status = status_;
  for (size_t i = 0; i < types_.size(); ++i) {
    status.types[i] = types_[i].status;
    status.types[i].rejected = types_[i].rejected;
  }
  return status;
}

absl::Status Stream::IdentifyLocked(const envoy::config::core::v3::Node& node) {
  absl::StatusOr<translator::ProxyInfo> proxy = translator::ParseProxyInfo(node);
  if (!proxy.ok()) {
    spdlog::warn("ads: rejecting stream from {}: {}", status_.peer, proxy.status().ToString());
    return proxy.status();
  }
  status_.proxy = *std::move(proxy);
  status_.connection_id = server_.NextConnectionId(status_.proxy.id);
  has_proxy_ = true;
  spdlog::info("ads: new {} connection {} from {}", ProtocolName(status_.protocol),
               status_.connection_id, status_.peer);
  // A proxy that rejected its new listeners or routes on its previous stream still runs the
  // old ones and will reject the same new ones again: until it accepts some on this stream,
  // it keeps what they name.
  std::optional<RejectedRoutes> previous = server_.rejections().Adopt(
      status_.proxy.id, status_.connection_id, std::chrono::steady_clock::now());
  if (previous) {
    for (size_t i = 0; i < types_.size(); ++i) {
      if (!previous->rejected[i]) continue;
      types_[i].rejected = true;
      types_[i].status.nack_error = previous->nack_error[i];
      spdlog::info("ads: {} rejected {} version {} on its previous stream: {}",
                   status_.connection_id, cache::ShortName(static_cast<ResourceType>(i)),
                   previous->nacked_version[i], previous->nack_error[i]);
    }
    inherited_ = std::move(previous->held);
  }
  return absl::OkStatus();
}

std::optional<ResourceType> Stream::TypeOfLocked(const std::string& type_url) const {
  std::optional<ResourceType> type = cache::TypeFromUrl(type_url);
  if (!type) {
    spdlog::warn("ads: {} asked for unsupported type {}", status_.connection_id, type_url);
  }
  return type;
}

Stream::Answer Stream::AnswerLocked(ResourceType type, const std::string& nonce,
                                    const google::rpc::Status* error,
                                    const std::string& acked_version) {
  if (nonce.empty()) return Answer::kNone;
  TypeState& state = type_state(type);
  TypeStatus& status = state.status;
  // A request carrying an old nonce answers a response the client has since been sent a
  // newer one of: xDS says it is no ACK/NACK.
  if (nonce != status.sent_nonce) return Answer::kStale;
  // A request after the answer repeats its nonce: Envoy asks for new names that way, with the
  // version it holds, which after a NACK is not the one sent. It is neither an ACK nor a NACK.
  if (!state.awaiting_ack) return Answer::kNone;
  state.awaiting_ack = false;
  state.rejected = error != nullptr;
  if (error != nullptr) {
    status.nacked_version = status.sent_version;
    status.nack_error = error->message();
    ++status.rejects;
    server_.metrics().RecordReject(type);
    spdlog::warn("ads: {} rejected {} version {}: {}", status_.connection_id,
                 cache::ShortName(type), status.sent_version, status.nack_error);
    return Answer::kNack;
  }
  status.acked_version = acked_version;
  status.nack_error.clear();
  state.acked_basis = state.sent_basis;
  // A client that fetches no routes once it accepted its listeners runs none: a rejection of
  // routes carried over from its previous stream is moot.
  if (type == ResourceType::kListener && !type_state(ResourceType::kRoute).status.subscribed) {
    type_state(ResourceType::kRoute).rejected = false;
  }
  server_.metrics().RecordConvergence(Since(state.sent_at).count());
  return Answer::kAck;
}

const cache::Snapshot* Stream::RefreshSnapshotLocked() {
  absl::StatusOr<cache::SnapshotPtr> snapshot = server_.cache().SnapshotFor(status_.proxy);
  if (snapshot.ok()) {
    snapshot_ = *snapshot;
  } else if (!absl::IsFailedPrecondition(snapshot.status())) {
    // Keep serving the last good snapshot; this is a translator bug, not client input.
    spdlog::error("ads: no new snapshot for {}: {}", status_.connection_id,
                  snapshot.status().ToString());
  }
  return snapshot_.get();
}

std::string Stream::RecordSendLocked(ResourceType type, const std::string& version) {
  TypeState& state = type_state(type);
  std::string nonce = absl::StrCat(++next_nonce_);
  state.status.sent_version = version;
  state.status.sent_nonce = nonce;
  ++state.status.pushes;
  state.awaiting_ack = true;
  state.sent_at = std::chrono::steady_clock::now();
  if (IsRouteType(type)) state.sent_basis = snapshot_;
  return nonce;
}

// --- StreamReactor ---------------------------------------------------------------------

template <typename Request, typename Response>
void StreamReactor<Request, Response>::Start() {
  server_.Register(this);
  this->StartRead(&request_);
}

template <typename Request, typename Response>
void StreamReactor<Request, Response>::OnReadDone(bool ok) {
  std::lock_guard lock(mu_);
  if (!ok) {
    // The client half-closed or the call was cancelled.
    FinishLocked(grpc::Status::OK);
    return;
  }
  if (finished_) return;
  if (!has_proxy_) {
    absl::Status identified = IdentifyLocked(request_.node());
    if (!identified.ok()) {
      FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                std::string(identified.message())));
      return;
    }
  }
  HandleRequestLocked(request_);
  if (!finished_) this->StartRead(&request_);
}

template <typename Request, typename Response>
void StreamReactor<Request, Response>::Push() {
  std::lock_guard lock(mu_);
  PushLocked();
}

template <typename Request, typename Response>
void StreamReactor<Request, Response>::PushLocked() {
  if (finished_ || !has_proxy_) return;
  const cache::Snapshot* snapshot = RefreshSnapshotLocked();
  if (snapshot == nullptr) return;  // sources have not synced: never push an empty set

  // Make before break (xDS: "Eventual consistency considerations"): clusters and endpoints
  // that left the state stay with the client until the listeners and routes that may name
  // them have been replaced and ACKed; only then does it learn they are gone. A client that
  // rejected its new listeners or routes still runs the old ones, so they stay until it
  // accepts newer ones.
  //
  // No time limit: holding costs the client a few idle clusters, dropping one its live
  // routes name costs requests (istiod does not hold removals at all; holding is the safe
  // side of its behaviour). What is held is bounded instead: only what the routes the client
  // runs, or was last sent, name (RemovedLocked), so churn while it rejects routes does not
  // pile up.
  std::array<cache::ResourceMap, cache::kResourceTypeCount> removed;
  bool deferred = false;
  for (ResourceType type : kHeldTypes) {
    removed[static_cast<size_t>(type)] = RemovedLocked(type);
    deferred = deferred || !removed[static_cast<size_t>(type)].empty();
  }
  bool walked = true;
  for (ResourceType type : cache::kPushOrder) {
    const cache::ResourceMap* available = &snapshot->Resources(type);
    cache::ResourceMap with_removed;
    if (const cache::ResourceMap& held = removed[static_cast<size_t>(type)]; !held.empty()) {
      with_removed = held;
      with_removed.insert(available->begin(), available->end());
      available = &with_removed;
    }
    if (!PushTypeLocked(type, *available)) {
      walked = false;
      break;
    }
  }
  if (walked && RoutesSettledLocked()) {
    // The client runs the current listeners and routes: they are what it stands on now.
    for (ResourceType type : {ResourceType::kListener, ResourceType::kRoute}) {
      TypeState& state = type_state(type);
      if (state.sent_basis != nullptr) state.sent_basis = state.acked_basis = snapshot_;
    }
    for (cache::ResourceMap& inherited : inherited_) inherited.clear();
    for (ResourceType type : kHeldTypes) {
      if (!deferred || !PushTypeLocked(type, snapshot->Resources(type))) break;
      removed[static_cast<size_t>(type)].clear();
    }
  }
  ReportLocked(removed);
}

template <typename Request, typename Response>
bool StreamReactor<Request, Response>::RoutesSettledLocked() {
  for (ResourceType type : {ResourceType::kListener, ResourceType::kRoute}) {
    if (type_state(type).awaiting_ack || type_state(type).rejected) return false;
  }
  return true;
}

template <typename Request, typename Response>
void StreamReactor<Request, Response>::ReportLocked(
    const std::array<cache::ResourceMap, cache::kResourceTypeCount>& removed) {
  for (ResourceType type : kHeldTypes) {
    TypeStatus& status = type_state(type).status;
    std::vector<std::string> held;
    if (status.subscribed) {
      for (const auto& [name, resource] : removed[static_cast<size_t>(type)]) {
        if (status.wildcard || status.names.contains(name)) held.push_back(name);
      }
    }
    if (held.size() != status.held.size()) {
      server_.metrics().AddHeldRemovals(
          type, static_cast<double>(held.size()) - static_cast<double>(status.held.size()));
    }
    status.held = std::move(held);
  }

  std::optional<RejectedRoutes> routes;
  for (ResourceType type : {ResourceType::kListener, ResourceType::kRoute}) {
    const TypeState& state = type_state(type);
    if (!state.rejected) continue;
    if (!routes) {
      routes.emplace();
      for (ResourceType held : kHeldTypes) {
        routes->held[static_cast<size_t>(held)] = removed[static_cast<size_t>(held)];
      }
    }
    size_t i = static_cast<size_t>(type);
    routes->rejected[i] = true;
    routes->nacked_version[i] = state.status.nacked_version;
    routes->nack_error[i] = state.status.nack_error;
  }
  if (!routes_reported_ || routes != reported_routes_) {
    server_.rejections().Update(status_.proxy.id, status_.connection_id, routes);
    reported_routes_ = std::move(routes);
    routes_reported_ = true;
  }
}

template <typename Request, typename Response>
bool StreamReactor<Request, Response>::PushTypeLocked(ResourceType type,
                                                      const cache::ResourceMap& available) {
  TypeState& state = type_state(type);
  if (!state.status.subscribed) return true;
  auto started = std::chrono::steady_clock::now();
  std::optional<Response> response = DiffLocked(type, available);
  if (!response) return true;
  if (state.awaiting_ack) {
    // Newer state waits behind the response in flight, and so do the types after it, so
    // that a proxy never sees routes before the clusters they name.
    return false;
  }
  SendLocked(type, *std::move(response));
  if (Held* held = HeldOf(type)) {
    const cache::ResourceMap& current = snapshot_->Resources(type);
    held->basis = snapshot_;
    held->kept.clear();
    if (&available != &current) {
      for (const auto& [name, resource] : available) {
        if (!current.contains(name)) held->kept.emplace(name, resource);
      }
    }
  }
  server_.metrics().RecordPush(type, Since(started).count());
  return true;
}

template <typename Request, typename Response>
typename StreamReactor<Request, Response>::Held* StreamReactor<Request, Response>::HeldOf(
    ResourceType type) {
  switch (type) {
    case ResourceType::kCluster:
      return &held_[0];
    case ResourceType::kEndpoint:
      return &held_[1];
    default:
      return nullptr;
  }
}

template <typename Request, typename Response>
cache::ResourceMap StreamReactor<Request, Response>::RemovedLocked(ResourceType type) {
  cache::ResourceMap removed;
  const Held& held = *HeldOf(type);
  const cache::ResourceMap& inherited = inherited_[static_cast<size_t>(type)];
  // What the listeners and routes the client runs or may run can name: the resources of the
  // snapshots they came from, and what its previous stream's routes named.
  std::vector<const cache::ResourceMap*> named;
  for (ResourceType route_type : {ResourceType::kListener, ResourceType::kRoute}) {
    for (const cache::SnapshotPtr& basis :
         {type_state(route_type).acked_basis, type_state(route_type).sent_basis}) {
      if (basis == nullptr) continue;
      const cache::ResourceMap* resources = &basis->Resources(type);
      if (std::find(named.begin(), named.end(), resources) == named.end()) {
        named.push_back(resources);
      }
    }
  }
  if (!inherited.empty()) named.push_back(&inherited);
  if (named.empty()) return removed;
  if (held.basis == snapshot_ && held.kept.empty()) return removed;
  const cache::ResourceMap& current = snapshot_->Resources(type);
  auto collect = [&](const cache::ResourceMap& from) {
    for (const auto& [name, resource] : from) {
      if (current.contains(name) || removed.contains(name)) continue;
      for (const cache::ResourceMap* resources : named) {
        if (resources->contains(name)) {
          removed.emplace(name, resource);
          break;
        }
      }
    }
  };
  // What the client holds: what it was last sent of the type, or, before that on this
  // stream, what the routes it runs name (their snapshots are consistent).
  collect(held.kept);
  if (held.basis != nullptr) {
    collect(held.basis->Resources(type));
  } else {
    for (const cache::ResourceMap* resources : named) collect(*resources);
  }
  return removed;
}

template <typename Request, typename Response>
void StreamReactor<Request, Response>::SendLocked(ResourceType type, Response response) {
  response.set_nonce(RecordSendLocked(type, VersionOf(response)));
  response.mutable_control_plane()->set_identifier(std::string(kControlPlaneId));
  SentLocked(type, response);
  spdlog::debug("ads: {} <- {} version {} nonce {} ({} resources)", status_.connection_id,
                cache::ShortName(type), VersionOf(response), response.nonce(),
                response.resources_size());
  outbox_.push_back(std::move(response));
  if (!writing_) {
    writing_ = true;
    this->StartWrite(&outbox_.front());
  }
}

template <typename Request, typename Response>
void StreamReactor<Request, Response>::OnWriteDone(bool ok) {
  std::lock_guard lock(mu_);
  outbox_.pop_front();
  if (!ok) {
    writing_ = false;
    FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
    return;
  }
  if (outbox_.empty()) {
    writing_ = false;
  } else {
    this->StartWrite(&outbox_.front());
  }
}

template <typename Request, typename Response>
void StreamReactor<Request, Response>::Close(const grpc::Status& status) {
  std::lock_guard lock(mu_);
  FinishLocked(status);
}

template <typename Request, typename Response>
void StreamReactor<Request, Response>::FinishLocked(const grpc::Status& status) {
  if (finished_) return;
  finished_ = true;
  this->Finish(status);
}

template <typename Request, typename Response>
void StreamReactor<Request, Response>::OnDone() {
  if (has_proxy_) {
    spdlog::info("ads: connection {} closed", status_.connection_id);
    std::lock_guard lock(mu_);
    for (ResourceType type : kHeldTypes) {
      server_.metrics().AddHeldRemovals(
          type, -static_cast<double>(type_state(type).status.held.size()));
    }
    server_.rejections().Release(status_.proxy.id, status_.connection_id,
                                 std::chrono::steady_clock::now());
  }
  server_.Unregister(this);
  delete this;
}

template class StreamReactor<DiscoveryRequest, DiscoveryResponse>;
template class StreamReactor<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

// --- AdsStream (state of the world) ----------------------------------------------------

AdsStream::AdsStream(AdsServer& server, grpc::CallbackServerContext* context)
    : StreamReactor(server, context, Protocol::kStateOfTheWorld) {
  Start();
}

void AdsStream::HandleRequestLocked(const DiscoveryRequest& request) {
  std::optional<ResourceType> type = TypeOfLocked(request.type_url());
  if (!type) return;
  Answer answer = AnswerLocked(*type, request.response_nonce(),
                               request.has_error_detail() ? &request.error_detail() : nullptr,
                               request.version_info());
  // A stale request's names are as old as its nonce: the client has sent newer ones since.
  if (answer == Answer::kStale) return;

  TypeState& state = type_state(*type);
  TypeStatus& status = state.status;
  std::set<std::string> names(request.resource_names().begin(), request.resource_names().end());
  // An empty list means "*" only until the client names resources of this type; from then on
  // it unsubscribes from everything (xDS: "How the client specifies what resources to return").
  if (!names.empty()) state.named = true;
  bool wildcard =
      cache::IsWildcardType(*type) && (names.contains("*") || (names.empty() && !state.named));
  names.erase("*");
  if (!status.subscribed || names != status.names || wildcard != status.wildcard) {
    // A new subscription (or a reconnecting client) is answered even if nothing changed.
    force_[static_cast<size_t>(*type)] = true;
  }
  status.subscribed = true;
  status.wildcard = wildcard;
  status.names = std::move(names);
  PushLocked();
}

std::optional<DiscoveryResponse> AdsStream::DiffLocked(ResourceType type,
                                                       const cache::ResourceMap& available) {
  const TypeStatus& status = type_state(type).status;
  std::vector<const cache::Resource*> selected;
  if (status.wildcard) {
    for (const auto& [name, resource] : available) selected.push_back(resource.get());
  } else {
    for (const std::string& name : status.names) {
      // Names that do not exist yet stay subscribed and are sent once they appear.
      if (auto it = available.find(name); it != available.end()) {
        selected.push_back(it->second.get());
      }
    }
  }
  std::string fingerprint;
  for (const cache::Resource* resource : selected) {
    absl::StrAppend(&fingerprint, resource->name, "\n", resource->version, "\n");
  }
  std::string version = cache::ContentHash(fingerprint);
  // A version the client rejected is never sent to it again; only a new one is.
  if (version == status.nacked_version) return std::nullopt;
  if (version == status.sent_version && !force_[static_cast<size_t>(type)]) return std::nullopt;

  DiscoveryResponse response;
  response.set_type_url(std::string(cache::TypeUrl(type)));
  response.set_version_info(version);
  for (const cache::Resource* resource : selected) *response.add_resources() = resource->body;
  return response;
}

void AdsStream::SentLocked(ResourceType type, const DiscoveryResponse& /*response*/) {
  force_[static_cast<size_t>(type)] = false;
  if (type == ResourceType::kCluster) {
    // Envoy keeps new and changed clusters warming until their endpoints arrive, so EDS
    // follows every CDS push even when the endpoints are unchanged.
    force_[static_cast<size_t>(ResourceType::kEndpoint)] = true;
  }
}

}  // namespace meshpilot::xds
