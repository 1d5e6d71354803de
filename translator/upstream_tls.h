#pragma once

#include "controlplane/model/destination_rule.h"
#include "envoy/config/cluster/v3/cluster.pb.h"

namespace meshpilot::translator {

// DestinationRule `tls` modes SIMPLE and MUTUAL as the cluster's transport socket: an
// UpstreamTlsContext as Istio writes it for certificates in files (sni; clientCertificate and
// privateKey; caCertificates, else the OS's roots, as Istio's VERIFY_CERTIFICATE_AT_CLIENT;
// subjectAltNames; caCrl; none of these with insecureSkipVerify; ALPN h2 on an HTTP/2 cluster).
// Call after the HTTP protocol options are set. DISABLE and ISTIO_MUTUAL add nothing (mesh
// mTLS needs a CA meshpilot does not run yet), nor does credentialName (SDS): both are
// reported by CheckDestinationRules.
void ApplyUpstreamTls(const model::ClientTlsSettings& tls,
                      envoy::config::cluster::v3::Cluster& cluster);

}  // namespace meshpilot::translator
