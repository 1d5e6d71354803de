#include "controlplane/source/kube/status_writer.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "controlplane/source/kube/api_status.h"
#include "controlplane/source/kube/backoff.h"
#include "spdlog/spdlog.h"

namespace meshpilot::source {
namespace {

using nlohmann::json;

constexpr std::chrono::seconds kRequestTimeout(10);
// Istio's analysis message for an object its validation rejects.
// Istio's analysis message for an object its validation rejects.
const model::MessageType kSchemaValidationError{"SchemaValidationError", "IST0106"};
constexpr char kAccepted[] = "Accepted";
constexpr char kReconciled[] = "Reconciled";

std::string KeyOf(const StatusTarget& target) {
  return absl::StrCat(target.resource.kind, "/", target.namespace_, "/", target.name);
}

const json* Field(const json& object, const char* name) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(name);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

const json* FindCondition(const json& status, const std::string& type) {
  const json* conditions = Field(status, "conditions");
  if (conditions == nullptr || !conditions->is_array()) return nullptr;
  for (const json& condition : *conditions) {
    if (condition.is_object() && condition.value("type", "") == type) return &condition;
  }
  return nullptr;
}

std::string Now() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());
}

json ValidationMessage(const model::MessageType& type, const char* level,
                       absl::string_view message) {
  json entry{{"type", {{"name", type.name}}}, {"level", level}, {"message", std::string(message)}};
  if (!type.code.empty()) {
    entry["type"]["code"] = type.code;
    entry["documentationUrl"] = absl::StrCat(
        "https://istio.io/latest/docs/reference/config/analysis/", absl::AsciiStrToLower(type.code),
        "/");
  }
  return entry;
}

// A condition of `target`'s status-to-be; its lastTransitionTime stays while its status does.
json Condition(const StatusTarget& target, const char* type, bool holds, const char* reason,
               const std::string& message, const std::string& now) {
  const std::string status = holds ? "True" : "False";
  std::string transition = now;
  if (const json* previous = FindCondition(target.status, type);
      previous != nullptr && previous->value("status", "") == status &&
      previous->contains("lastTransitionTime") && (*previous)["lastTransitionTime"].is_string()) {
    transition = (*previous)["lastTransitionTime"].get<std::string>();
  }
  return json{{"type", type},
              {"status", status},
              {"observedGeneration", target.generation},
              {"reason", reason},
              {"message", message},
              {"lastTransitionTime", transition}};
}

std::string Count(size_t n, const char* what) {
  return absl::StrCat(n, " ", what, n == 1 ? "" : "s");
}

}  // namespace

json DesiredStatus(const StatusTarget& target, const std::string& now_rfc3339) {
  const bool rejected = !target.validation_error.empty();
  json messages = json::array();
  size_t errors = 0;
  if (rejected) {
    // One message per problem: the error lists them, each led by its field path.
    for (absl::string_view problem : absl::StrSplit(target.validation_error, "; ")) {
      if (problem.empty()) continue;
      messages.push_back(ValidationMessage(kSchemaValidationError, "ERROR", problem));
      ++errors;
    }
  }
  for (const model::ConfigError& warning : target.warnings) {
    messages.push_back(ValidationMessage(warning.type, "WARNING", warning.message));
  }
  const size_t warnings = target.warnings.size();
  std::string accepted = "meshpilot serves this generation";
  if (rejected) {
    accepted = absl::StrCat(Count(errors, "error"), " found; see validationMessages");
    if (!target.serving_note.empty()) absl::StrAppend(&accepted, "; ", target.serving_note);
  } else if (warnings > 0) {
    absl::StrAppend(&accepted, "; ", Count(warnings, "warning"), ": see validationMessages");
  }
  json desired{
      {"observedGeneration", target.generation},
      {"conditions",
       json::array({Condition(target, kAccepted, !rejected, rejected ? "Rejected" : "Accepted",
                              accepted, now_rfc3339),
                    Condition(target, kReconciled, true, "Pushed",
                              rejected ? "the config that still serves has been pushed to every "
                                         "connected proxy"
                                       : "the config of this generation has been pushed to "
                                         "every connected proxy",
                              now_rfc3339)})}};
  // null in a merge patch removes the messages of an earlier rejection.
  desired["validationMessages"] = messages.empty() ? json(nullptr) : messages;
  return desired;
}

bool StatusUpToDate(const json& current, const json& desired) {
  for (const auto& [key, value] : desired.items()) {
    const json* have = Field(current, key.c_str());
    if (value.is_null() ? have != nullptr : (have == nullptr || *have != value)) return false;
  }
  return true;
}

StatusWriter::StatusWriter(ApiSender& client, Options options)
    : client_(client), options_(std::move(options)) {}

StatusWriter::~StatusWriter() { Stop(); }

void StatusWriter::Start() {
  thread_ = std::thread([this] { Run(); });
}

void StatusWriter::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StatusWriter::Update(std::vector<StatusTarget> targets) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    targets_ = std::move(targets);
    dirty_ = true;
  }
  wake_.notify_all();
}

void StatusWriter::SetLeading(bool leading) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    leading_ = leading;
    dirty_ = true;  // a new leader checks everything once
  }
  wake_.notify_all();
}

uint64_t StatusWriter::writes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return writes_;
}

uint64_t StatusWriter::events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_;
}

