#include "controlplane/source/kube/status_writer.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"

namespace meshpilot::source {
namespace {

using nlohmann::json;
using std::chrono::seconds;

// An API server that records every request and answers from a script (200 by default).
class FakeApi : public ApiSender {
 public:
  struct Request {
    std::string method;
    std::string path;
    json body;
  };

  absl::StatusOr<Response> Send(const std::string& method, const std::string& path,
                                const std::string& body, const std::string& /*content_type*/,
                                seconds /*timeout*/) override {
    std::lock_guard<std::mutex> lock(mu_);
    requests_.push_back({method, path, json::parse(body)});
    changed_.notify_all();
    if (!answers_.empty()) {
      Response answer = answers_.front();
      answers_.pop_front();
      return answer;
    }
    return Response{method == "POST" ? 201 : 200, "{}"};
  }

  void Answer(int status, std::string body) {
    std::lock_guard<std::mutex> lock(mu_);
    answers_.push_back({status, std::move(body)});
  }

  // Waits until `n` requests have come in (the writer has its own thread).
  std::vector<Request> WaitForRequests(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    REQUIRE(changed_.wait_for(lock, seconds(10), [&] { return requests_.size() >= n; }));
    return requests_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<Request> requests_;
  std::deque<Response> answers_;
};

StatusTarget VirtualService(const std::string& name, const std::string& resource_version) {
  StatusTarget target;
  target.resource = {"networking.istio.io/v1", "VirtualService", "virtualservices", true};
  target.namespace_ = "shop";
  target.name = name;
  target.uid = "uid-" + name;
  target.resource_version = resource_version;
  target.generation = 2;
  return target;
}

std::string StatusPath(const std::string& name) {
  return "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/" + name +
         "/status?fieldManager=meshpilot";
}

const json& Condition(const json& status, const std::string& type) {
  for (const json& condition : status["conditions"]) {
    if (condition["type"] == type) return condition;
  }
  FAIL("no condition " << type << " in " << status.dump());
  static const json kNone;
  return kNone;
}

// A leading writer on `api`, started; stopped at the end of the scope.
struct RunningWriter {
  explicit RunningWriter(FakeApi& api)
      : writer(api, StatusWriter::Options{.identity = "meshpilot-0",
                                          .retry_initial = std::chrono::milliseconds(1),
                                          .retry_max = std::chrono::milliseconds(5)}) {
    writer.Start();
    writer.SetLeading(true);
  }
  ~RunningWriter() { writer.Stop(); }
  StatusWriter writer;
};

TEST_CASE("an accepted object gets Accepted and Reconciled, conditional on its version") {
  FakeApi api;
  RunningWriter running(api);
  running.writer.Update({VirtualService("good", "41")});

  std::vector<FakeApi::Request> requests = api.WaitForRequests(1);
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].method == "PATCH");
  CHECK(requests[0].path == StatusPath("good"));
  const json& patch = requests[0].body;
  CHECK(patch["metadata"]["resourceVersion"] == "41");
  const json& status = patch["status"];
  CHECK(status["observedGeneration"] == 2);
  CHECK(status["validationMessages"].is_null());  // removes those of an earlier rejection
  const json& accepted = Condition(status, "Accepted");
  CHECK(accepted["status"] == "True");
  CHECK(accepted["reason"] == "Accepted");
  CHECK(accepted["observedGeneration"] == 2);
  const json& reconciled = Condition(status, "Reconciled");
  CHECK(reconciled["status"] == "True");
  CHECK(reconciled["observedGeneration"] == 2);
  CHECK(reconciled["message"] ==
        "the config of this generation has been pushed to every connected proxy");
  running.writer.Stop();  // lets the request in flight finish
  CHECK(running.writer.writes() == 1);
  CHECK(running.writer.events() == 0);
}

TEST_CASE("a rejected object gets one SchemaValidationError per problem and one Event") {
  FakeApi api;
  RunningWriter running(api);
  StatusTarget bad = VirtualService("bad", "7");
  bad.validation_error = "spec.http[0].route[0].weight: must be >= 0; spec.hosts: required";
  bad.serving_note = "still serving its last valid version (resourceVersion 5)";
  running.writer.Update({bad});

  std::vector<FakeApi::Request> requests = api.WaitForRequests(2);
  REQUIRE(requests.size() == 2);
  const json& status = requests[0].body["status"];
  const json& accepted = Condition(status, "Accepted");
  CHECK(accepted["status"] == "False");
  CHECK(accepted["reason"] == "Rejected");
  CHECK(accepted["message"] ==
        "2 errors found; see validationMessages; still serving its last valid version "
        "(resourceVersion 5)");
  CHECK(Condition(status, "Reconciled")["status"] == "True");
  CHECK(status["validationMessages"] ==
        json::parse(R"([
          {"type": {"name": "SchemaValidationError", "code": "IST0106"}, "level": "ERROR",
           "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0106/",
           "message": "spec.http[0].route[0].weight: must be >= 0"},
          {"type": {"name": "SchemaValidationError", "code": "IST0106"}, "level": "ERROR",
           "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0106/",
           "message": "spec.hosts: required"}])"));

  CHECK(requests[1].method == "POST");
  CHECK(requests[1].path == "/api/v1/namespaces/shop/events");
  const json& event = requests[1].body;
  CHECK(event["type"] == "Warning");
  CHECK(event["reason"] == "Rejected");
  CHECK(event["involvedObject"]["name"] == "bad");
  CHECK(event["involvedObject"]["uid"] == "uid-bad");
  CHECK(event["reportingInstance"] == "meshpilot-0");
  CHECK(event["message"] == "generation 2 rejected: " + bad.validation_error);
}

TEST_CASE("translator warnings become WARNING messages with Istio's analyzer types") {
  FakeApi api;
  RunningWriter running(api);
  StatusTarget warned = VirtualService("warned", "9");
  warned.warnings.push_back(
      {.origin = "translator",
       .kind = "VirtualService",
       .namespace_ = "shop",
       .name = "warned",
       .message = "spec.http[0].route[0].destination.subset: no DestinationRule for "
                  "reviews.shop.svc.cluster.local defines subset \"v9\"; requests routed "
                  "there fail (503)",
       .type = {"ReferencedResourceNotFound", "IST0101"}});
  warned.warnings.push_back({.origin = "translator",
                             .kind = "VirtualService",
                             .namespace_ = "shop",
                             .name = "warned",
                             .message = "spec.http[1].delegate: delegate VirtualServices are not "
                                        "supported; this rule is ignored",
                             .type = {"NotSupported", ""}});
  running.writer.Update({warned});

  std::vector<FakeApi::Request> requests = api.WaitForRequests(1);
  const json& status = requests[0].body["status"];
  const json& accepted = Condition(status, "Accepted");
  CHECK(accepted["status"] == "True");  // warnings do not reject
  CHECK(accepted["message"] == "meshpilot serves this generation; 2 warnings: see validationMessages");
  REQUIRE(status["validationMessages"].size() == 2);
  CHECK(status["validationMessages"][0] ==
        json{{"type", {{"name", "ReferencedResourceNotFound"}, {"code", "IST0101"}}},
             {"level", "WARNING"},
             {"documentationUrl", "https://istio.io/latest/docs/reference/config/analysis/ist0101/"},
             {"message", warned.warnings[0].message}});
  // meshpilot's own kinds have a name and no code (nor a page on istio.io).
  CHECK(status["validationMessages"][1] ==
        json{{"type", {{"name", "NotSupported"}}},
             {"level", "WARNING"},
             {"message", warned.warnings[1].message}});
  running.writer.Stop();
  CHECK(running.writer.events() == 0);
}

TEST_CASE("a status that already says it all is not written again") {
  FakeApi api;
  RunningWriter running(api);
  StatusTarget current = VirtualService("current", "3");
  current.status = DesiredStatus(current, "2026-01-01T00:00:00Z");
  StatusTarget rejected = VirtualService("rejected", "4");
  rejected.validation_error = "spec.hosts: required";
  rejected.status = DesiredStatus(rejected, "2026-01-01T00:00:00Z");
  // Targets are written in order: the last one, which does need a write, shows that the
  // others were looked at and left alone.
  StatusTarget barrier = VirtualService("barrier", "5");
  running.writer.Update({current, rejected, barrier});

  std::vector<FakeApi::Request> requests = api.WaitForRequests(1);
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].path == StatusPath("barrier"));

  // The lastTransitionTime of an unchanged condition is kept, so equal views stay equal.
  json again = DesiredStatus(current, "2027-06-01T00:00:00Z");
  CHECK(StatusUpToDate(current.status, again));
  CHECK(Condition(again, "Accepted")["lastTransitionTime"] == "2026-01-01T00:00:00Z");
  // A condition that changes status gets a new one.
  StatusTarget now_rejected = current;
  now_rejected.validation_error = "spec.hosts: required";
  json changed = DesiredStatus(now_rejected, "2027-06-01T00:00:00Z");
  CHECK_FALSE(StatusUpToDate(current.status, changed));
  CHECK(Condition(changed, "Accepted")["lastTransitionTime"] == "2027-06-01T00:00:00Z");
  CHECK(Condition(changed, "Reconciled")["lastTransitionTime"] == "2026-01-01T00:00:00Z");
}

