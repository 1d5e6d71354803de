#include "sidecar/config/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "sidecar/config/sds.h"
#include "spdlog/spdlog.h"

namespace meshpilot::sidecar::config {
namespace {

namespace tls_v3 = envoy::extensions::transport_sockets::tls::v3;
using envoy::config::core::v3::DataSource;

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// OpenSSL's error queue as one line (and emptied).
std::string OpenSslErrors() {
  std::string out;
  while (unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    if (!out.empty()) out += "; ";
    out += buffer;
  }
  return out.empty() ? "unknown error" : out;
}

absl::StatusOr<std::string> ReadDataSource(const DataSource& source, const std::string& field) {
  switch (source.specifier_case()) {
    case DataSource::kFilename: {
      std::ifstream in(source.filename(), std::ios::binary);
      if (!in) return Invalid(absl::StrCat(field, ".filename"),
                              absl::StrCat("cannot read \"", source.filename(), "\""));
      std::stringstream content;
      content << in.rdbuf();
      return content.str();
    }
    case DataSource::kInlineString:
      return source.inline_string();
    case DataSource::kInlineBytes:
      return source.inline_bytes();
    case DataSource::kEnvironmentVariable:
      return Invalid(absl::StrCat(field, ".environment_variable"), "not supported");
    default:
      return Invalid(field, "empty");
  }
}

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;

BioPtr MemoryBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
}

// Every certificate of a PEM bundle, in order; at least one.
absl::StatusOr<std::vector<X509*>> ReadCertificates(const std::string& pem,
                                                    const std::string& field) {
  BioPtr bio = MemoryBio(pem);
  std::vector<X509*> certificates;
  while (X509* certificate = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certificates.push_back(certificate);
  }
  ERR_clear_error();  // the end of the bundle
  if (certificates.empty()) return Invalid(field, "no PEM certificate");
  return certificates;
}

absl::Status AddCertificate(SSL_CTX* ctx, const tls_v3::TlsCertificate& proto,
                            const std::string& field) {
  if (proto.has_private_key_provider()) {
    return Invalid(absl::StrCat(field, ".private_key_provider"), "not supported");
  }
  if (proto.has_pkcs12()) return Invalid(absl::StrCat(field, ".pkcs12"), "not supported");
  if (proto.has_password()) return Invalid(absl::StrCat(field, ".password"), "not supported");
  auto chain_pem = ReadDataSource(proto.certificate_chain(),
                                  absl::StrCat(field, ".certificate_chain"));
  if (!chain_pem.ok()) return chain_pem.status();
  auto chain = ReadCertificates(*chain_pem, absl::StrCat(field, ".certificate_chain"));
  if (!chain.ok()) return chain.status();
  // The leaf, then the intermediates (the context takes ownership of those it keeps).
  const bool leaf_ok = SSL_CTX_use_certificate(ctx, (*chain)[0]) == 1;
  X509_free((*chain)[0]);
  bool chain_ok = leaf_ok;
  for (size_t i = 1; i < chain->size(); ++i) {
    if (!chain_ok || SSL_CTX_add_extra_chain_cert(ctx, (*chain)[i]) != 1) {
      X509_free((*chain)[i]);
      chain_ok = false;
    }
  }
  if (!chain_ok) return Invalid(absl::StrCat(field, ".certificate_chain"), OpenSslErrors());
  auto key_pem = ReadDataSource(proto.private_key(), absl::StrCat(field, ".private_key"));
  if (!key_pem.ok()) return key_pem.status();
  BioPtr bio = MemoryBio(*key_pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) return Invalid(absl::StrCat(field, ".private_key"), "no PEM private key");
  const bool key_ok = SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
  EVP_PKEY_free(key);
  if (!key_ok) return Invalid(absl::StrCat(field, ".private_key"), OpenSslErrors());
  return absl::OkStatus();
}

absl::Status ApplyValidation(SSL_CTX* ctx, const tls_v3::CertificateValidationContext& proto,
                             const std::string& field, TlsContext& tls) {
  if (proto.verify_certificate_spki_size() > 0) {
    return Invalid(absl::StrCat(field, ".verify_certificate_spki"), "not supported");
  }
  if (proto.verify_certificate_hash_size() > 0) {
    return Invalid(absl::StrCat(field, ".verify_certificate_hash"), "not supported");
  }
  if (proto.has_ca_certificate_provider_instance()) {
    return Invalid(absl::StrCat(field, ".ca_certificate_provider_instance"), "not supported");
  }
  if (proto.has_custom_validator_config()) {
    return Invalid(absl::StrCat(field, ".custom_validator_config"), "not supported");
  }
  for (int i = 0; i < proto.match_typed_subject_alt_names_size(); ++i) {
    const auto& typed = proto.match_typed_subject_alt_names(i);
    const std::string f = absl::StrCat(field, ".match_typed_subject_alt_names[", i, "]");
    SanMatcher san;
    switch (typed.san_type()) {
      case tls_v3::SubjectAltNameMatcher::EMAIL: san.type = SanMatcher::Type::kEmail; break;
      case tls_v3::SubjectAltNameMatcher::DNS: san.type = SanMatcher::Type::kDns; break;
      case tls_v3::SubjectAltNameMatcher::URI: san.type = SanMatcher::Type::kUri; break;
      case tls_v3::SubjectAltNameMatcher::IP_ADDRESS: san.type = SanMatcher::Type::kIpAddress; break;
      default:
        return Invalid(absl::StrCat(f, ".san_type"),
                       absl::StrCat(tls_v3::SubjectAltNameMatcher::SanType_Name(typed.san_type()),
                                    " is not supported (EMAIL, DNS, URI, IP_ADDRESS)"));
    }
    auto match = ParseStringMatch(typed.matcher(), absl::StrCat(f, ".matcher"));
    if (!match.ok()) return match.status();
    san.match = *std::move(match);
    tls.san_matchers.push_back(std::move(san));
  }
  for (int i = 0; i < proto.match_subject_alt_names_size(); ++i) {
    auto match = ParseStringMatch(proto.match_subject_alt_names(i),
                                  absl::StrCat(field, ".match_subject_alt_names[", i, "]"));
    if (!match.ok()) return match.status();
    tls.san_matchers.push_back(SanMatcher{SanMatcher::Type::kAny, *std::move(match)});
  }
  const bool accept_untrusted =
      proto.trust_chain_verification() == tls_v3::CertificateValidationContext::ACCEPT_UNTRUSTED;
  if (proto.has_trusted_ca()) {
    auto pem = ReadDataSource(proto.trusted_ca(), absl::StrCat(field, ".trusted_ca"));
    if (!pem.ok()) return pem.status();
    auto certificates = ReadCertificates(*pem, absl::StrCat(field, ".trusted_ca"));
    if (!certificates.ok()) return certificates.status();
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    for (X509* certificate : *certificates) {
      X509_STORE_add_cert(store, certificate);
      X509_free(certificate);
    }
    ERR_clear_error();  // a CA listed twice
    tls.verify_peer = !accept_untrusted;
  } else if (proto.has_system_root_certs()) {
    SSL_CTX_set_default_verify_paths(ctx);
    tls.verify_peer = !accept_untrusted;
  } else if (!tls.san_matchers.empty()) {
    // As Envoy: matching SANs of a certificate nobody verified would prove nothing.
    return Invalid(field, "SAN matching needs trusted_ca");
  }
  if (proto.has_crl()) {
    if (!proto.has_trusted_ca() && !proto.has_system_root_certs()) {
      return Invalid(absl::StrCat(field, ".crl"), "needs trusted_ca");
    }
    auto pem = ReadDataSource(proto.crl(), absl::StrCat(field, ".crl"));
    if (!pem.ok()) return pem.status();
    BioPtr bio = MemoryBio(*pem);
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    int count = 0;
    while (X509_CRL* crl = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)) {
      X509_STORE_add_crl(store, crl);
      X509_CRL_free(crl);
      ++count;
    }
    ERR_clear_error();
    if (count == 0) return Invalid(absl::StrCat(field, ".crl"), "no PEM CRL");
    X509_STORE_set_flags(store, proto.only_verify_leaf_cert_crl()
                                    ? X509_V_FLAG_CRL_CHECK
                                    : X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
  }
  return absl::OkStatus();
}

int ProtocolVersion(tls_v3::TlsParameters::TlsProtocol protocol, int automatic) {
  switch (protocol) {
    case tls_v3::TlsParameters::TLSv1_0: return TLS1_VERSION;
    case tls_v3::TlsParameters::TLSv1_1: return TLS1_1_VERSION;
    case tls_v3::TlsParameters::TLSv1_2: return TLS1_2_VERSION;
    case tls_v3::TlsParameters::TLSv1_3: return TLS1_3_VERSION;
    default: return automatic;
  }
}

absl::Status ApplyParameters(SSL_CTX* ctx, const tls_v3::TlsParameters& proto,
                             const std::string& field) {
  // Envoy's defaults: TLS 1.2 to 1.3.
  const int min = ProtocolVersion(proto.tls_minimum_protocol_version(), TLS1_2_VERSION);
  const int max = ProtocolVersion(proto.tls_maximum_protocol_version(), TLS1_3_VERSION);
  if (min > max) {
    return Invalid(field, "tls_minimum_protocol_version is above tls_maximum_protocol_version");
  }
  SSL_CTX_set_min_proto_version(ctx, min);
  SSL_CTX_set_max_proto_version(ctx, max);
  if (proto.cipher_suites_size() > 0) {
    // TLS 1.2 and older suites (TLS 1.3's are not configurable in Envoy either).
    const std::string list = absl::StrJoin(proto.cipher_suites(), ":");
    if (SSL_CTX_set_cipher_list(ctx, list.c_str()) != 1) {
      return Invalid(absl::StrCat(field, ".cipher_suites"),
                     absl::StrCat("no usable cipher suite in \"", list, "\": ", OpenSslErrors()));
    }
  }
  if (proto.ecdh_curves_size() > 0) {
    const std::string list = absl::StrJoin(proto.ecdh_curves(), ":");
    if (SSL_CTX_set1_groups_list(ctx, list.c_str()) != 1) {
      return Invalid(absl::StrCat(field, ".ecdh_curves"),
                     absl::StrCat("unknown curve in \"", list, "\": ", OpenSslErrors()));
    }
  }
  if (proto.signature_algorithms_size() > 0) {
    const std::string list = absl::StrJoin(proto.signature_algorithms(), ":");
    if (SSL_CTX_set1_sigalgs_list(ctx, list.c_str()) != 1) {
      return Invalid(absl::StrCat(field, ".signature_algorithms"),
                     absl::StrCat("unknown algorithm in \"", list, "\": ", OpenSslErrors()));
    }
  }
  return absl::OkStatus();
}

// ALPN's wire format: each protocol as a length byte and its name.
std::string AlpnWire(const std::vector<std::string>& protocols) {
  std::string wire;
  for (const std::string& protocol : protocols) {
    wire.push_back(static_cast<char>(protocol.size()));
    wire += protocol;
  }
  return wire;
}

// Server: the first of our protocols (in our order) the client offers; none in common goes on
// without ALPN, as Envoy.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* in,
               unsigned int in_length, void* arg) {
  const auto* ours = static_cast<const std::string*>(arg);
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_length,
                            reinterpret_cast<const unsigned char*>(ours->data()),
                            static_cast<unsigned>(ours->size()), in,
                            in_length) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// The secret an SdsSecretConfig names, which must be of `type` (a tls_certificate, a