void StatusWriter::Run() {
  Backoff backoff(options_.retry_initial, options_.retry_max);
  // Set after a failed pass: try again after this long (which the jitter may make 0).
  std::optional<std::chrono::milliseconds> retry_in;
  while (true) {
    std::vector<StatusTarget> targets;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto ready = [this] { return stopping_ || (leading_ && dirty_); };
      if (retry_in) {
        // Something failed: try again after the backoff, or sooner on news.
        if (!wake_.wait_for(lock, *retry_in, ready) && leading_) dirty_ = true;
      }
      wake_.wait(lock, ready);
      if (stopping_) return;
      dirty_ = false;
      targets = targets_;
    }
    if (Reconcile(targets)) {
      backoff.Reset();
      retry_in.reset();
    } else {
      retry_in = backoff.Next();
    }
  }
}

bool StatusWriter::Reconcile(const std::vector<StatusTarget>& targets) {
  bool complete = true;
  std::map<std::string, Written> still_written;
  const std::string now = Now();
  for (const StatusTarget& target : targets) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!leading_ || stopping_) return true;  // the next leader takes over
    }
    const std::string key = KeyOf(target);
    json desired = DesiredStatus(target, now);
    if (StatusUpToDate(target.status, desired)) continue;
    // Written already from this very version: the watch has not brought the result yet.
    if (auto it = written_.find(key);
        it != written_.end() && it->second.based_on == target.resource_version &&
        StatusUpToDate(it->second.status, desired)) {
      still_written.insert(*it);
      continue;
    }
    if (Write(target, desired)) {
      still_written[key] = Written{target.resource_version, desired};
      // An Event when this generation newly turns rejected, not on every rewrite.
      const json* before = FindCondition(target.status, kAccepted);
      bool was_rejected_here = before != nullptr && before->value("status", "") == "False" &&
                               before->value("observedGeneration", int64_t{-1}) ==
                                   target.generation;
      if (!target.validation_error.empty() && !was_rejected_here) RecordEvent(target, desired);
    } else {
      complete = false;
    }
  }
  written_ = std::move(still_written);
  return complete;
}

bool StatusWriter::Write(const StatusTarget& target, const json& desired) {
  const std::string key = KeyOf(target);
  const std::string path = absl::StrCat(target.resource.Path(target.namespace_), "/",
                                        target.name, "/status?fieldManager=meshpilot");
  // Conditional on the version the status was computed from.
  json patch{{"metadata", {{"resourceVersion", target.resource_version}}}, {"status", desired}};
  absl::StatusOr<ApiClient::Response> response = client_.Send(
      "PATCH", path, patch.dump(), "application/merge-patch+json", kRequestTimeout);
  if (!response.ok()) {
    spdlog::warn("status: cannot write the status of {} {}/{}: {}", target.resource.kind,
                 target.namespace_, target.name, response.status().ToString());
    return false;
  }
  if (response->status == 409 || response->status == 404) {
    // Changed or deleted since: the watch brings the newer state, and another pass.
    spdlog::debug("status: {} {}/{} changed before its status was written; waiting for it",
                  target.resource.kind, target.namespace_, target.name);
    return true;
  }
  if (response->status != 200) {
    std::string refusal = DescribeRefusal("PATCH", path, *response);
    if (refusals_[key] != refusal) {
      spdlog::error("status: cannot write the status of {} {}/{}: {}", target.resource.kind,
                    target.namespace_, target.name, refusal);
      refusals_[key] = refusal;
    }
    return false;
  }
  refusals_.erase(key);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++writes_;
  }
  spdlog::info("status: wrote {} {}/{} generation {}: {}", target.resource.kind,
               target.namespace_, target.name, target.generation,
               target.validation_error.empty() ? "Accepted" : "Rejected");
  return true;
}

void StatusWriter::RecordEvent(const StatusTarget& target, const json& desired) {
  const std::string now = Now();
  json event{
      {"apiVersion", "v1"},
      {"kind", "Event"},
      {"metadata", {{"generateName", absl::StrCat(target.name, ".")},
                    {"namespace", target.namespace_}}},
      {"involvedObject", {{"apiVersion", target.resource.api_version},
                          {"kind", target.resource.kind},
                          {"namespace", target.namespace_},
                          {"name", target.name},
                          {"uid", target.uid},
                          {"resourceVersion", target.resource_version}}},
      {"reason", "Rejected"},
      {"message", absl::StrCat("generation ", target.generation, " rejected: ",
                               target.validation_error)},
      {"type", "Warning"},
      {"source", {{"component", "meshpilot"}}},
      {"reportingComponent", "meshpilot"},
      {"reportingInstance", options_.identity},
      {"action", "Validate"},
      {"firstTimestamp", now},
      {"lastTimestamp", now},
      {"count", 1}};
  const std::string path = absl::StrCat("/api/v1/namespaces/", target.namespace_, "/events");
  absl::StatusOr<ApiClient::Response> response =
      client_.Send("POST", path, event.dump(), "application/json", kRequestTimeout);
  if (!response.ok()) {
    spdlog::warn("status: cannot record the Rejected Event of {} {}/{}: {}",
                 target.resource.kind, target.namespace_, target.name,
                 response.status().ToString());
    return;
  }
  if (response->status != 201) {
    spdlog::error("status: cannot record the Rejected Event of {} {}/{}: {}",
                  target.resource.kind, target.namespace_, target.name,
                  DescribeRefusal("POST", path, *response));
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++events_;
}

}  // namespace meshpilot::source
