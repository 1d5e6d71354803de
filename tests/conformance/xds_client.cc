// xds_echo_client: calls meshpilot.echo.v1.Echo through any gRPC target; with an xds:/// target
// it is gRPC's own C++ xDS client (bootstrap read from GRPC_XDS_BOOTSTRAP or
// GRPC_XDS_BOOTSTRAP_CONFIG, exactly as gRPC does), which is what the conformance tests need.
//
// Count mode:  xds_echo_client --target xds:///echo.default.svc.cluster.local:7070 --count 40
//              (--stream N: each call is EchoStream with N responses; --payload_bytes N: the
//              message is N bytes and must come back intact; --authority, --parallel,
//              --print_trailer NAME, --cancel_after_ms for calls through a proxy)
// Until mode:  xds_echo_client --target ... --until_only backend-a --consecutive 20
//                --max_seconds 30
//
// Output, one flushed line per call:   ok BACKEND [trailer=VALUE]   |   error CODE MESSAGE
// then one summary line:
//   summary calls=N ok=N errors=N backends=NAME:COUNT,... codes=CODE:COUNT,...
//           min_ms=T max_ms=T                                         (count mode)
//   converged BACKEND calls=N elapsed_ms=T ...  |  not-converged ...  (until mode)
// Exit status: count mode 0 iff every call succeeded; until mode 0 iff it converged in time.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "meshpilot/echo/v1/echo.grpc.pb.h"

ABSL_FLAG(std::string, target, "", "gRPC target, e.g. xds:///echo.default.svc.cluster.local:7070");
ABSL_FLAG(int, count, 10, "number of calls in count mode");
ABSL_FLAG(int, interval_ms, 50, "pause between calls");
ABSL_FLAG(int, timeout_ms, 5000, "deadline of each call");
ABSL_FLAG(bool, wait_for_ready, false, "queue calls while the channel is not ready");
ABSL_FLAG(std::string, message, "hello", "request message");
ABSL_FLAG(std::string, until_only, "",
          "until mode: call until --consecutive calls in a row reach only this backend");
ABSL_FLAG(int, consecutive, 20, "until mode: consecutive calls that must reach --until_only");
ABSL_FLAG(double, max_seconds, 30, "until mode: give up (exit 1) after this long");
ABSL_FLAG(bool, grpc_version, false, "print the version of libgrpc++ and exit");
ABSL_FLAG(std::string, authority, "", "the :authority of every call (default: the target)");
ABSL_FLAG(int, stream, 0, "count mode: call EchoStream for this many responses instead of Echo");
ABSL_FLAG(int, payload_bytes, 0, "count mode: send a message of this many bytes instead");
ABSL_FLAG(int, parallel, 1, "count mode: this many callers at once on the one channel");
ABSL_FLAG(std::string, print_trailer, "", "print this trailing metadata entry of each call");
ABSL_FLAG(int, cancel_after_ms, 0, "cancel each call this long after it starts (0: never)");
ABSL_FLAG(std::vector<std::string>, metadata, {},
          "request metadata (headers) sent with every call: key=value,key2=value2");

namespace {

using Clock = std::chrono::steady_clock;

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "UNKNOWN_CODE";
  }
}

struct CallResult {
  bool ok = false;
  std::string backend;  // set when ok
  std::string code;     // set when not ok
  int64_t elapsed_ms = 0;
};

std::mutex output_mu;

// Makes one call and prints its line.
CallResult CallOnce(meshpilot::echo::v1::Echo::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(absl::GetFlag(FLAGS_timeout_ms)));
  context.set_wait_for_ready(absl::GetFlag(FLAGS_wait_for_ready));
  for (const std::string& pair : absl::GetFlag(FLAGS_metadata)) {
    std::vector<std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    context.AddMetadata(kv[0], kv.size() > 1 ? kv[1] : "");
  }
  meshpilot::echo::v1::EchoRequest request;
  const int payload_bytes = absl::GetFlag(FLAGS_payload_bytes);
  request.set_message(payload_bytes > 0 ? std::string(payload_bytes, 'x')
                                        : absl::GetFlag(FLAGS_message));
  const int stream = absl::GetFlag(FLAGS_stream);
  request.set_count(stream);
  meshpilot::echo::v1::EchoResponse response;
  const auto start = Clock::now();
  std::thread canceller;
  if (const int after = absl::GetFlag(FLAGS_cancel_after_ms); after > 0) {
    canceller = std::thread([&context, after] {
      std::this_thread::sleep_for(std::chrono::milliseconds(after));
      context.TryCancel();
    });
  }
  grpc::Status status;
  int responses = 0;
  bool intact = true;
  if (stream > 0) {
    auto reader = stub.EchoStream(&context, request);
    while (reader->Read(&response)) {
      ++responses;
      intact = intact && response.message() == request.message();
    }
    status = reader->Finish();
  } else {
    status = stub.Echo(&context, request, &response);
    responses = 1;
    intact = response.message() == request.message();
  }
  if (canceller.joinable()) canceller.join();
  CallResult result;
  result.elapsed_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  std::string line;
  if (status.ok() && (responses != std::max(stream, 1) || !intact)) {
    result.code = "INCOMPLETE";
    line = absl::StrCat("error INCOMPLETE responses=", responses, " intact=", intact);
  } else if (status.ok()) {
    result.ok = true;
    result.backend = response.backend();
    line = "ok " + result.backend;
    if (const std::string name = absl::GetFlag(FLAGS_print_trailer); !name.empty()) {
      auto it = context.GetServerTrailingMetadata().find(name);
      std::string value = it == context.GetServerTrailingMetadata().end()
                              ? ""
                              : std::string(it->second.data(), it->second.size());
      absl::StrAppend(&line, " trailer=", value);
    }
  } else {
    result.code = CodeName(status.error_code());
    line = absl::StrCat("error ", result.code, " ", status.error_message());
  }
  {
    std::lock_guard<std::mutex> lock(output_mu);
    std::cout << line << std::endl;
  }
  return result;
}

