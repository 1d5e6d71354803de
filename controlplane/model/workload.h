#pragma once

#include <map>
#include <string>

#include "controlplane/model/endpoint.h"
#include "controlplane/model/object_meta.h"

namespace meshpilot::model {

// A v1/Pod, reduced to what endpoints and proxies need from it.
struct Pod {
  ObjectMeta meta;
  std::string ip;
  std::string service_account;
  std::string node_name;
  Locality locality;  // from the istio-locality label or topology labels
};

// A v1/Namespace.
struct Namespace {
  ObjectMeta meta;
};

}  // namespace meshpilot::model
