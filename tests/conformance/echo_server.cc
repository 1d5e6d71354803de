// echo_server: a real gRPC backend for conformance tests and the demo. It implements
// meshpilot.echo.v1.Echo and answers every call with its own --name, so a client can tell
// which backend a call reached.
//
//   echo_server --port 0 --name backend-a [--host 127.0.0.1] [--delay_ms 2000] [--xds]
//               [--fail_code 14]
//
// Every call's trailing metadata carries x-echo-backend: NAME. EchoStream answers with
// request.count responses. --fail_code makes every call fail with that status (retry tests).
// A call its client cancelled during --delay_ms is reported on stderr
// ("call cancelled: MESSAGE").
// Prints "listening on HOST:PORT" (flushed) once it accepts calls; exits 0 on SIGTERM/SIGINT.
// With --xds it is a proxyless gRPC xDS server (grpc::XdsServerBuilder; GRPC_XDS_BOOTSTRAP
// names a bootstrap with server_listener_resource_name_template): it serves only once its
// Listener arrives, applies that Listener's HTTP filters (RBAC) to every call, and prints
// "xds serving HOST:PORT" / "xds not serving HOST:PORT: STATUS" as its serving state changes.

#include <signal.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/xds_server_builder.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "meshpilot/echo/v1/echo.grpc.pb.h"

ABSL_FLAG(int, port, 0, "port to listen on; 0 picks a free one (printed on stdout)");
ABSL_FLAG(std::string, host, "127.0.0.1", "address to listen on");
ABSL_FLAG(std::string, name, "echo", "backend name returned in every response");
ABSL_FLAG(int, delay_ms, 0, "answer every call this much later: a slow backend for timeout tests");
ABSL_FLAG(int, fail_code, 0, "fail every call with this gRPC status code (0: answer)");
ABSL_FLAG(bool, xds, false,
          "be an xDS-enabled server: take its Listener (filter chains, RBAC) from the xDS "
          "server in GRPC_XDS_BOOTSTRAP; needs a fixed --port");

namespace {

class EchoService final : public meshpilot::echo::v1::Echo::Service {
 public:
  EchoService(std::string name, std::chrono::milliseconds delay, int fail_code)
      : name_(std::move(name)), delay_(delay), fail_code_(fail_code) {}

  grpc::Status Echo(grpc::ServerContext* context,
                    const meshpilot::echo::v1::EchoRequest* request,
                    meshpilot::echo::v1::EchoResponse* response) override {
    if (grpc::Status status = Prepare(context, *request); !status.ok()) return status;
    response->set_message(request->message());
    response->set_backend(name_);
    return grpc::Status::OK;
  }

  grpc::Status EchoStream(grpc::ServerContext* context,
                          const meshpilot::echo::v1::EchoRequest* request,
                          grpc::ServerWriter<meshpilot::echo::v1::EchoResponse>* writer) override {
    if (grpc::Status status = Prepare(context, *request); !status.ok()) return status;
    meshpilot::echo::v1::EchoResponse response;
    response.set_message(request->message());
    response.set_backend(name_);
    for (int i = 0; i < request->count(); ++i) {
      if (!writer->Write(response)) return grpc::Status::CANCELLED;
    }
    return grpc::Status::OK;
  }

 private:
  // The delay, the failure asked for, and the trailer every call carries.
  grpc::Status Prepare(grpc::ServerContext* context,
                       const meshpilot::echo::v1::EchoRequest& request) {
    context->AddTrailingMetadata("x-echo-backend", name_);
    // Sleep in small steps so a call the client gave up on ends early.
    const auto until = std::chrono::steady_clock::now() + delay_;
    while (std::chrono::steady_clock::now() < until && !context->IsCancelled()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (context->IsCancelled()) {
      std::cerr << "echo_server " << name_ << ": call cancelled: " << request.message()
                << std::endl;
      return grpc::Status::CANCELLED;
    }
    if (fail_code_ != 0) {
      return grpc::Status(static_cast<grpc::StatusCode>(fail_code_), "failing on purpose");
    }
    return grpc::Status::OK;
  }

  const std::string name_;
  const std::chrono::milliseconds delay_;
  const int fail_code_;
};

class ServingStatusPrinter final : public grpc::XdsServerServingStatusNotifierInterface {
 public:
  void OnServingStatusUpdate(std::string uri, ServingStatusUpdate update) override {
    if (update.status.ok()) {
      std::cout << "xds serving " << uri << std::endl;
    } else {
      std::cout << "xds not serving " << uri << ": " << update.status.error_message()
                << std::endl;
    }
  }
};

// Brackets IPv6 literals so "HOST:PORT" parses as a gRPC address.
std::string HostPort(const std::string& host, int port) {
  if (host.find(':') != std::string::npos && host.front() != '[') {
    return absl::StrCat("[", host, "]:", port);
  }
  return absl::StrCat(host, ":", port);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("gRPC Echo backend that answers with its --name");
  absl::ParseCommandLine(argc, argv);

  // Block the stop signals before gRPC starts its threads, so every thread inherits the mask
  // and only the sigwait() below ever sees them: no async-signal-safety concerns.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const std::string host = absl::GetFlag(FLAGS_host);
  const std::string name = absl::GetFlag(FLAGS_name);
  EchoService service(name, std::chrono::milliseconds(absl::GetFlag(FLAGS_delay_ms)),
                      absl::GetFlag(FLAGS_fail_code));
  int selected_port = 0;
  const bool xds = absl::GetFlag(FLAGS_xds);
  if (xds && absl::GetFlag(FLAGS_port) == 0) {
    std::cerr << "echo_server: --xds needs a fixed --port (the Listener is named by it)"
              << std::endl;
    return 2;
  }
  ServingStatusPrinter status_printer;
  grpc::XdsServerBuilder xds_builder;
  grpc::ServerBuilder plain_builder;
  grpc::ServerBuilder& builder = xds ? xds_builder : plain_builder;
  if (xds) xds_builder.set_status_notifier(&status_printer);
  // gRPC sets SO_REUSEPORT by default: a stale backend on the same port would silently share
  // the calls. Fail to start instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // xDS credentials fall back to plaintext when the Listener's filter chain has no TLS.
  builder.AddListeningPort(
      HostPort(host, absl::GetFlag(FLAGS_port)),
      xds ? grpc::XdsServerCredentials(grpc::InsecureServerCredentials())
          : grpc::InsecureServerCredentials(),
      &selected_port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(64 * 1024 * 1024);  // large messages for flow-control tests
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || selected_port == 0) {
    std::cerr << "echo_server: cannot listen on " << HostPort(host, absl::GetFlag(FLAGS_port))
              << std::endl;
    return 1;
  }
  std::cout << "listening on " << HostPort(host, selected_port) << std::endl;

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::cerr << "echo_server " << name << ": signal " << signal_number << ", shutting down"
            << std::endl;
  // Give in-flight calls a moment, then cancel whatever is left.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server->Wait();
  return 0;
}