// validation_context).
absl::StatusOr<tls_v3::Secret> ReadSdsSecret(const tls_v3::SdsSecretConfig& proto,
                                             const std::string& field,
                                             tls_v3::Secret::TypeCase type) {
  auto file = ParseSdsSecretConfig(proto, field);
  if (!file.ok()) return file.status();
  auto secret = ReadSecret(*file);
  if (!secret.ok()) return Invalid(field, std::string(secret.status().message()));
  if (secret->type_case() != type) {
    return Invalid(field, absl::StrCat(file->path, ": secret \"", file->secret_name, "\" has no ",
                                       type == tls_v3::Secret::kTlsCertificate
                                           ? "tls_certificate"
                                           : "validation_context"));
  }
  return secret;
}

// Every SDS file of `proto` (none: its context never changes).
absl::StatusOr<std::vector<SdsFile>> SdsFilesOf(const tls_v3::CommonTlsContext& proto,
                                                const std::string& field) {
  std::vector<SdsFile> files;
  auto add = [&](const tls_v3::SdsSecretConfig& config, const std::string& f) -> absl::Status {
    auto file = ParseSdsSecretConfig(config, f);
    if (!file.ok()) return file.status();
    files.push_back(*std::move(file));
    return absl::OkStatus();
  };
  for (int i = 0; i < proto.tls_certificate_sds_secret_configs_size(); ++i) {
    if (auto status = add(proto.tls_certificate_sds_secret_configs(i),
                          absl::StrCat(field, ".tls_certificate_sds_secret_configs[", i, "]"));
        !status.ok()) {
      return status;
    }
  }
  if (proto.has_validation_context_sds_secret_config()) {
    if (auto status = add(proto.validation_context_sds_secret_config(),
                          absl::StrCat(field, ".validation_context_sds_secret_config"));
        !status.ok()) {
      return status;
    }
  }
  if (proto.combined_validation_context().has_validation_context_sds_secret_config()) {
    if (auto status = add(proto.combined_validation_context().validation_context_sds_secret_config(),
                          absl::StrCat(field, ".combined_validation_context"
                                              ".validation_context_sds_secret_config"));
        !status.ok()) {
      return status;
    }
  }
  return files;
}

