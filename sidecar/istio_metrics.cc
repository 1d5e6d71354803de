#include "sidecar/istio_metrics.h"

#include <algorithm>
#include <map>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace meshpilot::sidecar {
namespace {

// key = 1 (used) | flags (16 bits) | grpc | inbound | grpc status + 1 (5 bits, 0: none) |
//       response code (10 bits) | peer (16 bits)
constexpr uint64_t kUsed = uint64_t{1} << 63;

uint64_t Key(const IstioRequest& r) {
  // gRPC defines codes 0..16; anything else is reported as UNKNOWN (2).
  const uint64_t status = r.grpc_status ? (*r.grpc_status <= 16 ? *r.grpc_status : 2) + 1 : 0;
  return kUsed | (uint64_t{r.response_flags} << 33) | (uint64_t{r.grpc} << 32) |
         (uint64_t{r.inbound} << 31) | (status << 26) |
         (uint64_t{r.response_code < 1000 ? r.response_code : 0} << 16) | r.peer;
}

IstioRequestTable::LabelSet LabelSetOf(uint64_t key) {
  const uint32_t status = (key >> 26) & 0x1f;
  return {static_cast<uint16_t>(key & 0xffff),
          ((key >> 31) & 1) != 0,
          ((key >> 32) & 1) != 0,
          static_cast<unsigned>((key >> 16) & 0x3ff),
          status == 0 ? std::nullopt : std::optional<uint32_t>(status - 1),
          static_cast<uint16_t>((key >> 33) & 0xffff)};
}

constexpr std::array<const char*, 11> kFlagNames = {"UH", "UT", "UF", "UC", "UO", "NR",
                                                    "DI", "FI", "DC", "DT", "NC"};
constexpr std::array<const char*, kHistogramBounds.size()> kBoundNames = {
    "0.5",  "1",     "5",     "10",    "25",     "50",     "100",     "250",     "500",    "1000",
    "2500", "5000", "10000", "30000", "60000", "300000", "600000", "1800000", "3600000"};

using Labels = std::vector<std::pair<absl::string_view, std::string>>;

// Istio's stats filter's labels, in its order, up to request_protocol.
Labels PeerLabels(bool inbound, const WorkloadLabels& local, const WorkloadLabels& peer,
                  const std::string& cluster, std::string_view protocol) {
  const WorkloadLabels& source = inbound ? peer : local;
  const WorkloadLabels& destination = inbound ? local : peer;
  // The destination service by the cluster's name; else, as Istio without the cluster's
  // service metadata: inbound, this workload's canonical service; outbound, the cluster.
  DestinationService service = DestinationOfCluster(cluster);
  if (!service.known) {
    if (inbound) {
      service = {local.canonical_service, local.canonical_service, local.namespace_, true};
    } else if (cluster.empty()) {
      service = {"unknown", "unknown", "unknown", true};
    } else {
      service.namespace_ = peer.namespace_;
    }
  }
  // meshproxy speaks no mTLS: no principals, and Istio's "none" where the destination can tell.
  return {
      {"reporter", inbound ? "destination" : "source"},
      {"source_workload", source.workload},
      {"source_canonical_service", source.canonical_service},
      {"source_canonical_revision", source.canonical_revision},
      {"source_workload_namespace", source.namespace_},
      {"source_principal", "unknown"},
      {"source_app", source.app},
      {"source_version", source.version},
      {"source_cluster", source.cluster},
      {"destination_workload", destination.workload},
      {"destination_workload_namespace", destination.namespace_},
      {"destination_principal", "unknown"},
      {"destination_app", destination.app},
      {"destination_version", destination.version},
      {"destination_service", service.service},
      {"destination_canonical_service", destination.canonical_service},
      {"destination_canonical_revision", destination.canonical_revision},
      {"destination_service_name", service.name},
      {"destination_service_namespace", service.namespace_},
      {"destination_cluster", destination.cluster},
      {"request_protocol", std::string(protocol)},
  };
}

void AddOutcome(Labels& labels, bool inbound, uint16_t flags) {
  labels.emplace_back("response_flags", ResponseFlagsString(flags));
  labels.emplace_back("connection_security_policy", inbound ? "none" : "unknown");
}

std::string Escape(const std::string& value) {
  return absl::StrReplaceAll(value, {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}});
}

