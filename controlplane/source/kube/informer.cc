#include "controlplane/source/kube/informer.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "controlplane/source/kube/api_status.h"
#include "spdlog/spdlog.h"

namespace meshpilot::source {
namespace {

using nlohmann::json;

// Continue tokens are base64: '+', '/' and '=' must be escaped in a query.
std::string QueryEscape(const std::string& text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += {'%', kHex[c >> 4], kHex[c & 15]};
    }
  }
  return out;
}

std::string ResourceVersionOf(const json& object) {
  const json* metadata = object.is_object() && object.contains("metadata")
                             ? &object["metadata"] : nullptr;
  if (metadata == nullptr || !metadata->is_object()) return "";
  auto version = metadata->find("resourceVersion");
  return version != metadata->end() && version->is_string() ? version->get<std::string>() : "";
}

}  // namespace

std::string ApiResource::Path(const std::string& namespace_) const {
  std::string path = api_version.find('/') == std::string::npos
                         ? absl::StrCat("/api/", api_version)
                         : absl::StrCat("/apis/", api_version);
  if (namespaced && !namespace_.empty()) absl::StrAppend(&path, "/namespaces/", namespace_);
  absl::StrAppend(&path, "/", plural);
  return path;
}

Informer::Informer(ApiClient& client, ApiResource resource, std::string namespace_,
                   Callbacks callbacks, Options options)
    : client_(client),
      resource_(std::move(resource)),
      namespace_(std::move(namespace_)),
      callbacks_(std::move(callbacks)),
      options_(options),
      name_(absl::StrCat(resource_.api_version, " ", resource_.plural,
                         namespace_.empty() ? "" : absl::StrCat(" in ", namespace_))),
      backoff_(options.backoff_initial, options.backoff_max) {}

Informer::~Informer() { Stop(); }

void Informer::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Informer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Informer::Sleep(std::chrono::milliseconds delay) {
  std::unique_lock<std::mutex> lock(mu_);
  return !wake_.wait_for(lock, delay, [this] { return stopping_; });
}

void Informer::Run() {
  while (Sleep(std::chrono::milliseconds(0))) {
    if (resource_version_.empty()) {
      if (absl::Status listed = List(); !listed.ok()) {
        if (absl::IsCancelled(listed)) return;
        std::chrono::milliseconds delay = backoff_.Next();
        spdlog::warn("kube: cannot list {}: {}; retrying in {} ms", name_, listed.ToString(),
                     delay.count());
        if (!Sleep(delay)) return;
        continue;
      }
    }
    switch (Watch()) {
      case WatchEnd::kExpired:
        backoff_.Reset();
        break;
      case WatchEnd::kGone:
        spdlog::info("kube: {}: resourceVersion {} is gone (410, compacted); relisting", name_,
                     resource_version_);
        resource_version_.clear();
        break;
      case WatchEnd::kFailed: {
        std::chrono::milliseconds delay = backoff_.Next();
        // An outage fails every attempt: say so once, then quietly until it is over.
        spdlog::log(failures_++ == 0 ? spdlog::level::info : spdlog::level::debug,
                    "kube: {}: watch resumes from resourceVersion {} in {} ms", name_,
                    resource_version_, delay.count());
        if (!Sleep(delay)) return;
        break;
      }
      case WatchEnd::kStopped:
        return;
    }
  }
}

