#include "controlplane/xds/stream.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "controlplane/xds/server.h"
#include "spdlog/spdlog.h"

namespace meshpilot::xds {
namespace {

using cache::ResourceType;

constexpr std::string_view kControlPlaneId = "meshpilot";

std::chrono::duration<double> Since(std::chrono::steady_clock::time_point start) {
  return std::chrono::steady_clock::now() - start;
}

}  // namespace

AdsStream::AdsStream(AdsServer& server, grpc::CallbackServerContext* context)
    : server_(server), context_(context) {
  status_.peer = context->peer();
  status_.connected_at = std::chrono::system_clock::now();
  server_.Register(this);
  StartRead(&request_);
}

bool AdsStream::HasProxy() const {
  std::lock_guard lock(mu_);
  return has_proxy_;
}

StreamStatus AdsStream::Status() const {
  std::lock_guard lock(mu_);
  StreamStatus status = status_;
  for (size_t i = 0; i < types_.size(); ++i) status.types[i] = types_[i].status;
  return status;
}

void AdsStream::OnReadDone(bool ok) {
  if (!ok) {
    // The client half-closed or the call was cancelled.
    std::lock_guard lock(mu_);
    FinishLocked(grpc::Status::OK);
    return;
  }
  HandleRequest(request_);
  std::lock_guard lock(mu_);
  if (!finished_) StartRead(&request_);
}

void AdsStream::HandleRequest(const Request& request) {
  std::lock_guard lock(mu_);
  if (finished_) return;
  if (!has_proxy_) {
    absl::StatusOr<translator::ProxyInfo> proxy = translator::ParseProxyInfo(request.node());
    if (!proxy.ok()) {
      spdlog::warn("ads: rejecting stream from {}: {}", status_.peer, proxy.status().ToString());
      FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                std::string(proxy.status().message())));
      return;
    }
    status_.proxy = *std::move(proxy);
    status_.connection_id = server_.NextConnectionId(status_.proxy.id);
    has_proxy_ = true;
    spdlog::info("ads: new connection {} from {}", status_.connection_id, status_.peer);
  }

  std::optional<ResourceType> type = cache::TypeFromUrl(request.type_url());
  if (!type) {
    spdlog::warn("ads: {} asked for unsupported type {}", status_.connection_id,
                 request.type_url());
    return;
  }
  TypeState& state = types_[static_cast<size_t>(*type)];
  TypeStatus& status = state.status;

  if (!request.response_nonce().empty()) {
    // A request carrying an old nonce answers a response the client has since been sent a
    // newer one of: xDS says to ignore it.
    if (request.response_nonce() != status.sent_nonce) return;
    state.awaiting_ack = false;
    if (request.has_error_detail()) {
      status.nacked_version = status.sent_version;
      status.nack_error = request.error_detail().message();
      ++status.rejects;
      server_.metrics().RecordReject(*type);
      spdlog::warn("ads: {} rejected {} version {}: {}", status_.connection_id,
                   cache::ShortName(*type), status.sent_version, status.nack_error);
    } else {
      status.acked_version = request.version_info();
      status.nack_error.clear();
      server_.metrics().RecordConvergence(Since(state.sent_at).count());
    }
  }

  std::set<std::string> names(request.resource_names().begin(), request.resource_names().end());
  // An empty list means "*" only until the client names resources of this type; from then on
  // it unsubscribes from everything (xDS: "How the client specifies what resources to return").
  if (!names.empty()) state.named = true;
  bool wildcard =
      cache::IsWildcardType(*type) && (names.contains("*") || (names.empty() && !state.named));
  names.erase("*");
  if (!status.subscribed || names != status.names || wildcard != status.wildcard) {
    // A new subscription (or a reconnecting client) is answered even if nothing changed.
    state.force = true;
  }
  status.subscribed = true;
  status.wildcard = wildcard;
  status.names = std::move(names);
  PushLocked();
}