// The files a secret's DataSources name: reloaded when they are replaced, as Envoy.
std::vector<std::string> FilesOf(const tls_v3::Secret& secret) {
  std::vector<std::string> files;
  for (const DataSource* source :
       {&secret.tls_certificate().certificate_chain(), &secret.tls_certificate().private_key(),
        &secret.validation_context().trusted_ca(), &secret.validation_context().crl()}) {
    if (source->has_filename()) files.push_back(source->filename());
  }
  return files;
}

// What both directions share: parameters, certificates, validation, ALPN.
absl::Status ApplyCommon(const tls_v3::CommonTlsContext& proto, const std::string& field,
                         bool server, TlsContext& tls) {
  SSL_CTX* ctx = tls.ssl->native_handle();
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (auto status = ApplyParameters(ctx, proto.tls_params(), absl::StrCat(field, ".tls_params"));
      !status.ok()) {
    return status;
  }
  if (proto.has_tls_certificate_provider_instance() ||
      proto.has_tls_certificate_certificate_provider() ||
      proto.has_tls_certificate_certificate_provider_instance()) {
    return Invalid(absl::StrCat(field, ".tls_certificate_provider_instance"), "not supported");
  }
  const int certificates =
      proto.tls_certificates_size() + proto.tls_certificate_sds_secret_configs_size();
  if (certificates > 1) {
    return Invalid(absl::StrCat(field, proto.tls_certificates_size() > 1
                                           ? ".tls_certificates"
                                           : ".tls_certificate_sds_secret_configs"),
                   "only one certificate is supported");
  }
  for (int i = 0; i < proto.tls_certificates_size(); ++i) {
    if (auto status = AddCertificate(ctx, proto.tls_certificates(i),
                                     absl::StrCat(field, ".tls_certificates[", i, "]"));
        !status.ok()) {
      return status;
    }
  }
  for (int i = 0; i < proto.tls_certificate_sds_secret_configs_size(); ++i) {
    const std::string f = absl::StrCat(field, ".tls_certificate_sds_secret_configs[", i, "]");
    auto secret = ReadSdsSecret(proto.tls_certificate_sds_secret_configs(i), f,
                                tls_v3::Secret::kTlsCertificate);
    if (!secret.ok()) return secret.status();
    if (auto status = AddCertificate(ctx, secret->tls_certificate(),
                                     absl::StrCat(f, " secret \"", secret->name(),
                                                  "\": tls_certificate"));
        !status.ok()) {
      return status;
    }
  }
  if (server && certificates == 0) {
    return Invalid(absl::StrCat(field, ".tls_certificates"),
                   "a server context needs a certificate");
  }
  using Common = tls_v3::CommonTlsContext;
  switch (proto.validation_context_type_case()) {
    case Common::kValidationContext:
      if (auto status = ApplyValidation(ctx, proto.validation_context(),
                                        absl::StrCat(field, ".validation_context"), tls);
          !status.ok()) {
        return status;
      }
      break;
    case Common::kCombinedValidationContext: {
      const std::string f = absl::StrCat(field, ".combined_validation_context");
      const auto& combined = proto.combined_validation_context();
      if (combined.has_validation_context_certificate_provider() ||
          combined.has_validation_context_certificate_provider_instance()) {
        return Invalid(absl::StrCat(f, ".validation_context_certificate_provider"),
                       "not supported");
      }
      // As Envoy: the secret's fields merged over the default ones.
      tls_v3::CertificateValidationContext merged = combined.default_validation_context();
      std::string merged_field = absl::StrCat(f, ".default_validation_context");
      if (combined.has_validation_context_sds_secret_config()) {
        merged_field = absl::StrCat(f, ".validation_context_sds_secret_config");
        auto secret = ReadSdsSecret(combined.validation_context_sds_secret_config(), merged_field,
                                    tls_v3::Secret::kValidationContext);
        if (!secret.ok()) return secret.status();
        merged.MergeFrom(secret->validation_context());
        absl::StrAppend(&merged_field, " secret \"", secret->name(),
                        "\" merged over default_validation_context");
      }
      if (auto status = ApplyValidation(ctx, merged, merged_field, tls); !status.ok()) {
        return status;
      }
      break;
    }
    case Common::kValidationContextSdsSecretConfig: {
      const std::string f = absl::StrCat(field, ".validation_context_sds_secret_config");
      auto secret = ReadSdsSecret(proto.validation_context_sds_secret_config(), f,
                                  tls_v3::Secret::kValidationContext);
      if (!secret.ok()) return secret.status();
      if (auto status = ApplyValidation(
              ctx, secret->validation_context(),
              absl::StrCat(f, " secret \"", secret->name(), "\": validation_context"), tls);
          !status.ok()) {
        return status;
      }
      break;
    }
    case Common::kValidationContextCertificateProvider:
    case Common::kValidationContextCertificateProviderInstance:
      return Invalid(absl::StrCat(field, ".validation_context_certificate_provider"),
                     "not supported");
    default:
      break;
  }
  tls.alpn.assign(proto.alpn_protocols().begin(), proto.alpn_protocols().end());
  for (size_t i = 0; i < tls.alpn.size(); ++i) {
    if (tls.alpn[i].empty() || tls.alpn[i].size() > 255) {
      return Invalid(absl::StrCat(field, ".alpn_protocols[", i, "]"), "must be 1 to 255 bytes");
    }
  }
  return absl::OkStatus();
}