std::string PrometheusLabels(const Labels& labels) {
  std::string out;
  for (const auto& [name, value] : labels) {
    absl::StrAppend(&out, out.empty() ? "" : ",", name, "=\"", Escape(value), "\"");
  }
  return out;
}

std::string StatName(absl::string_view metric, const Labels& labels) {
  std::string out = absl::StrCat("istiocustom.", metric);
  for (const auto& [name, value] : labels) absl::StrAppend(&out, ".", name, ".", value);
  return out;
}

uint64_t Load(const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); }

struct HistogramValues {
  std::array<uint64_t, kHistogramBounds.size() + 1> buckets{};
  uint64_t sum = 0;
  void Add(const Histogram& h) {
    const auto more = h.Buckets();
    for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += more[i];
    sum += h.sum();
  }
};
struct RequestValues {
  bool grpc = false;
  uint64_t requests = 0;
  HistogramValues duration_ms, request_bytes, response_bytes;
  uint64_t request_messages = 0;
  uint64_t response_messages = 0;
};
struct TcpValues {
  uint64_t opened = 0, closed = 0, sent_bytes = 0, received_bytes = 0;
};

// Series whose labels come out the same (e.g. two inbound ports of one workload) are one
// series, as in Istio's stats filter.
void Collect(const std::vector<IstioScrape>& scrapes, const WorkloadLabels& local,
             const PeerDirectory& peers, std::map<Labels, RequestValues>& requests,
             std::map<Labels, TcpValues>& tcp) {
  for (const IstioScrape& scrape : scrapes) {
    if (scrape.requests != nullptr) {
      scrape.requests->ForEach([&](const IstioRequestTable::LabelSet& set,
                                   const IstioRequestSeries& series) {
        Labels labels = PeerLabels(set.inbound, local, peers.Labels(set.peer), scrape.cluster,
                                   set.grpc ? "grpc" : "http");
        labels.emplace_back("response_code", absl::StrCat(set.response_code));
        labels.emplace_back("grpc_response_status",
                            set.grpc_status ? absl::StrCat(*set.grpc_status) : "");
        AddOutcome(labels, set.inbound, set.response_flags);
        RequestValues& v = requests[std::move(labels)];
        v.grpc = set.grpc;
        v.requests += Load(series.requests);
        v.duration_ms.Add(series.duration_ms);
        v.request_bytes.Add(series.request_bytes);
        v.response_bytes.Add(series.response_bytes);
        v.request_messages += Load(series.request_messages);
        v.response_messages += Load(series.response_messages);
      });
    }
    if (scrape.tcp != nullptr) {
      scrape.tcp->ForEach([&](bool inbound, uint16_t flags, const IstioTcpCounters& counters) {
        Labels labels =
            PeerLabels(inbound, local, peers.Labels(PeerDirectory::kUnknown), scrape.cluster, "tcp");
        AddOutcome(labels, inbound, flags);
        TcpValues& v = tcp[std::move(labels)];
        v.opened += Load(counters.opened);
        v.closed += Load(counters.closed);
        v.sent_bytes += Load(counters.sent_bytes);
        v.received_bytes += Load(counters.received_bytes);
      });
    }
  }
}

}  // namespace

std::string ResponseFlagsString(uint16_t flags) {
  std::string out;
  for (size_t i = 0; i < kFlagNames.size(); ++i) {
    if (flags & (1u << i)) absl::StrAppend(&out, out.empty() ? "" : ",", kFlagNames[i]);
  }
  return out.empty() ? "-" : out;
}

