#include "controlplane/validate/validate.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "controlplane/convert/mesh_state_builder.h"
#include "controlplane/convert/object.h"
#include "controlplane/source/file/file_source.h"
#include "translator/translate.h"

namespace meshpilot::validate {
namespace {

namespace fs = std::filesystem;

model::ConfigError FileError(std::string origin, std::string message) {
  model::ConfigError error;
  error.origin = std::move(origin);
  error.message = std::move(message);
  return error;
}

// The files named by `paths`, folders expanded (sorted, as the file source reads them).
std::vector<fs::path> ExpandPaths(const std::vector<std::string>& paths, Report& report) {
  std::vector<fs::path> files;
  for (const std::string& path : paths) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::vector<fs::path> in_folder;
      for (const auto& entry : fs::directory_iterator(path, ec)) {
        if (entry.is_regular_file() && source::IsConfigFile(entry.path())) {
          in_folder.push_back(entry.path());
        }
      }
      if (ec) report.errors.push_back(FileError(path, absl::StrCat("cannot list: ", ec.message())));
      std::sort(in_folder.begin(), in_folder.end());
      files.insert(files.end(), in_folder.begin(), in_folder.end());
    } else {
      files.emplace_back(path);
    }
  }
  return files;
}

std::string Describe(const model::ConfigError& finding) {
  std::string out = finding.origin;
  if (!finding.kind.empty()) absl::StrAppend(&out, ": ", finding.kind);
  if (!finding.name.empty()) {
    absl::StrAppend(&out, " ", finding.namespace_.empty() ? "" : finding.namespace_ + "/",
                    finding.name);
  }
  return absl::StrCat(out, ": ", finding.message);
}

}  // namespace

Report ValidatePaths(const std::vector<std::string>& paths) {
  Report report;
  std::vector<convert::SourcedObject> objects;
  for (const fs::path& file : ExpandPaths(paths, report)) {
    ++report.files;
    std::ifstream in(file, std::ios::binary);
    std::ostringstream content;
    content << in.rdbuf();
    if (!in) {
      report.errors.push_back(FileError(file.string(), "cannot read the file"));
      continue;
    }
    auto parsed = convert::ParseYamlStream(content.str(), file.string());
    if (!parsed.ok()) {
      report.errors.push_back(FileError(file.string(), std::string(parsed.status().message())));
      continue;
    }
    report.objects += parsed->objects.size();
    report.errors.insert(report.errors.end(), parsed->errors.begin(), parsed->errors.end());
    objects.insert(objects.end(), std::make_move_iterator(parsed->objects.begin()),
                   std::make_move_iterator(parsed->objects.end()));
  }
  // Cross-object checks, as the translator makes them when serving. BuildMeshState reports
  // duplicates (the same kind and name twice) among its errors.
  model::MeshState state = convert::BuildMeshState(objects, {});
  report.errors.insert(report.errors.end(), state.errors.begin(), state.errors.end());
  std::map<std::tuple<std::string, std::string, std::string>, std::string> origins;
  for (const convert::SourcedObject& object : objects) {
    const model::ObjectMeta& meta = convert::MetaOf(object.object);
    origins.try_emplace({std::string(convert::KindOf(object.object)), meta.namespace_, meta.name},
                        object.origin);
  }
  for (model::ConfigError& warning : translator::CheckConfig(state)) {
    auto it = origins.find({warning.kind, warning.namespace_, warning.name});
    if (it != origins.end()) warning.origin = it->second;
    report.warnings.push_back(std::move(warning));
  }
  return report;
}

std::string FormatReport(const Report& report) {
  std::string out;
  for (const model::ConfigError& error : report.errors) {
    absl::StrAppend(&out, "error: ", Describe(error), "\n");
  }
  for (const model::ConfigError& warning : report.warnings) {
    // Istio's analyzer code, where the warning has one: `warning [IST0101]: ...`.
    const std::string code = warning.type.code.empty() ? "" : absl::StrCat(" [", warning.type.code, "]");
    absl::StrAppend(&out, "warning", code, ": ", Describe(warning), "\n");
  }
  absl::StrAppend(&out, report.objects, " objects in ", report.files, " files: ",
                  report.errors.size(), " errors, ", report.warnings.size(), " warnings\n");
  return out;
}

}  // namespace meshpilot::validate