constexpr char kTlsName[] = "envoy.transport_sockets.tls";
constexpr char kRawBufferName[] = "envoy.transport_sockets.raw_buffer";

// True for raw_buffer (plaintext); an error for anything but TLS.
absl::StatusOr<bool> IsRawBuffer(const envoy::config::core::v3::TransportSocket& proto,
                                 const std::string& tls_type, const std::string& field) {
  const std::string& url = proto.typed_config().type_url();
  const std::string type = url.substr(url.rfind('/') + 1);
  if (type == "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer" ||
      (type.empty() && proto.name() == kRawBufferName)) {
    return true;
  }
  if (type == tls_type) return false;
  return Invalid(absl::StrCat(field, ".typed_config"),
                 absl::StrCat("unsupported transport socket \"", type.empty() ? proto.name() : type,
                              "\" (", kTlsName, " with ", tls_type.substr(tls_type.rfind('.') + 1),
                              ", or raw_buffer)"));
}

}  // namespace

namespace {

// Calls `visit(type, value)` for each DNS, URI, email and IP address SAN of `cert` until it
// returns true; returns whether one did.
template <typename Visit>
bool AnySan(X509* cert, Visit visit) {
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return false;
  bool found = false;
  for (int i = 0; i < sk_GENERAL_NAME_num(names) && !found; ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    SanMatcher::Type type;
    std::string value;
    switch (name->type) {
      case GEN_DNS:
      case GEN_URI:
      case GEN_EMAIL: {
        const ASN1_IA5STRING* text = name->d.ia5;
        value.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(text)),
                     ASN1_STRING_length(text));
        type = name->type == GEN_DNS   ? SanMatcher::Type::kDns
               : name->type == GEN_URI ? SanMatcher::Type::kUri
                                       : SanMatcher::Type::kEmail;
        break;
      }
      case GEN_IPADD: {
        const ASN1_OCTET_STRING* ip = name->d.iPAddress;
        char text[INET6_ADDRSTRLEN] = {};
        const int length = ASN1_STRING_length(ip);
        const int family = length == 4 ? AF_INET : length == 16 ? AF_INET6 : 0;
        if (family == 0 || inet_ntop(family, ASN1_STRING_get0_data(ip), text, sizeof(text)) ==
                               nullptr) {
          continue;
        }
        value = text;
        type = SanMatcher::Type::kIpAddress;
        break;
      }
      default:
        continue;
    }
    found = visit(type, value);
  }
  GENERAL_NAMES_free(names);
  return found;
}

}  // namespace