TEST_CASE("a 409 conflict is retried on the newer version the watch brings") {
  FakeApi api;
  api.Answer(409, R"({"kind":"Status","message":"the object has been modified"})");
  RunningWriter running(api);
  running.writer.Update({VirtualService("raced", "10")});
  std::vector<FakeApi::Request> requests = api.WaitForRequests(1);
  CHECK(requests[0].body["metadata"]["resourceVersion"] == "10");

  // The same view again: the write based on version 10 is not repeated; the barrier shows it.
  running.writer.Update({VirtualService("raced", "10"), VirtualService("barrier", "1")});
  requests = api.WaitForRequests(2);
  CHECK(requests[1].path == StatusPath("barrier"));

  // The watch brings version 11: written again, conditional on it.
  running.writer.Update({VirtualService("raced", "11")});
  requests = api.WaitForRequests(3);
  CHECK(requests[2].path == StatusPath("raced"));
  CHECK(requests[2].body["metadata"]["resourceVersion"] == "11");
  running.writer.Stop();
  CHECK(running.writer.writes() == 2);
}

TEST_CASE("a 403 is reported once with the request and the API's answer, and retried") {
  std::ostringstream log;
  auto logger = std::make_shared<spdlog::logger>(
      "test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log));
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);

  FakeApi api;
  const std::string forbidden =
      R"({"kind":"Status","status":"Failure","reason":"Forbidden","code":403,)"
      R"("message":"virtualservices.networking.istio.io \"locked\" is forbidden: User \"system:serviceaccount:meshpilot-system:meshpilot\" cannot patch resource \"virtualservices/status\" in API group \"networking.istio.io\" in the namespace \"shop\""})";
  api.Answer(403, forbidden);
  api.Answer(403, forbidden);
  {
    RunningWriter running(api);
    running.writer.Update({VirtualService("locked", "8")});
    // Refused twice, then (RBAC fixed) the backoff retry goes through.
    std::vector<FakeApi::Request> requests = api.WaitForRequests(3);
    for (const FakeApi::Request& request : requests) CHECK(request.path == StatusPath("locked"));
    running.writer.Stop();  // lets the third attempt finish
    CHECK(running.writer.writes() == 1);
  }
  spdlog::set_default_logger(previous);

  const std::string text = log.str();
  const std::string expected =
      "status: cannot write the status of VirtualService shop/locked: PATCH " +
      StatusPath("locked") +
      ": HTTP 403 Forbidden: virtualservices.networking.istio.io \"locked\" is forbidden: User "
      "\"system:serviceaccount:meshpilot-system:meshpilot\" cannot patch resource "
      "\"virtualservices/status\" in API group \"networking.istio.io\" in the namespace \"shop\"";
  INFO(text);
  CHECK(text.find(expected) != std::string::npos);
  // The same refusal is logged once, not on every retry.
  CHECK(text.find(expected) == text.rfind(expected));
}

}  // namespace
}  // namespace meshpilot::source