void GrpcMessageCounter::Feed(std::string_view data) {
  while (!data.empty()) {
    if (body_left_ > 0) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(body_left_, data.size()));
      body_left_ -= n;
      data.remove_prefix(n);
      continue;
    }
    prefix_[prefix_size_++] = static_cast<uint8_t>(data.front());
    data.remove_prefix(1);
    if (prefix_size_ == prefix_.size()) {
      ++messages_;
      body_left_ = (uint64_t{prefix_[1]} << 24) | (uint64_t{prefix_[2]} << 16) |
                   (uint64_t{prefix_[3]} << 8) | prefix_[4];
      prefix_size_ = 0;
    }
  }
}

void Histogram::Record(uint64_t value) {
  size_t bucket = 0;
  while (bucket < kHistogramBounds.size() && static_cast<double>(value) > kHistogramBounds[bucket]) {
    ++bucket;
  }
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

std::array<uint64_t, kHistogramBounds.size() + 1> Histogram::Buckets() const {
  std::array<uint64_t, kHistogramBounds.size() + 1> out;
  for (size_t i = 0; i < out.size(); ++i) out[i] = Load(buckets_[i]);
  return out;
}

IstioRequestTable::~IstioRequestTable() {
  for (auto& slot : slots_) delete slot.load(std::memory_order_acquire);
}

void IstioRequestTable::Record(const IstioRequest& request) {
  const uint64_t key = Key(request);
  const size_t start = ((key ^ (key >> 29)) * 0x9e3779b97f4a7c15u >> 32) % kSlots;
  for (size_t probe = 0; probe < kSlots; ++probe) {
    std::atomic<IstioRequestSeries*>& slot = slots_[(start + probe) % kSlots];
    IstioRequestSeries* series = slot.load(std::memory_order_acquire);
    if (series == nullptr) {
      // First of its label set here: allocate; a thread that claims the slot first wins.
      auto* fresh = new IstioRequestSeries(key);
      if (slot.compare_exchange_strong(series, fresh, std::memory_order_acq_rel)) {
        series = fresh;
      } else {
        delete fresh;
      }
    }
    if (series->key != key) continue;
    series->requests.fetch_add(1, std::memory_order_relaxed);
    series->duration_ms.Record(request.duration_ms);
    series->request_bytes.Record(request.request_bytes);
    series->response_bytes.Record(request.response_bytes);
    if (request.grpc) {
      series->request_messages.fetch_add(request.request_messages, std::memory_order_relaxed);
      series->response_messages.fetch_add(request.response_messages, std::memory_order_relaxed);
    }
    return;
  }
  untracked_.fetch_add(1, std::memory_order_relaxed);
}

void IstioRequestTable::ForEach(
    const std::function<void(const LabelSet&, const IstioRequestSeries&)>& fn) const {
  for (const auto& slot : slots_) {
    const IstioRequestSeries* series = slot.load(std::memory_order_acquire);
    if (series != nullptr) fn(LabelSetOf(series->key), *series);
  }
}

IstioTcpCounters& IstioTcpTable::For(bool inbound, uint16_t response_flags) {
  size_t i = kFlags.size() - 1;
  while (i > 0 && kFlags[i] != response_flags) --i;  // anything else: as proxied
  return counters_[(inbound ? kFlags.size() : 0) + i];
}

void IstioTcpTable::ForEach(
    const std::function<void(bool, uint16_t, const IstioTcpCounters&)>& fn) const {
  for (size_t i = 0; i < counters_.size(); ++i) {
    if (Load(counters_[i].opened) == 0) continue;
    fn(i >= kFlags.size(), kFlags[i % kFlags.size()], counters_[i]);
  }
}

DestinationService DestinationOfCluster(const std::string& cluster) {
  std::vector<std::string> parts = absl::StrSplit(cluster, '|');
  if (parts.size() == 4 && (parts[0] == "outbound" || parts[0] == "inbound") &&
      !parts[3].empty()) {
    std::vector<std::string> labels = absl::StrSplit(parts[3], '.');
    return {parts[3], labels[0], labels.size() > 1 ? labels[1] : "unknown", true};
  }
  return {cluster, cluster, "unknown", false};
}

void RenderIstioPrometheus(const std::vector<IstioScrape>& scrapes, const WorkloadLabels& local,
                           const PeerDirectory& peers, std::string& out) {
  std::map<Labels, RequestValues> requests;
  std::map<Labels, TcpValues> tcp;
  Collect(scrapes, local, peers, requests, tcp);
  std::vector<std::pair<std::string, const RequestValues*>> rows;
  for (const auto& [labels, values] : requests) rows.emplace_back(PrometheusLabels(labels), &values);

  auto counter = [&](const char* name, uint64_t RequestValues::*member, bool grpc_only) {
    absl::StrAppend(&out, "# TYPE ", name, " counter\n");
    for (const auto& [labels, values] : rows) {
      if (grpc_only && !values->grpc) continue;
      absl::StrAppend(&out, name, "{", labels, "} ", values->*member, "\n");
    }
  };
  auto histogram = [&](const char* name, HistogramValues RequestValues::*member) {
    absl::StrAppend(&out, "# TYPE ", name, " histogram\n");
    for (const auto& [labels, values] : rows) {
      const HistogramValues& h = values->*member;
      uint64_t cumulative = 0;
      for (size_t b = 0; b < h.buckets.size(); ++b) {
        cumulative += h.buckets[b];
        absl::StrAppend(&out, name, "_bucket{", labels, ",le=\"",
                        b < kBoundNames.size() ? kBoundNames[b] : "+Inf", "\"} ", cumulative,
                        "\n");
      }
      absl::StrAppend(&out, name, "_sum{", labels, "} ", h.sum, "\n");
      absl::StrAppend(&out, name, "_count{", labels, "} ", cumulative, "\n");
    }
  };
  counter("istio_requests_total", &RequestValues::requests, false);
  histogram("istio_request_duration_milliseconds", &RequestValues::duration_ms);
  histogram("istio_request_bytes", &RequestValues::request_bytes);
  histogram("istio_response_bytes", &RequestValues::response_bytes);
  counter("istio_request_messages_total", &RequestValues::request_messages, true);
  counter("istio_response_messages_total", &RequestValues::response_messages, true);

  auto tcp_counter = [&](const char* name, uint64_t TcpValues::*member) {
    absl::StrAppend(&out, "# TYPE ", name, " counter\n");
    for (const auto& [labels, values] : tcp) {
      absl::StrAppend(&out, name, "{", PrometheusLabels(labels), "} ", values.*member, "\n");
    }
  };
  tcp_counter("istio_tcp_connections_opened_total", &TcpValues::opened);
  tcp_counter("istio_tcp_connections_closed_total", &TcpValues::closed);
  tcp_counter("istio_tcp_sent_bytes_total", &TcpValues::sent_bytes);
  tcp_counter("istio_tcp_received_bytes_total", &TcpValues::received_bytes);
}

void RenderIstioText(const std::vector<IstioScrape>& scrapes, const WorkloadLabels& local,
                     const PeerDirectory& peers, std::string& out) {
  std::map<Labels, RequestValues> requests;
  std::map<Labels, TcpValues> tcp;
  Collect(scrapes, local, peers, requests, tcp);
  for (const auto& [labels, values] : requests) {
    absl::StrAppend(&out, StatName("istio_requests_total", labels), ": ", values.requests, "\n");
  }
  for (const auto& [labels, values] : tcp) {
    for (const auto& [name, value] :
         {std::pair("istio_tcp_connections_opened_total", values.opened),
          std::pair("istio_tcp_connections_closed_total", values.closed),
          std::pair("istio_tcp_sent_bytes_total", values.sent_bytes),
          std::pair("istio_tcp_received_bytes_total", values.received_bytes)}) {
      absl::StrAppend(&out, StatName(name, labels), ": ", value, "\n");
    }
  }
}

}  // namespace meshpilot::sidecar
