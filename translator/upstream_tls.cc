#include "translator/upstream_tls.h"

#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h"

namespace meshpilot::translator {
namespace {

// Istio's IsHttp2Cluster: the cluster speaks HTTP/2 explicitly.
bool IsHttp2Cluster(const envoy::config::cluster::v3::Cluster& cluster) {
  auto it = cluster.typed_extension_protocol_options().find(
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions");
  if (it == cluster.typed_extension_protocol_options().end()) return false;
  envoy::extensions::upstreams::http::v3::HttpProtocolOptions options;
  return it->second.UnpackTo(&options) &&
         options.explicit_http_config().has_http2_protocol_options();
}

}  // namespace

void ApplyUpstreamTls(const model::ClientTlsSettings& tls,
                      envoy::config::cluster::v3::Cluster& cluster) {
  using Mode = model::ClientTlsSettings::Mode;
  if (tls.mode != Mode::kSimple && tls.mode != Mode::kMutual) return;
  if (!tls.credential_name.empty()) return;
  envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext context;
  context.set_sni(tls.sni);
  auto* common = context.mutable_common_tls_context();
  if (tls.mode == Mode::kMutual) {
    auto* certificate = common->add_tls_certificates();
    certificate->mutable_certificate_chain()->set_filename(tls.client_certificate);
    certificate->mutable_private_key()->set_filename(tls.private_key);
  }
  if (!tls.insecure_skip_verify.value_or(false)) {
    auto* validation = common->mutable_validation_context();
    if (!tls.ca_certificates.empty()) {
      validation->mutable_trusted_ca()->set_filename(tls.ca_certificates);
    } else {
      validation->mutable_system_root_certs();
    }
    for (const std::string& name : tls.subject_alt_names) {
      validation->add_match_subject_alt_names()->set_exact(name);
    }
    if (!tls.ca_crl.empty()) validation->mutable_crl()->set_filename(tls.ca_crl);
  }
  if (IsHttp2Cluster(cluster)) common->add_alpn_protocols("h2");
  auto* socket = cluster.mutable_transport_socket();
  socket->set_name("envoy.transport_sockets.tls");
  socket->mutable_typed_config()->PackFrom(context);
}

}  // namespace meshpilot::translator