void AdsStream::Push() {
  std::lock_guard lock(mu_);
  PushLocked();
}

void AdsStream::PushLocked() {
  if (finished_ || !has_proxy_) return;
  absl::StatusOr<cache::SnapshotPtr> snapshot = server_.cache().SnapshotFor(status_.proxy);
  if (snapshot.ok()) {
    snapshot_ = *snapshot;
  } else if (!absl::IsFailedPrecondition(snapshot.status())) {
    // Keep serving the last good snapshot; this is a translator bug, not client input.
    spdlog::error("ads: no new snapshot for {}: {}", status_.connection_id,
                  snapshot.status().ToString());
  }
  if (snapshot_ == nullptr) return;  // sources have not synced: never push an empty set

  for (ResourceType type : cache::kPushOrder) {
    TypeState& state = types_[static_cast<size_t>(type)];
    if (!state.status.subscribed) continue;
    auto started = std::chrono::steady_clock::now();
    std::optional<Response> response = Diff(type, *snapshot_);
    if (!response) continue;
    if (state.awaiting_ack) {
      // Newer state waits behind the response in flight, and so do the types after it, so
      // that a proxy never sees routes before the clusters they name.
      break;
    }
    SendLocked(type, *std::move(response));
    server_.metrics().RecordPush(type, Since(started).count());
  }
}

std::optional<AdsStream::Response> AdsStream::Diff(ResourceType type,
                                                    const cache::Snapshot& snapshot) {
  TypeState& state = types_[static_cast<size_t>(type)];
  const cache::Snapshot::ResourceMap& available = snapshot.Resources(type);
  std::vector<const cache::Resource*> selected;
  if (state.status.wildcard) {
    for (const auto& [name, resource] : available) selected.push_back(resource.get());
  } else {
    for (const std::string& name : state.status.names) {
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
  if (version == state.status.nacked_version) return std::nullopt;
  if (version == state.status.sent_version && !state.force) return std::nullopt;

  Response response;
  response.set_type_url(std::string(cache::TypeUrl(type)));
  response.set_version_info(version);
  response.mutable_control_plane()->set_identifier(std::string(kControlPlaneId));
  for (const cache::Resource* resource : selected) *response.add_resources() = resource->body;
  return response;
}

void AdsStream::SendLocked(ResourceType type, Response response) {
  TypeState& state = types_[static_cast<size_t>(type)];
  response.set_nonce(absl::StrCat(++next_nonce_));
  state.status.sent_version = response.version_info();
  state.status.sent_nonce = response.nonce();
  ++state.status.pushes;
  state.awaiting_ack = true;
  state.force = false;
  state.sent_at = std::chrono::steady_clock::now();
  if (type == ResourceType::kCluster) {
    // Envoy keeps new and changed clusters warming until their endpoints arrive, so EDS
    // follows every CDS push even when the endpoints are unchanged.
    types_[static_cast<size_t>(ResourceType::kEndpoint)].force = true;
  }
  spdlog::debug("ads: {} <- {} version {} nonce {} ({} resources)", status_.connection_id,
                cache::ShortName(type), response.version_info(), response.nonce(),
                response.resources_size());
  outbox_.push_back(std::move(response));
  if (!writing_) {
    writing_ = true;
    StartWrite(&outbox_.front());
  }
}

void AdsStream::OnWriteDone(bool ok) {
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
    StartWrite(&outbox_.front());
  }
}

void AdsStream::Close(const grpc::Status& status) {
  std::lock_guard lock(mu_);
  FinishLocked(status);
}

void AdsStream::FinishLocked(const grpc::Status& status) {
  if (finished_) return;
  finished_ = true;
  Finish(status);
}

void AdsStream::OnDone() {
  if (has_proxy_) spdlog::info("ads: connection {} closed", status_.connection_id);
  server_.Unregister(this);
  delete this;
}

}  // namespace meshpilot::xds
