#include "sidecar/config/sds.h"

#include <sys/inotify.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "yaml-cpp/yaml.h"

namespace meshpilot::sidecar::config {
namespace {

namespace tls_v3 = envoy::extensions::transport_sockets::tls::v3;
using envoy::config::core::v3::ConfigSource;

// Envoy reacts to moves (an atomic replacement); a file written in place counts once closed.
constexpr uint32_t kReplaced = IN_MOVED_TO | IN_CLOSE_WRITE;
// Changes closer together than this (a key and its certificate) make one reload.
constexpr int kQuietMs = 50;

// YAML as the JSON it stands for: plain scalars that read as numbers, booleans or null are
// those, as Envoy's YAML loader takes them; quoted ones stay strings.
nlohmann::json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& entry : node) out[entry.first.as<std::string>()] = YamlToJson(entry.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& item : node) out.push_back(YamlToJson(item));
      return out;
    }
    case YAML::NodeType::Scalar: {
      const std::string& text = node.Scalar();
      if (node.Tag() == "!") return text;  // quoted
      if (text == "true" || text == "false") return text == "true";
      if (text == "null" || text == "~") return nullptr;
      nlohmann::json number = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
      return number.is_number() ? number : nlohmann::json(text);
    }
    default:
      return nullptr;
  }
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

}  // namespace

absl::StatusOr<SdsFile> ParseSdsSecretConfig(const tls_v3::SdsSecretConfig& proto,
                                             const std::string& field) {
  if (proto.name().empty()) return absl::InvalidArgumentError(absl::StrCat(field, ".name: empty"));
  SdsFile file{proto.name(), "", ""};
  const ConfigSource& source = proto.sds_config();
  const std::string f = absl::StrCat(field, ".sds_config");
  switch (source.config_source_specifier_case()) {
    case ConfigSource::kPathConfigSource:
      file.path = source.path_config_source().path();
      file.watched_directory = source.path_config_source().watched_directory().path();
      if (file.path.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(f, ".path_config_source.path: empty"));
      }
      return file;
    case ConfigSource::kPath:
      file.path = source.path();
      if (file.path.empty()) return absl::InvalidArgumentError(absl::StrCat(f, ".path: empty"));
      return file;
    case ConfigSource::kAds:
      return absl::InvalidArgumentError(
          absl::StrCat(f, ".ads: SDS over xDS is not available; give path_config_source"));
    case ConfigSource::kApiConfigSource:
      return absl::InvalidArgumentError(absl::StrCat(
          f, ".api_config_source: SDS over xDS is not available; give path_config_source"));
    case ConfigSource::kSelf:
      return absl::InvalidArgumentError(absl::StrCat(f, ".self: not supported"));
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          f, ": missing (static secrets are not available; give path_config_source)"));
  }
}

absl::StatusOr<tls_v3::Secret> ReadSecret(const SdsFile& file) {
  auto content = ReadFile(file.path);
  if (!content.ok()) return content.status();
  std::string json = *std::move(content);
  const std::string extension = std::filesystem::path(file.path).extension().string();
  if (extension == ".yaml" || extension == ".yml") {
    try {
      json = YamlToJson(YAML::Load(json)).dump();
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(file.path, ": not YAML: ", e.what()));
    }
  }
  envoy::service::discovery::v3::DiscoveryResponse response;
  auto parsed = google::protobuf::util::JsonStringToMessage(json, &response);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(file.path, ": not a DiscoveryResponse: ",
                                                   std::string(parsed.message())));
  }
  for (int i = 0; i < response.resources_size(); ++i) {
    tls_v3::Secret secret;
    if (!response.resources(i).UnpackTo(&secret)) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.path, ": resources[", i, "]: not a ", secret.GetTypeName(), " but ",
                       response.resources(i).type_url()));
    }
    if (secret.name() == file.secret_name) return secret;
  }
  return absl::NotFoundError(
      absl::StrCat(file.path, ": no secret named \"", file.secret_name, "\""));
}

SecretFileWatcher& SecretFileWatcher::Get() {
  static SecretFileWatcher watcher;
  return watcher;
}

SecretFileWatcher::~SecretFileWatcher() {
  if (thread_.joinable()) {
    watch_.Stop();
    thread_.join();
  }
}

void SecretFileWatcher::Register(const SdsFile& file, const std::vector<std::string>& secret_files,
                                 std::weak_ptr<const void> owner, std::function<void()> reload) {
  std::vector<Registration> added;
  auto add = [&](const std::string& directory, const std::string& name) {
    added.push_back(Registration{directory, name, owner, reload});
  };
  if (!file.watched_directory.empty()) {
    add(file.watched_directory, "");
  } else {
    for (const std::string& path : secret_files) {
      const std::filesystem::path p(path);
      add(p.parent_path().empty() ? "." : p.parent_path().string(), p.filename().string());
    }
    const std::filesystem::path p(file.path);
    add(p.parent_path().empty() ? "." : p.parent_path().string(), p.filename().string());
  }
  std::lock_guard lock(mutex_);
  if (absl::Status status = watch_.Open(); !status.ok()) {
    spdlog::error("SDS {}: {}; it will not be reloaded", file.path, status.ToString());
    return;
  }
  std::erase_if(registrations_, [](const Registration& r) { return r.owner.expired(); });
  for (Registration& registration : added) {
    const bool known = std::any_of(registrations_.begin(), registrations_.end(), [&](const auto& r) {
      return r.directory == registration.directory && r.name == registration.name &&
             !r.owner.owner_before(registration.owner) && !registration.owner.owner_before(r.owner);
    });
    if (known) continue;  // registered again after a reload
    if (absl::Status status = watch_.Add(registration.directory, kReplaced); !status.ok()) {
      spdlog::error("SDS {}: {}; it will not be reloaded", file.path, status.ToString());
      continue;
    }
    registrations_.push_back(std::move(registration));
  }
  if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
}

void SecretFileWatcher::Run() {
  using Wake = InotifyWatch::Wake;
  for (;;) {
    std::vector<InotifyWatch::Event> events;
    Wake wake = watch_.Wait(-1, &events);
    if (wake == Wake::kStop) return;
    // Let a burst settle (bounded: steady writes still reload).
    for (int i = 0; i < 10 && wake == Wake::kChange; ++i) {
      wake = watch_.Wait(kQuietMs, &events);
      if (wake == Wake::kStop) return;
    }
    std::vector<std::pair<std::shared_ptr<const void>, std::function<void()>>> due;
    {
      std::lock_guard lock(mutex_);
      for (const Registration& r : registrations_) {
        const bool hit = std::any_of(events.begin(), events.end(), [&](const auto& event) {
          return event.directory == r.directory && (event.mask & kReplaced) != 0 &&
                 (r.name.empty() ? (event.mask & IN_MOVED_TO) != 0 : event.name == r.name);
        });
        if (!hit) continue;
        std::shared_ptr<const void> alive = r.owner.lock();
        if (alive == nullptr) continue;
        const bool listed = std::any_of(due.begin(), due.end(),
                                        [&](const auto& d) { return d.first == alive; });
        if (!listed) due.emplace_back(std::move(alive), r.reload);
      }
    }
    for (auto& [owner, reload] : due) reload();  // outside the lock: a reload may register
  }
}

}  // namespace meshpilot::sidecar::config
