#include "controlplane/source/file/file_source.h"

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace meshpilot::source {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// A fresh folder, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "file_source_test.XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }

  const fs::path& path() const { return path_; }

  // Writes like an editor does: a hidden temporary file renamed over the target.
  void Write(const std::string& name, const std::string& content) const {
    fs::path temporary = path_ / ("." + name + ".tmp");
    std::ofstream(temporary) << content;
    fs::rename(temporary, path_ / name);
  }
  // Writes in place, as `echo >` does.
  void Overwrite(const std::string& name, const std::string& content) const {
    std::ofstream(path_ / name, std::ios::trunc) << content;
  }
  void Remove(const std::string& name) const { fs::remove(path_ / name); }

 private:
  fs::path path_;
};

// Keeps every published state and lets a test wait for one it expects.
class Recorder {
 public:
  FileSource::Subscriber Subscriber() {
    return [this](model::MeshStatePtr state) {
      std::lock_guard<std::mutex> lock(mutex_);
      states_.push_back(std::move(state));
      published_.notify_all();
    };
  }

  // The first state satisfying `expected`, or null after 5 seconds: the one place these
  // tests spend real time, as inotify delivers on the kernel's schedule.
  model::MeshStatePtr WaitFor(const std::function<bool(const model::MeshState&)>& expected) {
    std::unique_lock<std::mutex> lock(mutex_);
    model::MeshStatePtr found;
    published_.wait_for(lock, std::chrono::seconds(5), [&] {
      for (const model::MeshStatePtr& state : states_) {
        if (expected(*state)) found = state;
      }
      return found != nullptr;
    });
    return found;
  }

  std::vector<model::MeshStatePtr> States() {
    std::lock_guard<std::mutex> lock(mutex_);
    return states_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable published_;
  std::vector<model::MeshStatePtr> states_;
};

std::string VirtualService(const std::string& name, const std::string& timeout) {
  return "apiVersion: networking.istio.io/v1\n"
         "kind: VirtualService\n"
         "metadata: {name: " + name + ", namespace: prod}\n"
         "spec:\n"
         "  hosts: [reviews]\n"
         "  http: [{route: [{destination: {host: reviews}}], timeout: " + timeout + "}]\n";
}

constexpr char kService[] = R"(
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: prod}
spec: {ports: [{name: http, port: 9080}]}
)";

constexpr char kDestinationRule[] = R"(
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: prod}
spec: {host: reviews}
)";

std::optional<milliseconds> TimeoutOf(const model::MeshState& state, const std::string& key) {
  auto it = state.virtual_services.find(key);
  if (it == state.virtual_services.end()) return std::nullopt;
  return it->second.http.at(0).timeout;
}

TEST_CASE("Start publishes the folder's objects before returning", "[file_source]") {
  TempDir dir;
  dir.Write("mesh.yaml", absl::StrCat(kService, "---\n", VirtualService("reviews", "1s")));
  dir.Write("rules.yml", kDestinationRule);
  dir.Write("notes.txt", "not: config");
  dir.Write("README", "kind: nonsense");

  Recorder recorder;
  FileSource source(dir.path(), recorder.Subscriber());
  REQUIRE(source.Start().ok());

  std::vector<model::MeshStatePtr> states = recorder.States();
  REQUIRE(states.size() == 1);
  const model::MeshState& state = *states[0];
  CHECK(state.version == 1);
  CHECK(state.errors.empty());
  CHECK(state.services.contains("prod/reviews"));
  CHECK(state.virtual_services.contains("prod/reviews"));
  CHECK(state.destination_rules.contains("prod/reviews"));
  source.Stop();
  source.Stop();  // idempotent
}

TEST_CASE("Start fails for a folder that does not exist", "[file_source]") {
  Recorder recorder;
  FileSource source("/nonexistent/meshpilot/config", recorder.Subscriber());
  CHECK_FALSE(source.Start().ok());
  CHECK(recorder.States().empty());
}

