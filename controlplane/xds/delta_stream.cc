#include "controlplane/xds/delta_stream.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "envoy/config/cluster/v3/cluster.pb.h"

namespace meshpilot::xds {
namespace {

using cache::ResourceType;

// The EDS name a cluster fetches its endpoints by, or "" when it is not an EDS cluster.
std::string EdsNameOf(const google::protobuf::Any& body) {
  envoy::config::cluster::v3::Cluster cluster;
  if (!body.UnpackTo(&cluster) || cluster.type() != envoy::config::cluster::v3::Cluster::EDS) {
    return "";
  }
  const std::string& service_name = cluster.eds_cluster_config().service_name();
  return service_name.empty() ? cluster.name() : service_name;
}

}  // namespace

DeltaStream::DeltaStream(AdsServer& server, grpc::CallbackServerContext* context)
    : StreamReactor(server, context, Protocol::kDelta) {
  Start();
}

void DeltaStream::HandleRequestLocked(const Request& request) {
  std::optional<ResourceType> type = TypeOfLocked(request.type_url());
  if (!type) return;
  Answer answer = AnswerLocked(*type, request.response_nonce(),
                               request.has_error_detail() ? &request.error_detail() : nullptr,
                               type_state(*type).status.sent_version);
  if (answer == Answer::kAck) ApplyInFlightLocked(*type);
  if (answer == Answer::kAck || answer == Answer::kNack) subscription(*type).in_flight.clear();
  // Unlike SotW, a stale nonce does not void the request: subscription changes are deltas
  // the client never repeats, and xDS says to honour them whatever the nonce.
  UpdateSubscriptionLocked(*type, request);
  PushLocked();
}

void DeltaStream::UpdateSubscriptionLocked(ResourceType type, const Request& request) {
  TypeState& state = type_state(type);
  TypeStatus& status = state.status;
  Subscription& sub = subscription(type);
  bool wildcard_type = cache::IsWildcardType(type);

  bool first = !status.subscribed;
  status.subscribed = true;
  if (first) {
    // A reconnecting client says what it already has, so that it is not sent again.
    for (const auto& [name, version] : request.initial_resource_versions()) {
      sub.held[name] = version;
    }
    // Legacy wildcard: a first request that names nothing (xDS: "How the client specifies
    // what resources to return"); it ends once the client names resources.
    sub.legacy_wildcard = wildcard_type && request.resource_names_subscribe().empty() &&
                          request.resource_names_unsubscribe().empty();
  }
  for (const std::string& name : request.resource_names_subscribe()) {
    state.named = true;
    if (name == "*") {
      sub.explicit_wildcard = wildcard_type;
      continue;
    }
    status.names.insert(name);
    // The client may have forgotten a resource it seems to hold: xDS says to send it again,
    // unless it has just told us the version it holds.
    if (!first || request.initial_resource_versions().count(name) == 0) sub.held.erase(name);
  }
  std::vector<std::string> unsubscribed;
  for (const std::string& name : request.resource_names_unsubscribe()) {
    if (name == "*") {
      sub.explicit_wildcard = false;
      sub.legacy_wildcard = false;
      continue;
    }
    status.names.erase(name);
    sub.held.erase(name);
    unsubscribed.push_back(name);
  }

  status.wildcard = sub.explicit_wildcard || (sub.legacy_wildcard && !state.named);
  if (status.wildcard) {
    // The first wildcard request is answered even when the client holds everything: that
    // answer is how it learns it is up to date.
    if (first) sub.answer = true;
    // A name dropped while "*" still covers it: the client cannot tell whether to keep it,
    // so it is told either way (xDS: "Unsubscribing from Resources").
    sub.resend.insert(unsubscribed.begin(), unsubscribed.end());
  } else {
    // What the client holds outside its subscription is no longer the server's business.
    std::erase_if(sub.held, [&](const auto& entry) { return !status.names.contains(entry.first); });
  }
}

void DeltaStream::ApplyInFlightLocked(ResourceType type) {
  Subscription& sub = subscription(type);
  const TypeStatus& status = type_state(type).status;
  for (const auto& [name, version] : sub.in_flight) {
    if (version.empty()) {
      if (status.names.contains(name)) {
        sub.held[name] = "";  // it asked for the name: remember it was told "does not exist"
      } else {
        sub.held.erase(name);
      }
    } else if (InScopeLocked(type, name)) {
      // (A name unsubscribed while the response was in flight is not held.)
      sub.held[name] = version;
    }
  }
}

bool DeltaStream::InScopeLocked(ResourceType type, const std::string& name) {
  const TypeStatus& status = type_state(type).status;
  return status.wildcard || status.names.contains(name);
}

std::optional<DeltaStream::Response> DeltaStream::DiffLocked(ResourceType type,
                                                             const cache::ResourceMap& available) {
  const TypeStatus& status = type_state(type).status;
  const Subscription& sub = subscription(type);

  std::map<std::string, const cache::Resource*> changed;
  std::set<std::string> removed;
  auto consider = [&](const std::string& name) {
    bool resend = sub.resend.contains(name);
    auto held = sub.held.find(name);
    if (auto it = available.find(name); it != available.end()) {
      if (resend || held == sub.held.end() || held->second != it->second->version) {
        changed.emplace(name, it->second.get());
      }
    } else if (resend || (held != sub.held.end() && !held->second.empty()) ||
               (held == sub.held.end() && status.names.contains(name))) {
      // Gone since the client got it, or asked for by name and never there: xDS tells a
      // client that a resource does not exist by naming it in removed_resources.
      removed.insert(name);
    }
  };
  if (status.wildcard) {
    for (const auto& [name, resource] : available) consider(name);
  }
  for (const std::string& name : status.names) consider(name);
  for (const auto& [name, version] : sub.held) consider(name);  // what disappeared
  for (const std::string& name : sub.resend) {
    if (InScopeLocked(type, name)) consider(name);
  }
  if (changed.empty() && removed.empty() && !sub.answer) {
    // The client holds the current state: whatever it rejected before is moot (the rejected
    // change was reverted or unsubscribed), so removals need not wait for it.
    type_state(type).rejected = false;
    return std::nullopt;
  }

  // The version is a hash of everything the client will hold once it applies the response,
  // like SotW's: equal holdings, equal versions.
  Versions known = sub.held;
  for (const auto& [name, resource] : changed) known[name] = resource->version;
  for (const std::string& name : removed) {
    if (status.names.contains(name)) {
      known[name] = "";
    } else {
      known.erase(name);
    }
  }
  std::string fingerprint;
  for (const auto& [name, version] : known) absl::StrAppend(&fingerprint, name, "\n", version, "\n");
  std::string version = cache::ContentHash(fingerprint);
  // The client rejected exactly this: it is not sent again; a different change is.
  if (version == status.nacked_version) return std::nullopt;

  Response response;
  response.set_type_url(std::string(cache::TypeUrl(type)));
  response.set_system_version_info(version);
  for (const auto& [name, resource] : changed) {
    envoy::service::discovery::v3::Resource* entry = response.add_resources();
    entry->set_name(name);
    entry->set_version(resource->version);
    *entry->mutable_resource() = resource->body;
  }
  for (const std::string& name : removed) response.add_removed_resources(name);
  return response;
}

void DeltaStream::SentLocked(ResourceType type, const Response& response) {
  Subscription& sub = subscription(type);
  sub.in_flight.clear();
  for (const envoy::service::discovery::v3::Resource& resource : response.resources()) {
    sub.in_flight[resource.name()] = resource.version();
  }
  for (const std::string& name : response.removed_resources()) sub.in_flight[name] = "";
  sub.resend.clear();
  sub.answer = false;

  if (type == ResourceType::kCluster) {
    // Envoy keeps new and changed clusters warming until their endpoints arrive, so their
    // EDS resources follow even when the endpoints are unchanged.
    for (const envoy::service::discovery::v3::Resource& resource : response.resources()) {
      std::string eds_name = EdsNameOf(resource.resource());
      if (!eds_name.empty() && InScopeLocked(ResourceType::kEndpoint, eds_name)) {
        subscription(ResourceType::kEndpoint).resend.insert(eds_name);
      }
    }
  }
}

}  // namespace meshpilot::xds