bool TlsContext::SanMatches(X509* cert) const {
  if (san_matchers.empty()) return true;
  if (cert == nullptr) return false;
  return AnySan(cert, [this](SanMatcher::Type type, const std::string& value) {
    for (const SanMatcher& matcher : san_matchers) {
      if (matcher.type != SanMatcher::Type::kAny && matcher.type != type) continue;
      if (matcher.match.Matches(value)) return true;
      // A wildcard DNS SAN ("*.example.com") stands for one label, as Envoy matches it
      // against an exact matcher.
      if (type == SanMatcher::Type::kDns && value.starts_with("*.") &&
          matcher.match.kind == StringMatch::Kind::kExact) {
        const std::string& want = matcher.match.value;
        const size_t dot = want.find('.');
        if (dot != std::string::npos && dot > 0 &&
            std::string_view(want).substr(dot) == std::string_view(value).substr(1)) {
          return true;
        }
      }
    }
    return false;
  });
}

PeerCertificate ReadPeerCertificate(X509* cert) {
  PeerCertificate peer;
  AnySan(cert, [&peer](SanMatcher::Type type, const std::string& value) {
    if (type == SanMatcher::Type::kUri) peer.uri_sans.push_back(value);
    if (type == SanMatcher::Type::kDns) peer.dns_sans.push_back(value);
    return false;
  });
  BioPtr bio(BIO_new(BIO_s_mem()), &BIO_free);
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  if (size > 0) peer.subject.assign(data, static_cast<size_t>(size));
  return peer;
}

