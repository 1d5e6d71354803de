#include "controlplane/source/kube/kube_source.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "controlplane/convert/mesh_state_builder.h"
#include "controlplane/source/kube/json_yaml.h"
#include "spdlog/spdlog.h"

namespace meshpilot::source {
namespace {

using nlohmann::json;

constexpr char kOrigin[] = "kube";

std::string MetadataField(const json& object, const char* field) {
  auto metadata = object.find("metadata");
  if (metadata == object.end() || !metadata->is_object()) return "";
  auto value = metadata->find(field);
  return value != metadata->end() && value->is_string() ? value->get<std::string>() : "";
}

std::string KeyOf(const json& object) {
  return absl::StrCat(MetadataField(object, "namespace"), "/", MetadataField(object, "name"));
}

// The kinds meshpilot reads, each at the version the API server stores: it converts objects
// applied at any other served version (v1beta1, v1alpha3) to this one.
std::vector<ApiResource> Resources(bool legacy_endpoints) {
  return {
      {"v1", "Namespace", "namespaces", /*namespaced=*/false},
      {"v1", "Service", "services", true},
      legacy_endpoints ? ApiResource{"v1", "Endpoints", "endpoints", true}
                       : ApiResource{"discovery.k8s.io/v1", "EndpointSlice", "endpointslices", true},
      {"v1", "Pod", "pods", true},
      {"networking.istio.io/v1", "VirtualService", "virtualservices", true},
      {"networking.istio.io/v1", "DestinationRule", "destinationrules", true},
      {"security.istio.io/v1", "AuthorizationPolicy", "authorizationpolicies", true},
  };
}

bool WritesStatus(const ApiResource& resource) {
  return resource.kind == "VirtualService" || resource.kind == "DestinationRule" ||
         resource.kind == "AuthorizationPolicy";
}

// The object as its author wrote it: without status and the metadata every write changes.
size_t ContentHash(const json& object) {
  json content = object;
  content.erase("status");
  if (auto metadata = content.find("metadata"); metadata != content.end() &&
                                                 metadata->is_object()) {
    metadata->erase("resourceVersion");
    metadata->erase("managedFields");
  }
  return std::hash<json>{}(content);
}

std::map<std::string, std::string> LabelsOf(const json& object) {
  std::map<std::string, std::string> labels;
  const json& metadata = object.value("metadata", json::object());
  auto found = metadata.find("labels");
  if (found == metadata.end() || !found->is_object()) return labels;
  for (const auto& [key, value] : found->items()) {
    if (value.is_string()) labels[key] = value.get<std::string>();
  }
  return labels;
}

bool SameError(const std::optional<model::ConfigError>& a,
               const std::optional<model::ConfigError>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || a->message == b->message;
}

void LogRejected(const model::ConfigError& error) {
  spdlog::warn("kube: rejected {} {}/{}: {}", error.kind, error.namespace_, error.name,
               error.message);
}

std::string StatusKey(const std::string& kind, const std::string& ns, const std::string& name) {
  return absl::StrCat(kind, "/", ns, "/", name);
}

}  // namespace

KubeSource::KubeSource(ClusterConfig config, Options options, Subscriber subscriber)
    : options_(std::move(options)),
      subscriber_(std::move(subscriber)),
      client_(config) {
  // With watched namespaces, one informer per namespace: a namespaced Role is then enough.
  std::vector<std::string> scopes = options_.watched_namespaces;
  if (scopes.empty()) scopes.push_back("");
  for (const ApiResource& resource : Resources(options_.legacy_endpoints)) {
    for (const std::string& scope : resource.namespaced ? scopes : std::vector<std::string>{""}) {
      size_t index = informers_.size();
      Informer::Callbacks callbacks{
          [this, index](std::vector<json> objects) { Replace(index, std::move(objects)); },
          [this, index](json object, bool deleted) { Apply(index, object, deleted); }};
      informers_.push_back(
          std::make_unique<Informer>(client_, resource, scope, std::move(callbacks),
                                     options_.informer));
      informer_resources_.push_back(resource);
    }
  }
  stores_.resize(informers_.size());
  namespace_store_ = std::find_if(informer_resources_.begin(), informer_resources_.end(),
                                  [](const ApiResource& r) { return r.kind == "Namespace"; }) -
                     informer_resources_.begin();
  if (options_.status.write) {
    status_client_ = std::make_unique<ApiClient>(std::move(config));
    status_writer_ = std::make_unique<StatusWriter>(
        *status_client_, StatusWriter::Options{.identity = options_.status.lease.identity});
    if (options_.status.leader_elect) {
      elector_ = std::make_unique<LeaderElector>(
          *status_client_, options_.status.lease,
          [this](bool leading) { status_writer_->SetLeading(leading); });
    }
  }
}

KubeSource::~KubeSource() { Stop(); }

absl::Status KubeSource::Start() {
  if (publisher_.joinable()) return absl::FailedPreconditionError("already started");
  publisher_ = std::thread([this] { PublishLoop(); });
  for (const auto& informer : informers_) informer->Start();
  if (status_writer_ != nullptr) {
    status_writer_->Start();
    if (elector_ != nullptr) {
      elector_->Start();
    } else {
      status_writer_->SetLeading(true);
    }
  }
  return absl::OkStatus();
}

void KubeSource::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  changed_.notify_all();
  client_.Shutdown();  // ends the requests the informers wait on
  for (const auto& informer : informers_) informer->Stop();
  if (publisher_.joinable()) publisher_.join();
  // Leadership ends (the writer stops writing) and the Lease is released for a successor.
  if (elector_ != nullptr) elector_->Stop();
  if (status_writer_ != nullptr) status_writer_->Stop();
  if (status_client_ != nullptr) status_client_->Shutdown();
}