TEST_CASE("An edit publishes a new state", "[file_source]") {
  TempDir dir;
  dir.Write("mesh.yaml", VirtualService("reviews", "1s"));
  Recorder recorder;
  FileSource source(dir.path(), recorder.Subscriber());
  REQUIRE(source.Start().ok());

  SECTION("written by rename") { dir.Write("mesh.yaml", VirtualService("reviews", "2s")); }
  SECTION("written in place") { dir.Overwrite("mesh.yaml", VirtualService("reviews", "2s")); }

  model::MeshStatePtr edited = recorder.WaitFor([](const model::MeshState& state) {
    return TimeoutOf(state, "prod/reviews") == milliseconds(2000);
  });
  REQUIRE(edited != nullptr);
  CHECK(edited->version > 1);

  // A new file is picked up as well.
  dir.Write("more.yaml", kDestinationRule);
  CHECK(recorder.WaitFor([](const model::MeshState& state) {
    return state.destination_rules.contains("prod/reviews");
  }) != nullptr);
}

TEST_CASE("Invalid YAML keeps the file's last good objects", "[file_source]") {
  TempDir dir;
  dir.Write("mesh.yaml", absl::StrCat(kService, "---\n", VirtualService("reviews", "1s")));
  Recorder recorder;
  FileSource source(dir.path(), recorder.Subscriber());
  REQUIRE(source.Start().ok());

  dir.Write("mesh.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: broken}}\n");
  model::MeshStatePtr broken =
      recorder.WaitFor([](const model::MeshState& state) { return !state.errors.empty(); });
  REQUIRE(broken != nullptr);
  CHECK(broken->services.contains("prod/reviews"));
  CHECK(broken->virtual_services.contains("prod/reviews"));
  REQUIRE(broken->errors.size() == 1);
  CHECK(broken->errors[0].origin == (dir.path() / "mesh.yaml").string());
  CHECK_THAT(broken->errors[0].message, Catch::Contains("invalid YAML at line 3, column 25"));
  CHECK_THAT(broken->errors[0].message, Catch::Contains("still serving the 2 objects"));

  // Once fixed, the file's new content replaces the old.
  dir.Write("mesh.yaml", VirtualService("reviews", "3s"));
  model::MeshStatePtr fixed = recorder.WaitFor([](const model::MeshState& state) {
    return state.errors.empty() && TimeoutOf(state, "prod/reviews") == milliseconds(3000);
  });
  REQUIRE(fixed != nullptr);
  CHECK_FALSE(fixed->services.contains("prod/reviews"));
}

TEST_CASE("A bad document is reported while everything else keeps serving", "[file_source]") {
  TempDir dir;
  dir.Write("mesh.yaml", absl::StrCat(kService, "---\n", VirtualService("reviews", "1s")));
  Recorder recorder;
  FileSource source(dir.path(), recorder.Subscriber());
  REQUIRE(source.Start().ok());

  // The edit breaks the VirtualService and adds a new valid object to the same file.
  dir.Write("mesh.yaml", absl::StrCat(kService, "---\n", VirtualService("reviews", "forever"),
                                      "---\n", kDestinationRule));
  model::MeshStatePtr state = recorder.WaitFor([](const model::MeshState& state) {
    return state.destination_rules.contains("prod/reviews");
  });
  REQUIRE(state != nullptr);
  CHECK(state->services.contains("prod/reviews"));
  // The rejected edit leaves the last valid version of the VirtualService serving.
  CHECK(TimeoutOf(*state, "prod/reviews") == milliseconds(1000));
  REQUIRE(state->errors.size() == 1);
  const model::ConfigError& error = state->errors[0];
  CHECK(error.origin == (dir.path() / "mesh.yaml").string() + "[1]");
  CHECK(error.kind == "VirtualService");
  CHECK(error.namespace_ == "prod");
  CHECK(error.name == "reviews");
  CHECK_THAT(error.message, Catch::Contains("spec.http[0].timeout: invalid duration \"forever\""));
  CHECK_THAT(error.message, Catch::Contains("still serving its last valid version"));
}

TEST_CASE("Deleting a file removes its objects", "[file_source]") {
  TempDir dir;
  dir.Write("service.yaml", kService);
  dir.Write("routes.yaml", VirtualService("reviews", "1s"));
  Recorder recorder;
  FileSource source(dir.path(), recorder.Subscriber());
  REQUIRE(source.Start().ok());
  REQUIRE(recorder.States().at(0)->virtual_services.contains("prod/reviews"));

  dir.Remove("routes.yaml");
  model::MeshStatePtr state = recorder.WaitFor([](const model::MeshState& state) {
    return !state.virtual_services.contains("prod/reviews");
  });
  REQUIRE(state != nullptr);
  CHECK(state->services.contains("prod/reviews"));
}

}  // namespace
}  // namespace meshpilot::source
