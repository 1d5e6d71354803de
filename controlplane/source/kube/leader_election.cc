#include "controlplane/source/kube/leader_election.h"

#include <unistd.h>

#include <cstdlib>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "controlplane/source/kube/api_status.h"
#include "spdlog/spdlog.h"

namespace meshpilot::source {
namespace {

using nlohmann::json;

constexpr std::chrono::seconds kRequestTimeout(5);

// metav1.MicroTime, as client-go writes it.
std::string MicroTimeNow() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::Now(), absl::UTCTimeZone());
}

std::string StringAt(const json& object, const char* a, const char* b) {
  if (!object.is_object() || !object.contains(a) || !object[a].is_object()) return "";
  const json& section = object[a];
  auto it = section.find(b);
  return it != section.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

std::string DefaultIdentity() {
  if (const char* pod = std::getenv("POD_NAME"); pod != nullptr && *pod != '\0') return pod;
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  std::mt19937_64 random(std::random_device{}());
  return absl::StrFormat("%s_%08x", *host ? host : "meshpilot",
                         static_cast<uint32_t>(random()));
}

LeaderElector::LeaderElector(ApiClient& client, Options options, OnChange on_change)
    : client_(client), options_(std::move(options)), on_change_(std::move(on_change)) {}

LeaderElector::~LeaderElector() { Stop(); }

void LeaderElector::Start() {
  spdlog::info("leader: competing for Lease {}/{} as {}", options_.namespace_, options_.name,
               options_.identity);
  thread_ = std::thread([this] { Run(); });
}

void LeaderElector::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool LeaderElector::Sleep(std::chrono::milliseconds delay) {
  std::unique_lock<std::mutex> lock(mu_);
  return !wake_.wait_for(lock, delay, [this] { return stopping_; });
}

std::string LeaderElector::LeasePath(bool collection) const {
  std::string path = absl::StrCat("/apis/coordination.k8s.io/v1/namespaces/",
                                  options_.namespace_, "/leases");
  if (!collection) absl::StrAppend(&path, "/", options_.name);
  return path;
}

void LeaderElector::Report(const std::string& problem) {
  if (problem == last_problem_) return;
  last_problem_ = problem;
  if (!problem.empty()) spdlog::warn("leader: {}", problem);
}

void LeaderElector::SetLeading(bool leading) {
  if (leading_ == leading) return;
  leading_ = leading;
  if (leading) {
    spdlog::info("leader: {} is now the leader (Lease {}/{})", options_.identity,
                 options_.namespace_, options_.name);
  } else {
    spdlog::info("leader: {} is no longer the leader", options_.identity);
  }
  if (on_change_) on_change_(leading);
}

void LeaderElector::Run() {
  while (true) {
    Attempt attempt = TryAcquireOrRenew();
    auto now = std::chrono::steady_clock::now();
    if (attempt == Attempt::kLeading) {
      renewed_at_ = now;
      SetLeading(true);
    } else if (attempt == Attempt::kHeldByOther) {
      SetLeading(false);
    } else if (leading_ && now - renewed_at_ >= options_.lease_duration * 2 / 3) {
      // Others may take the lease once it expires: be gone before that.
      spdlog::warn("leader: could not renew the Lease for {} s; stepping down",
                   std::chrono::duration_cast<std::chrono::seconds>(now - renewed_at_).count());
      SetLeading(false);
    }
    std::chrono::milliseconds delay =
        leading_ && attempt == Attempt::kLeading ? options_.renew_period : options_.retry_period;
    if (!Sleep(delay)) break;
  }
  if (leading_) {
    SetLeading(false);
    Release();
  }
}

LeaderElector::Attempt LeaderElector::TryAcquireOrRenew() {
  const std::string now = MicroTimeNow();
  const std::string path = LeasePath(false);
  absl::StatusOr<ApiClient::Response> got = client_.Send("GET", path, "", "", kRequestTimeout);
  if (!got.ok()) {
    Report(absl::StrCat("cannot read the Lease: ", got.status().ToString()));
    return Attempt::kFailed;
  }
  json spec{{"holderIdentity", options_.identity},
            {"leaseDurationSeconds", options_.lease_duration.count()},
            {"acquireTime", now},
            {"renewTime", now},
            {"leaseTransitions", 0}};
  if (got->status == 404) {
    json lease{{"apiVersion", "coordination.k8s.io/v1"},
               {"kind", "Lease"},
               {"metadata", {{"name", options_.name}, {"namespace", options_.namespace_}}},
               {"spec", spec}};
    const std::string collection = LeasePath(true);
    absl::StatusOr<ApiClient::Response> created =
        client_.Send("POST", collection, lease.dump(), "application/json", kRequestTimeout);
    if (!created.ok()) {
      Report(absl::StrCat("cannot create the Lease: ", created.status().ToString()));
      return Attempt::kFailed;
    }
    if (created->status == 409) return Attempt::kHeldByOther;  // another replica was first
    if (created->status != 201) {
      Report(absl::StrCat("cannot create the Lease: ", DescribeRefusal("POST", collection,
                                                                        *created)));
      return Attempt::kFailed;
    }
    lease_ = json::parse(created->body, nullptr, false);
    Report("");
    return Attempt::kLeading;
  }
  if (got->status != 200) {
    Report(absl::StrCat("cannot read the Lease: ", DescribeRefusal("GET", path, *got)));
    return Attempt::kFailed;
  }
  json current = json::parse(got->body, nullptr, false);
  if (!current.is_object()) {
    Report("the Lease is not JSON");
    return Attempt::kFailed;
  }
  const std::string version = StringAt(current, "metadata", "resourceVersion");
  const std::string holder = StringAt(current, "spec", "holderIdentity");
  auto steady_now = std::chrono::steady_clock::now();
  if (version != observed_version_) {
    observed_version_ = version;
    observed_at_ = steady_now;
  }
  if (holder != last_holder_) {
    if (holder != options_.identity) {
      spdlog::info("leader: the Lease is held by {}", holder.empty() ? "nobody" : holder);
    }
    last_holder_ = holder;
  }
  const json& current_spec = current.value("spec", json::object());
  int64_t duration_s = current_spec.value("leaseDurationSeconds", int64_t{0});
  bool expired = steady_now - observed_at_ >= std::chrono::seconds(duration_s);
  if (!holder.empty() && holder != options_.identity && !expired) {
    Report("");
    return Attempt::kHeldByOther;
  }
  // Ours to renew, or free to take: write it back at the version read.
  json lease = current;
  if (holder == options_.identity) {
    spec["acquireTime"] = current_spec.value("acquireTime", now);
    spec["leaseTransitions"] = current_spec.value("leaseTransitions", int64_t{0});
  } else {
    spec["leaseTransitions"] = current_spec.value("leaseTransitions", int64_t{0}) + 1;
  }
  lease["spec"] = spec;
  absl::StatusOr<ApiClient::Response> updated =
      client_.Send("PUT", path, lease.dump(), "application/json", kRequestTimeout);
  if (!updated.ok()) {
    Report(absl::StrCat("cannot update the Lease: ", updated.status().ToString()));
    return Attempt::kFailed;
  }
  if (updated->status == 409) return Attempt::kHeldByOther;  // someone wrote it first
  if (updated->status != 200) {
    Report(absl::StrCat("cannot update the Lease: ", DescribeRefusal("PUT", path, *updated)));
    return Attempt::kFailed;
  }
  lease_ = json::parse(updated->body, nullptr, false);
  observed_version_ = StringAt(lease_, "metadata", "resourceVersion");
  observed_at_ = steady_now;
  last_holder_ = options_.identity;
  Report("");
  return Attempt::kLeading;
}

void LeaderElector::Release() {
  if (!lease_.is_object()) return;
  json lease = lease_;
  const std::string now = MicroTimeNow();
  lease["spec"]["holderIdentity"] = "";
  lease["spec"]["leaseDurationSeconds"] = 1;
  lease["spec"]["renewTime"] = now;
  lease["spec"]["acquireTime"] = now;
  const std::string path = LeasePath(false);
  absl::StatusOr<ApiClient::Response> released =
      client_.Send("PUT", path, lease.dump(), "application/json", kRequestTimeout);
  if (released.ok() && released->status == 200) {
    spdlog::info("leader: released the Lease");
  } else {
    spdlog::warn("leader: cannot release the Lease (others take it once it expires): {}",
                 released.ok() ? DescribeRefusal("PUT", path, *released)
                               : released.status().ToString());
  }
}

}  // namespace meshpilot::source
