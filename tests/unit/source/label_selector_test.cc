#include "controlplane/source/kube/label_selector.h"

#include <catch2/catch.hpp>
#include <map>
#include <string>

namespace meshpilot::source {
namespace {

using Labels = std::map<std::string, std::string>;

bool Selects(const std::string& selector, const Labels& labels) {
  absl::StatusOr<LabelSelector> parsed = LabelSelector::Parse(selector);
  INFO(parsed.status().ToString());
  REQUIRE(parsed.ok());
  return parsed->Matches(labels);
}

std::string ParseError(const std::string& selector) {
  absl::StatusOr<LabelSelector> parsed = LabelSelector::Parse(selector);
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument);
  return std::string(parsed.status().message());
}

TEST_CASE("the empty selector selects everything") {
  for (const std::string text : {"", "   "}) {
    absl::StatusOr<LabelSelector> parsed = LabelSelector::Parse(text);
    REQUIRE(parsed.ok());
    CHECK(parsed->SelectsEverything());
    CHECK(parsed->Matches({}));
    CHECK(parsed->Matches({{"a", "b"}}));
  }
}

TEST_CASE("equality requirements") {
  CHECK(Selects("env=prod", {{"env", "prod"}}));
  CHECK(Selects("env==prod", {{"env", "prod"}, {"x", "y"}}));
  CHECK_FALSE(Selects("env=prod", {{"env", "dev"}}));
  CHECK_FALSE(Selects("env=prod", {}));
  CHECK(Selects("env!=prod", {{"env", "dev"}}));
  CHECK(Selects("env!=prod", {}));  // as in Kubernetes: holds when the key is absent
  CHECK_FALSE(Selects("env!=prod", {{"env", "prod"}}));
  CHECK(Selects("env=", {{"env", ""}}));
  CHECK_FALSE(Selects("env=", {}));
}

TEST_CASE("set requirements") {
  CHECK(Selects("tier in (web, api)", {{"tier", "api"}}));
  CHECK(Selects("tier in(web,api)", {{"tier", "web"}}));
  CHECK_FALSE(Selects("tier in (web,api)", {{"tier", "db"}}));
  CHECK_FALSE(Selects("tier in (web,api)", {}));
  CHECK(Selects("tier notin (web,api)", {{"tier", "db"}}));
  CHECK(Selects("tier notin (web,api)", {}));
  CHECK_FALSE(Selects("tier notin (web,api)", {{"tier", "web"}}));
}

TEST_CASE("existence and comparison requirements") {
  CHECK(Selects("mesh", {{"mesh", ""}}));
  CHECK_FALSE(Selects("mesh", {}));
  CHECK(Selects("!legacy", {{"mesh", "on"}}));
  CHECK(Selects("! legacy", {}));
  CHECK_FALSE(Selects("!legacy", {{"legacy", "true"}}));
  CHECK(Selects("gen>3", {{"gen", "4"}}));
  CHECK_FALSE(Selects("gen>3", {{"gen", "3"}}));
  CHECK_FALSE(Selects("gen>3", {{"gen", "x"}}));
  CHECK_FALSE(Selects("gen>3", {}));
  CHECK(Selects("gen<3", {{"gen", "-1"}}));
}

TEST_CASE("all requirements must hold") {
  const std::string selector = "mesh=on, tier in (web,api),!legacy";
  CHECK(Selects(selector, {{"mesh", "on"}, {"tier", "web"}}));
  CHECK_FALSE(Selects(selector, {{"mesh", "on"}, {"tier", "web"}, {"legacy", "1"}}));
  CHECK_FALSE(Selects(selector, {{"mesh", "off"}, {"tier", "web"}}));
  CHECK_FALSE(Selects(selector, {{"mesh", "on"}}));
}

TEST_CASE("qualified keys") {
  CHECK(Selects("example.com/team=a", {{"example.com/team", "a"}}));
  CHECK(Selects("kubernetes.io/metadata.name in (shop,pay)",
                {{"kubernetes.io/metadata.name", "pay"}}));
}

TEST_CASE("errors name the column and what was expected") {
  CHECK(ParseError("env in web") == "column 8: expected \"(\" after \"in\"");
  CHECK(ParseError("env in (web") == "column 12: expected \",\" or \")\" in the values of \"env in\"");
  CHECK(ParseError("env in ()") == "column 9: the values of \"env in\" must not be empty");
  CHECK(ParseError("env prod") ==
        "column 5: expected an operator (=, ==, !=, in, notin, >, <), \",\" or the end after "
        "key \"env\"");
  CHECK(ParseError("env=prod,") == "column 10: expected a requirement after \",\"");
  CHECK(ParseError("=prod") == "column 1: expected a label key");
  CHECK(ParseError("!") == "column 2: expected a label key after \"!\"");
  CHECK(ParseError("env=pr od") == "column 8: expected \",\" or the end after the requirement on \"env\"");
  CHECK(ParseError("gen>three") ==
        "column 5: the value of \"gen\" after > must be an integer, not \"three\"");
  CHECK(ParseError("env=-prod") ==
        "column 5: value \"-prod\" must start and end with a letter or digit");
  CHECK(ParseError("env=a/b") ==
        "column 5: value \"a/b\" may hold only letters, digits, '-', '_' and '.'");
  CHECK(ParseError(std::string(64, 'k') + "=v") ==
        "column 1: key \"" + std::string(64, 'k') + "\" is longer than 63 characters");
  CHECK(ParseError("Example.com/team=a") ==
        "column 1: the prefix \"Example.com\" of key \"Example.com/team\" must be a DNS "
        "subdomain (lower case, at most 253 characters)");
  CHECK(ParseError("example.com/=a") == "column 1: key \"example.com/\" has no name after its prefix");
}

}  // namespace
}  // namespace meshpilot::source
