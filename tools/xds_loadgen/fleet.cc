#include "tools/xds_loadgen/fleet.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace meshpilot::loadgen {

std::string NodeId(int index, int ip_index, const std::string& namespace_) {
  std::string ip = absl::StrCat("10.", 100 + ip_index / 65536, ".", ip_index / 256 % 256, ".",
                                ip_index % 256);
  return absl::StrCat("sidecar~", ip, "~load-", index, ".", namespace_, "~", namespace_,
                      ".svc.cluster.local");
}

Fleet::Fleet(FleetOptions options) : options_(std::move(options)) {
  int channels = options_.channels > 0 ? options_.channels : (options_.streams + 99) / 100;
  channels = std::clamp(channels, 1, std::max(1, options_.streams));
  for (int i = 0; i < channels; ++i) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    // Distinct arguments keep gRPC from sharing one connection between the channels.
    args.SetInt("meshpilot.loadgen.channel", i);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto channel = grpc::CreateCustomChannel(options_.server, grpc::InsecureChannelCredentials(),
                                             args);
    stubs_.push_back(envoy::service::discovery::v3::AggregatedDiscoveryService::NewStub(channel));
  }
  std::string needle = SocketAddressNeedle(options_.watch_address);
  for (int i = 0; i < options_.streams; ++i) {
    const std::string& namespace_ = options_.namespaces[i % options_.namespaces.size()];
    envoy::config::core::v3::Node node;
    int ip_index = options_.distinct_ips > 0 ? i % options_.distinct_ips : i;
    node.set_id(NodeId(i, ip_index, namespace_));
    node.set_cluster(absl::StrCat("load.", namespace_));
    node.set_user_agent_name("xds_loadgen");
    (*node.mutable_metadata()->mutable_fields())["NAMESPACE"].set_string_value(namespace_);
    StreamEvents events{
        .synced = [this] { std::lock_guard lock(mu_); ++synced_; cv_.notify_all(); },
        .changed = [this] { std::lock_guard lock(mu_); ++changed_; cv_.notify_all(); },
        .done = [this] { std::lock_guard lock(mu_); ++ended_; cv_.notify_all(); },
    };
    streams_.push_back(std::make_unique<LoadStream>(std::move(node), needle, std::move(events)));
  }
}

Fleet::~Fleet() { Stop(); }

void Fleet::Start() {
  started_ = true;
  for (size_t i = 0; i < streams_.size(); ++i) {
    streams_[i]->Start(*stubs_[i % stubs_.size()]);
  }
}

bool Fleet::WaitSynced(Clock::time_point deadline) {
  std::unique_lock lock(mu_);
  int n = static_cast<int>(streams_.size());
  // A stream that ended stops counting as pending (it shows as unsynced in the report).
  cv_.wait_until(lock, deadline, [&] { return synced_ == n || synced_ + ended_ >= n; });
  return synced_ == n;
}

int Fleet::ArmWatch() {
  int already = 0;
  for (auto& stream : streams_) already += stream->ArmWatch() ? 1 : 0;
  return already;
}

bool Fleet::WaitChanged(Clock::time_point deadline) {
  std::unique_lock lock(mu_);
  int n = static_cast<int>(streams_.size());
  cv_.wait_until(lock, deadline, [&] { return changed_ == n || changed_ + ended_ >= n; });
  return changed_ == n;
}

int Fleet::ended() const {
  std::lock_guard lock(mu_);
  return ended_;
}

void Fleet::Stop() {
  if (!started_) return;
  {
    std::lock_guard lock(mu_);
    if (ended_ == static_cast<int>(streams_.size())) return;
  }
  for (auto& stream : streams_) stream->Cancel();
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return ended_ == static_cast<int>(streams_.size()); });
}

}  // namespace meshpilot::loadgen