namespace {

absl::StatusOr<std::shared_ptr<const TlsContext>> BuildDownstream(
    const tls_v3::DownstreamTlsContext& context, const std::string& f) {
  auto tls = std::make_shared<TlsContext>();
  tls->ssl = std::make_unique<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
  if (auto status = ApplyCommon(context.common_tls_context(),
                                absl::StrCat(f, ".common_tls_context"), /*server=*/true, *tls);
      !status.ok()) {
    return status;
  }
  SSL_CTX* ctx = tls->ssl->native_handle();
  tls->require_client_certificate = context.require_client_certificate().value();
  if (tls->require_client_certificate && !tls->verify_peer) {
    return Invalid(absl::StrCat(f, ".require_client_certificate"),
                   "needs common_tls_context.validation_context.trusted_ca");
  }
  if (tls->verify_peer) {
    // A client certificate is asked for; without require_client_certificate one that is
    // absent is accepted, one that is there must verify.
    SSL_CTX_set_verify(ctx,
                       SSL_VERIFY_PEER | (tls->require_client_certificate
                                              ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                              : 0),
                       nullptr);
    static constexpr unsigned char kSessionContext[] = "meshproxy";
    SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof(kSessionContext) - 1);
  }
  if (!tls->alpn.empty()) {
    // The callback reads the wire form, kept with the context it belongs to.
    tls->alpn_wire = AlpnWire(tls->alpn);
    SSL_CTX_set_alpn_select_cb(ctx, &SelectAlpn, &tls->alpn_wire);
  }
  return std::shared_ptr<const TlsContext>(std::move(tls));
}

absl::StatusOr<std::shared_ptr<const TlsContext>> BuildUpstream(
    const tls_v3::UpstreamTlsContext& context, const std::string& f, bool offer_h2_and_http11) {
  auto tls = std::make_shared<TlsContext>();
  tls->ssl = std::make_unique<boost::asio::ssl::context>(boost::asio::ssl::context::tls_client);
  if (auto status = ApplyCommon(context.common_tls_context(),
                                absl::StrCat(f, ".common_tls_context"), /*server=*/false, *tls);
      !status.ok()) {
    return status;
  }
  tls->sni = context.sni();
  SSL_CTX* ctx = tls->ssl->native_handle();
  // Without a trusted CA the server's certificate is not verified, as Envoy.
  SSL_CTX_set_verify(ctx, tls->verify_peer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  if (tls->alpn.empty() && offer_h2_and_http11) tls->alpn = {"h2", "http/1.1"};
  if (!tls->alpn.empty()) {
    const std::string wire = AlpnWire(tls->alpn);
    SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                            static_cast<unsigned>(wire.size()));
  }
  return std::shared_ptr<const TlsContext>(std::move(tls));
}