bool KubeSource::Watched(const json& object) const {
  if (options_.watched_namespaces.empty()) return true;
  // Only Namespaces (cluster-scoped, listed cluster-wide) need filtering here.
  if (object.value("kind", "") != "Namespace") return true;
  const std::string name = MetadataField(object, "name");
  return std::find(options_.watched_namespaces.begin(), options_.watched_namespaces.end(),
                   name) != options_.watched_namespaces.end();
}

KubeSource::Entry KubeSource::Convert(size_t store, const json& object,
                                      const Entry* previous) const {
  Entry entry;
  entry.content_hash = ContentHash(object);
  const ApiResource& resource = informer_resources_[store];
  if (resource.namespaced) {
    entry.namespace_ = MetadataField(object, "namespace");
  } else {
    entry.labels = LabelsOf(object);
  }
  std::optional<StatusTarget> target;
  if (status_writer_ != nullptr && WritesStatus(resource)) {
    target.emplace();
    target->resource = resource;
    target->namespace_ = MetadataField(object, "namespace");
    target->name = MetadataField(object, "name");
    target->uid = MetadataField(object, "uid");
    target->resource_version = MetadataField(object, "resourceVersion");
    const json& metadata = object.value("metadata", json::object());
    if (auto generation = metadata.find("generation");
        generation != metadata.end() && generation->is_number_integer()) {
      target->generation = generation->get<int64_t>();
    }
    if (auto status = object.find("status"); status != object.end()) target->status = *status;
  }
  // Only the status changed (often meshpilot's own write coming back): nothing to convert.
  if (previous != nullptr && previous->content_hash == entry.content_hash) {
    entry = *previous;
    if (target && entry.status) {
      entry.status->resource_version = target->resource_version;
      entry.status->status = target->status;
    }
    return entry;
  }
  std::vector<convert::SourcedObject> served_before;
  if (previous != nullptr && previous->served.accepted) {
    served_before.push_back(*previous->served.accepted);
  }
  entry.served = convert::ReadServedVersion(JsonToYaml(object), kOrigin, served_before);
  if (target && entry.served.error) {
    // One validation message per problem; what still serves goes in the condition.
    target->validation_error = entry.served.problems;
    target->serving_note = entry.served.serving_note;
  }
  entry.status = std::move(target);
  return entry;
}

void KubeSource::Replace(size_t index, std::vector<json> objects) {
  std::lock_guard<std::mutex> lock(mu_);
  Store& store = stores_[index];
  std::map<std::string, Entry> entries;
  for (const json& object : objects) {
    if (!Watched(object)) continue;
    std::string key = KeyOf(object);
    auto previous = store.entries.find(key);
    Entry entry =
        Convert(index, object, previous == store.entries.end() ? nullptr : &previous->second);
    if (entry.served.error && (previous == store.entries.end() ||
                               !SameError(previous->second.served.error, entry.served.error))) {
      LogRejected(*entry.served.error);
    }
    entries[std::move(key)] = std::move(entry);
  }
  store.entries = std::move(entries);
  store.synced = true;
  dirty_ = true;
  changed_.notify_all();
}