std::string BackendCounts(const std::map<std::string, int>& counts) {
  return absl::StrJoin(counts, ",", absl::PairFormatter(":"));
}

void Pause() {
  std::this_thread::sleep_for(std::chrono::milliseconds(absl::GetFlag(FLAGS_interval_ms)));
}

int RunCount(meshpilot::echo::v1::Echo::Stub& stub) {
  const int count = absl::GetFlag(FLAGS_count);
  int ok = 0;
  std::map<std::string, int> backends;
  std::map<std::string, int> codes;
  int64_t min_ms = INT64_MAX;
  int64_t max_ms = 0;
  std::mutex mu;
  std::atomic<int> next{0};
  auto caller = [&] {
    for (int i = next++; i < count; i = next++) {
      if (i > 0) Pause();
      CallResult result = CallOnce(stub);
      std::lock_guard<std::mutex> lock(mu);
      if (result.ok) {
        ++ok;
        ++backends[result.backend];
      } else {
        ++codes[result.code];
      }
      min_ms = std::min(min_ms, result.elapsed_ms);
      max_ms = std::max(max_ms, result.elapsed_ms);
    }
  };
  std::vector<std::thread> callers;
  for (int i = 0; i < std::max(1, absl::GetFlag(FLAGS_parallel)); ++i) callers.emplace_back(caller);
  for (std::thread& t : callers) t.join();
  std::cout << "summary calls=" << count << " ok=" << ok << " errors=" << (count - ok)
            << " backends=" << BackendCounts(backends) << " codes=" << BackendCounts(codes)
            << " min_ms=" << (count > 0 ? min_ms : 0) << " max_ms=" << max_ms << std::endl;
  return ok == count ? 0 : 1;
}

int RunUntilOnly(meshpilot::echo::v1::Echo::Stub& stub) {
  const std::string wanted = absl::GetFlag(FLAGS_until_only);
  const int needed = absl::GetFlag(FLAGS_consecutive);
  const auto start = Clock::now();
  const auto give_up = start + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(absl::GetFlag(FLAGS_max_seconds)));
  int calls = 0;
  int errors = 0;
  int streak = 0;
  std::map<std::string, int> backends;
  auto elapsed_ms = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  };
  while (true) {
    if (calls > 0) Pause();
    CallResult result = CallOnce(stub);
    ++calls;
    if (result.ok) ++backends[result.backend];
    if (!result.ok) ++errors;
    streak = (result.ok && result.backend == wanted) ? streak + 1 : 0;
    if (streak >= needed) {
      std::cout << "converged " << wanted << " calls=" << calls << " errors=" << errors
                << " elapsed_ms=" << elapsed_ms() << " backends=" << BackendCounts(backends)
                << std::endl;
      return 0;
    }
    if (Clock::now() >= give_up) {
      std::cout << "not-converged " << wanted << " calls=" << calls << " errors=" << errors
                << " streak=" << streak << " elapsed_ms=" << elapsed_ms()
                << " backends=" << BackendCounts(backends) << std::endl;
      return 1;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Calls meshpilot.echo.v1.Echo through a gRPC (xDS) target");
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_grpc_version)) {
    std::cout << grpc::Version() << std::endl;
    return 0;
  }
  const std::string target = absl::GetFlag(FLAGS_target);
  if (target.empty()) {
    std::cerr << "xds_echo_client: --target is required" << std::endl;
    return 2;
  }
  grpc::ChannelArguments arguments;
  if (const std::string authority = absl::GetFlag(FLAGS_authority); !authority.empty()) {
    arguments.SetString(GRPC_ARG_DEFAULT_AUTHORITY, authority);
  }
  // Large payloads for flow-control tests.
  arguments.SetMaxReceiveMessageSize(64 * 1024 * 1024);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), arguments);
  std::unique_ptr<meshpilot::echo::v1::Echo::Stub> stub =
      meshpilot::echo::v1::Echo::NewStub(channel);
  return absl::GetFlag(FLAGS_until_only).empty() ? RunCount(*stub) : RunUntilOnly(*stub);
}