// Registers `socket` to be built again when `file`, or a file its secret names now, is
// replaced; after each reload the files the new secret names are watched too.
void WatchSdsFile(const SdsFile& file, const std::shared_ptr<TlsTransportSocket>& socket) {
  auto secret = ReadSecret(file);
  TlsTransportSocket* reloaded = socket.get();  // alive while the watcher calls (it locks it)
  std::weak_ptr<TlsTransportSocket> weak = socket;
  SecretFileWatcher::Get().Register(
      file, secret.ok() ? FilesOf(*secret) : std::vector<std::string>(),
      std::weak_ptr<const void>(socket), [reloaded, weak, file] {
        if (absl::Status status = reloaded->Reload(); !status.ok()) {
          spdlog::error("SDS {} (secret \"{}\") not applied: {}; the last good one keeps serving",
                        file.path, file.secret_name, std::string(status.message()));
          return;
        }
        spdlog::info("SDS {} (secret \"{}\"): new connections use it", file.path,
                     file.secret_name);
        if (auto socket = weak.lock()) WatchSdsFile(file, socket);
      });
}

// The transport socket built once; with SDS files, registered to be built again when they
// are replaced.
absl::StatusOr<std::shared_ptr<const TlsTransportSocket>> MakeTransportSocket(
    const tls_v3::CommonTlsContext& common, const std::string& field,
    TlsTransportSocket::Build build) {
  auto files = SdsFilesOf(common, absl::StrCat(field, ".common_tls_context"));
  if (!files.ok()) return files.status();
  auto socket = std::make_shared<TlsTransportSocket>(std::move(build));
  if (auto status = socket->Reload(); !status.ok()) return status;
  for (const SdsFile& file : *files) WatchSdsFile(file, socket);
  return std::shared_ptr<const TlsTransportSocket>(std::move(socket));
}

}  // namespace

absl::Status TlsTransportSocket::Reload() {
  auto built = build_();
  if (!built.ok()) return built.status();
  current_.store(*std::move(built), std::memory_order_release);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const TlsTransportSocket>> ParseDownstreamTransportSocket(
    const envoy::config::core::v3::TransportSocket& proto, const std::string& field) {
  auto raw = IsRawBuffer(proto, tls_v3::DownstreamTlsContext::descriptor()->full_name(), field);
  if (!raw.ok()) return raw.status();
  if (*raw) return nullptr;
  tls_v3::DownstreamTlsContext context;
  const std::string f = absl::StrCat(field, ".typed_config");
  if (!proto.typed_config().UnpackTo(&context)) return Invalid(f, "cannot unpack");
  if (context.has_session_ticket_keys_sds_secret_config()) {
    return Invalid(absl::StrCat(f, ".session_ticket_keys_sds_secret_config"), "not supported");
  }
  return MakeTransportSocket(context.common_tls_context(), f,
                             [context, f] { return BuildDownstream(context, f); });
}

absl::StatusOr<std::shared_ptr<const TlsTransportSocket>> ParseUpstreamTransportSocket(
    const envoy::config::core::v3::TransportSocket& proto, const std::string& field,
    bool offer_h2_and_http11) {
  auto raw = IsRawBuffer(proto, tls_v3::UpstreamTlsContext::descriptor()->full_name(), field);
  if (!raw.ok()) return raw.status();
  if (*raw) return nullptr;
  tls_v3::UpstreamTlsContext context;
  const std::string f = absl::StrCat(field, ".typed_config");
  if (!proto.typed_config().UnpackTo(&context)) return Invalid(f, "cannot unpack");
  return MakeTransportSocket(
      context.common_tls_context(), f,
      [context, f, offer_h2_and_http11] { return BuildUpstream(context, f, offer_h2_and_http11); });
}

}  // namespace meshpilot::sidecar::config
