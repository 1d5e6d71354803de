#include "controlplane/source/file/file_source.h"

#include <sys/inotify.h>

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "controlplane/convert/mesh_state_builder.h"
#include "spdlog/spdlog.h"

namespace meshpilot::source {
namespace {

// Editors save by writing a temporary file and renaming it over the old one, and Kubernetes
// updates a mounted ConfigMap by swapping a symlink: watch every way a name can change.
constexpr uint32_t kWatchedEvents = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
                                    IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF;

std::optional<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return std::nullopt;
  std::ostringstream content;
  content << file.rdbuf();
  if (file.bad()) return std::nullopt;
  return std::move(content).str();
}

}  // namespace

bool IsConfigFile(const std::filesystem::path& path) {
  std::string name = path.filename().string();
  std::string extension = path.extension().string();
  // Hidden files are editors' swap files and a ConfigMap's internal "..data" entries.
  return !name.starts_with(".") && (extension == ".yaml" || extension == ".yml");
}

FileSource::FileSource(std::filesystem::path directory, Subscriber subscriber,
                       std::chrono::milliseconds quiet_period)
    : directory_(std::move(directory)),
      subscriber_(std::move(subscriber)),
      quiet_period_(quiet_period) {}

FileSource::~FileSource() { Stop(); }

absl::Status FileSource::Start() {
  if (watcher_.joinable()) return absl::FailedPreconditionError("the file source is already started");
  absl::Status status = watch_.Open();
  // Watch before the first read, so that no change slips in between.
  if (status.ok()) status = watch_.Add(directory_.string(), kWatchedEvents);
  if (!status.ok()) {
    watch_.Close();
    return absl::Status(status.code(), absl::StrCat("config folder: ", status.message()));
  }
  Rescan();
  Publish();
  watcher_ = std::thread([this] { Watch(); });
  return absl::OkStatus();
}

void FileSource::Stop() {
  if (watcher_.joinable()) {
    watch_.Stop();
    watcher_.join();
  }
  watch_.Close();
}

// Waits for a change in the folder; which names changed does not matter: the whole folder is
// re-read and compared.
InotifyWatch::Wake FileSource::WaitForChange(int timeout_ms) {
  std::vector<InotifyWatch::Event> events;
  const InotifyWatch::Wake wake = watch_.Wait(timeout_ms, &events);
  for (const InotifyWatch::Event& event : events) {
    if (event.mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
      spdlog::error("config: the folder was removed or moved; serving its last content");
    }
  }
  return wake;
}

void FileSource::Watch() {
  using Wake = InotifyWatch::Wake;
  const int quiet_ms = static_cast<int>(quiet_period_.count());
  while (true) {
    Wake wake = WaitForChange(/*timeout_ms=*/-1);
    if (wake == Wake::kStop) return;
    if (wake == Wake::kTimeout) continue;
    // Let the burst settle, but not forever: steady writes must still get published.
    auto deadline = std::chrono::steady_clock::now() + 10 * quiet_period_;
    while (std::chrono::steady_clock::now() < deadline) {
      wake = WaitForChange(quiet_ms);
      if (wake == Wake::kStop) return;
      if (wake == Wake::kTimeout) break;
    }
    if (Rescan()) Publish();
  }
}

bool FileSource::Rescan() {
  // List first, so that a failure half-way leaves the current state alone.
  std::vector<std::filesystem::path> paths;
  std::error_code error;
  for (std::filesystem::directory_iterator it(directory_, error), end; !error && it != end;
       it.increment(error)) {
    // is_regular_file follows symlinks, which is how ConfigMap volumes present files.
    std::error_code ignored;
    if (IsConfigFile(it->path()) && std::filesystem::is_regular_file(it->path(), ignored)) {
      paths.push_back(it->path());
    }
  }
  if (error) {
    spdlog::error("config: cannot list {}: {}; serving what was read before",
                  directory_.string(), error.message());
    return false;
  }

  std::map<std::string, FileState> next;
  bool changed = false;
  for (const std::filesystem::path& path : paths) {
    std::string name = path.filename().string();
    auto previous = files_.find(name);
    std::optional<std::string> content = ReadFile(path);
    if (previous != files_.end() && (!content || previous->second.content == *content)) {
      // Unchanged, or unreadable for the moment: keep what it held.
      next.emplace(name, std::move(previous->second));
      continue;
    }
    if (!content) continue;
    next.emplace(name, Load(path.string(), std::move(*content),
                            previous == files_.end() ? nullptr : &previous->second));
    changed = true;
  }
  changed |= next.size() != files_.size() ||
             !std::equal(next.begin(), next.end(), files_.begin(),
                         [](const auto& a, const auto& b) { return a.first == b.first; });
  files_ = std::move(next);
  return changed;
}

FileSource::FileState FileSource::Load(const std::string& origin, std::string content,
                                       const FileState* previous) {
  FileState state;
  state.content = std::move(content);
  absl::StatusOr<convert::ParsedStream> parsed = convert::ParseYamlStream(
      state.content, origin,
      previous == nullptr ? absl::Span<const convert::SourcedObject>() : previous->objects);
  if (!parsed.ok()) {
    // Nothing in a file that is not YAML can be trusted, so it replaces nothing it held.
    std::string message(parsed.status().message());
    if (previous != nullptr && !previous->objects.empty()) {
      state.objects = previous->objects;
      absl::StrAppend(&message, "; still serving the ", state.objects.size(),
                      " objects of its last valid version");
    }
    state.errors.push_back({origin, "", "", "", std::move(message), {}});
  } else {
    state.objects = std::move(parsed->objects);
    state.errors = std::move(parsed->errors);
  }
  for (const model::ConfigError& error : state.errors) {
    spdlog::warn("config: rejected {}{}{}: {}", error.origin,
                 error.kind.empty() ? "" : absl::StrCat(" ", error.kind),
                 error.name.empty() ? "" : absl::StrCat(" ", error.namespace_, "/", error.name),
                 error.message);
  }
  return state;
}

void FileSource::Publish() {
  std::vector<convert::SourcedObject> objects;
  std::vector<model::ConfigError> errors;
  for (const auto& [name, file] : files_) {
    objects.insert(objects.end(), file.objects.begin(), file.objects.end());
    errors.insert(errors.end(), file.errors.begin(), file.errors.end());
  }
  auto state = std::make_shared<model::MeshState>(
      convert::BuildMeshState(objects, std::move(errors)));
  state->version = ++version_;
  subscriber_(std::move(state));
}

}  // namespace meshpilot::source