absl::Status Informer::List() {
  const std::string path = resource_.Path(namespace_);
  std::vector<json> objects;
  std::string list_version;
  std::string continue_token;
  do {
    std::string query = absl::StrCat(path, "?limit=", options_.page_size);
    if (!continue_token.empty()) absl::StrAppend(&query, "&continue=", QueryEscape(continue_token));
    absl::StatusOr<ApiClient::Response> response = client_.Get(query);
    if (!response.ok()) return response.status();
    if (response->status != 200) {
      // A continue token that expired (410) fails the whole list: the next try starts over.
      return absl::UnavailableError(absl::StrCat("HTTP ", response->status, ": ",
                                                 ApiStatusMessage(response->body)));
    }
    json page = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
    if (!page.is_object() || !page.contains("items") || !page["items"].is_array()) {
      return absl::DataLossError("the list answer is not a Kubernetes list");
    }
    if (list_version.empty()) list_version = ResourceVersionOf(page);
    for (json& item : page["items"]) {
      // Items of a list carry neither apiVersion nor kind.
      item["apiVersion"] = resource_.api_version;
      item["kind"] = resource_.kind;
      objects.push_back(std::move(item));
    }
    continue_token.clear();
    if (page["metadata"].is_object() && page["metadata"].contains("continue") &&
        page["metadata"]["continue"].is_string()) {
      continue_token = page["metadata"]["continue"].get<std::string>();
    }
  } while (!continue_token.empty());
  if (list_version.empty()) return absl::DataLossError("the list has no resourceVersion");
  spdlog::info("kube: listed {} {} at resourceVersion {}", objects.size(), name_, list_version);
  resource_version_ = list_version;
  callbacks_.replace(std::move(objects));
  backoff_.Reset();
  failures_ = 0;
  return absl::OkStatus();
}

Informer::WatchEnd Informer::Watch() {
  static thread_local std::mt19937 random(std::random_device{}());
  const int64_t min_s = options_.watch_timeout_min.count();
  const int64_t timeout_s = std::uniform_int_distribution<int64_t>(min_s, 2 * min_s - 1)(random);
  std::string query = absl::StrCat(resource_.Path(namespace_),
                                   "?watch=true&allowWatchBookmarks=true&resourceVersion=",
                                   QueryEscape(resource_version_), "&timeoutSeconds=", timeout_s);
  bool gone = false;
  std::string failure;
  auto on_line = [&](const std::string& line) {
    if (gone || !failure.empty()) return;
    if (failures_ > 0) {
      spdlog::info("kube: {}: watching again after {} failed attempts", name_, failures_);
      failures_ = 0;
    }
    json event = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!event.is_object() || !event.contains("type") || !event["type"].is_string() ||
        !event.contains("object") || !event["object"].is_object()) {
      failure = absl::StrCat("malformed watch event: ", line.substr(0, 200));
      return;
    }
    const std::string type = event["type"].get<std::string>();
    json& object = event["object"];
    if (type == "ERROR") {
      if (object.value("code", 0) == 410) {
        gone = true;
      } else {
        failure = absl::StrCat("watch error: ", object.value("message", object.dump()));
      }
      return;
    }
    std::string version = ResourceVersionOf(object);
    if (type == "ADDED" || type == "MODIFIED" || type == "DELETED") {
      callbacks_.apply(std::move(object), type == "DELETED");
    } else if (type != "BOOKMARK") {
      spdlog::warn("kube: {}: ignoring watch event of type {}", name_, type);
    }
    if (!version.empty()) resource_version_ = version;
  };
  // The server sends a bookmark about every minute; much longer silence is a dead connection.
  absl::StatusOr<ApiClient::Response> response =
      client_.Stream(query, on_line, std::chrono::seconds(2 * min_s + 60));
  if (!response.ok()) {
    if (absl::IsCancelled(response.status())) return WatchEnd::kStopped;
    spdlog::log(failures_ == 0 ? spdlog::level::warn : spdlog::level::debug,
                "kube: {}: watch dropped: {}", name_, response.status().ToString());
    return WatchEnd::kFailed;
  }

  if (response->status == 410 || gone) return WatchEnd::kGone;
  if (response->status != 200) {
    spdlog::warn("kube: {}: watch refused: HTTP {}: {}", name_, response->status,
                 ApiStatusMessage(response->body));
    return WatchEnd::kFailed;
  }
  if (!failure.empty()) {
    spdlog::warn("kube: {}: {}", name_, failure);
    return WatchEnd::kFailed;
  }
  return WatchEnd::kExpired;
}

}  // namespace meshpilot::source