void KubeSource::Apply(size_t index, const json& object, bool deleted) {
  if (!Watched(object)) return;
  std::lock_guard<std::mutex> lock(mu_);
  Store& store = stores_[index];
  std::string key = KeyOf(object);
  if (deleted) {
    if (store.entries.erase(key) == 0) return;
  } else {
    auto previous = store.entries.find(key);
    const bool existed = previous != store.entries.end();
    Entry entry = Convert(index, object, existed ? &previous->second : nullptr);
    if (existed && previous->second.content_hash == entry.content_hash) {
      // A change of status alone: the mesh is the same; only the status writer cares.
      previous->second = std::move(entry);
      if (status_writer_ != nullptr && previous->second.status) {
        status_writer_->Update(StatusTargets());
      }
      return;
    }
    if (entry.served.error) LogRejected(*entry.served.error);
    store.entries[std::move(key)] = std::move(entry);
  }
  dirty_ = true;
  changed_.notify_all();
}

std::set<std::string> KubeSource::SelectedNamespaces() const {
  std::set<std::string> selected;
  for (const auto& [key, entry] : stores_[namespace_store_].entries) {
    if (options_.namespace_selector.Matches(entry.labels)) selected.insert(key.substr(1));
  }
  return selected;
}

bool KubeSource::Admitted(const std::string& key, const Entry& entry,
                          const std::set<std::string>& selected) const {
  // Without a selector every namespace is admitted, also one whose Namespace has not been
  // seen yet (the watches are not ordered).
  if (options_.namespace_selector.SelectsEverything()) return true;
  // Namespaces are cluster-scoped and keyed "/name".
  return selected.contains(entry.namespace_.empty() ? key.substr(1) : entry.namespace_);
}

std::vector<StatusTarget> KubeSource::StatusTargets() const {
  const std::set<std::string> selected = SelectedNamespaces();
  std::vector<StatusTarget> targets;
  for (const Store& store : stores_) {
    for (const auto& [key, entry] : store.entries) {
      if (!entry.status || entry.published_in == 0 || entry.published_in > pushed_version_ ||
          !Admitted(key, entry, selected)) {
        continue;
      }
      StatusTarget target = *entry.status;
      auto warnings = warnings_.find(
          StatusKey(target.resource.kind, target.namespace_, target.name));
      if (warnings != warnings_.end()) target.warnings = warnings->second;
      targets.push_back(std::move(target));
    }
  }
  return targets;
}

void KubeSource::OnPushed(uint64_t state_version, std::vector<model::ConfigError> warnings) {
  if (status_writer_ == nullptr) return;
  std::vector<StatusTarget> targets;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pushed_version_ = std::max(pushed_version_, state_version);
    warnings_.clear();
    for (model::ConfigError& warning : warnings) {
      warnings_[StatusKey(warning.kind, warning.namespace_, warning.name)].push_back(
          std::move(warning));
    }
    targets = StatusTargets();
  }
  status_writer_->Update(std::move(targets));
}

void KubeSource::LogRootSelection(const std::set<std::string>& selected) {
  if (options_.namespace_selector.SelectsEverything() ||
      !stores_[namespace_store_].entries.contains("/" + std::string(model::kRootNamespace))) {
    return;
  }
  const bool root_selected = selected.contains(std::string(model::kRootNamespace));
  if (root_selected_ == root_selected) return;
  root_selected_ = root_selected;
  if (root_selected) {
    spdlog::info("kube: the root namespace {} is selected: its mesh-wide config applies",
                 model::kRootNamespace);
  } else {
    spdlog::warn("kube: the root namespace {} is not selected by --namespace-selector: as in "
                 "Istio, its mesh-wide AuthorizationPolicies and DestinationRules are ignored "
                 "until its labels match",
                 model::kRootNamespace);
  }
}

void KubeSource::PublishLoop() {
  while (true) {
    std::vector<convert::SourcedObject> objects;
    std::vector<model::ConfigError> errors;
    uint64_t version = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto ready = [this] {
        return stopping_ || (dirty_ && std::all_of(stores_.begin(), stores_.end(),
                                                   [](const Store& s) { return s.synced; }));
      };
      changed_.wait(lock, ready);
      if (stopping_) return;
      // Let a burst of events land before building.
      changed_.wait_for(lock, options_.coalesce, [this] { return stopping_; });
      if (stopping_) return;
      dirty_ = false;
      version = ++version_;
      const std::set<std::string> selected = SelectedNamespaces();
      LogRootSelection(selected);
      for (Store& store : stores_) {
        for (auto& [key, entry] : store.entries) {
          if (!Admitted(key, entry, selected)) {
            entry.published_in = 0;  // published again once its namespace is selected
            continue;
          }
          if (entry.published_in == 0) entry.published_in = version;
          if (entry.served.accepted) objects.push_back(*entry.served.accepted);
          if (entry.served.error) errors.push_back(*entry.served.error);
        }
      }
    }
    auto state = std::make_shared<model::MeshState>(
        convert::BuildMeshState(objects, std::move(errors)));
    state->version = version;
    subscriber_(std::move(state));
  }
}

}  // namespace meshpilot::source
