#include "controlplane/source/kube/label_selector.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace meshpilot::source {
namespace {

constexpr size_t kMaxNameLength = 63;
constexpr size_t kMaxPrefixLength = 253;

bool IsSpecial(char c) {
  return c == ',' || c == '=' || c == '!' || c == '(' || c == ')' || c == '<' || c == '>' ||
         absl::ascii_isspace(static_cast<unsigned char>(c));
}

// A label name or value: alphanumerics, '-', '_', '.', starting and ending alphanumeric.
std::string CheckName(absl::string_view name, const char* what) {
  if (name.size() > kMaxNameLength) {
    return absl::StrCat(what, " \"", name, "\" is longer than 63 characters");
  }
  auto alnum = [](char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)); };
  if (!name.empty() && (!alnum(name.front()) || !alnum(name.back()))) {
    return absl::StrCat(what, " \"", name, "\" must start and end with a letter or digit");
  }
  for (char c : name) {
    if (!alnum(c) && c != '-' && c != '_' && c != '.') {
      return absl::StrCat(what, " \"", name, "\" may hold only letters, digits, '-', '_' and '.'");
    }
  }
  return "";
}

// A qualified name: [DNS subdomain "/"] name.
std::string CheckKey(absl::string_view key) {
  if (key.empty()) return "expected a label key";
  absl::string_view name = key;
  if (size_t slash = key.find('/'); slash != absl::string_view::npos) {
    absl::string_view prefix = key.substr(0, slash);
    name = key.substr(slash + 1);
    if (prefix.empty() || prefix.size() > kMaxPrefixLength ||
        !std::all_of(prefix.begin(), prefix.end(),
                     [](char c) {
                       return absl::ascii_islower(static_cast<unsigned char>(c)) ||
                              absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '-' ||
                              c == '.';
                     }) ||
        prefix.front() == '-' || prefix.front() == '.' || prefix.back() == '-' ||
        prefix.back() == '.') {
      return absl::StrCat("the prefix \"", prefix, "\" of key \"", key,
                          "\" must be a DNS subdomain (lower case, at most 253 characters)");
    }
  }
  if (name.empty()) return absl::StrCat("key \"", key, "\" has no name after its prefix");
  return CheckName(name, "key");
}

}  // namespace

// Recursive descent over the text, one requirement at a time; `at_` is the byte offset.
class LabelSelector::Parser {
 public:
  explicit Parser(absl::string_view text) : text_(text) {}

  absl::StatusOr<LabelSelector> Parse() {
    LabelSelector selector;
    SkipSpace();
    if (AtEnd()) return selector;
    while (true) {
      absl::StatusOr<Requirement> requirement = ParseRequirement();
      if (!requirement.ok()) return requirement.status();
      selector.requirements_.push_back(*std::move(requirement));
      SkipSpace();
      if (AtEnd()) return selector;
      if (text_[at_] != ',') {
        return Error(absl::StrCat("expected \",\" or the end after the requirement on \"",
                                  selector.requirements_.back().key, "\""));
      }
      ++at_;
      SkipSpace();
      if (AtEnd()) return Error("expected a requirement after \",\"");
    }
  }

 private:
  absl::StatusOr<Requirement> ParseRequirement() {
    Requirement requirement;
    if (text_[at_] == '!') {
      ++at_;
      SkipSpace();
      requirement.op = Operator::kDoesNotExist;
      size_t key_at = at_;
      requirement.key = std::string(Word());
      if (std::string problem = CheckKey(requirement.key); !problem.empty()) {
        return Error(requirement.key.empty() ? "expected a label key after \"!\"" : problem,
                     key_at);
      }
      return requirement;
    }
    size_t key_at = at_;
    requirement.key = std::string(Word());
    if (std::string problem = CheckKey(requirement.key); !problem.empty()) {
      return Error(problem, key_at);
    }
    SkipSpace();
    if (AtEnd() || text_[at_] == ',') {
      requirement.op = Operator::kExists;
      return requirement;
    }
    if (Consume("==") || Consume("=")) {
      requirement.op = Operator::kEquals;
    } else if (Consume("!=")) {
      requirement.op = Operator::kNotEquals;
    } else if (Consume(">")) {
      requirement.op = Operator::kGreater;
    } else if (Consume("<")) {
      requirement.op = Operator::kLess;
    } else {
      size_t word_at = at_;
      absl::string_view word = Word();
      if (word != "in" && word != "notin") {
        return Error(absl::StrCat("expected an operator (=, ==, !=, in, notin, >, <), \",\" or "
                                  "the end after key \"",
                                  requirement.key, "\""),
                     word_at);
      }
      requirement.op = word == "in" ? Operator::kIn : Operator::kNotIn;
      absl::Status values = ParseValueSet(requirement, word);
      if (!values.ok()) return values;
      return requirement;
    }
    SkipSpace();
    size_t value_at = at_;
    std::string value(Word());
    if (requirement.op == Operator::kGreater || requirement.op == Operator::kLess) {
      int64_t number;
      if (!absl::SimpleAtoi(value, &number)) {
        return Error(absl::StrCat("the value of \"", requirement.key, "\" after ",
                                  requirement.op == Operator::kGreater ? ">" : "<",
                                  " must be an integer, not \"", value, "\""),
                     value_at);
      }
    } else if (std::string problem = CheckName(value, "value"); !problem.empty()) {
      return Error(problem, value_at);
    }
    requirement.values.push_back(std::move(value));
    return requirement;
  }

  // "(a, b, c)" after in/notin.
  absl::Status ParseValueSet(Requirement& requirement, absl::string_view op) {
    SkipSpace();
    if (!Consume("(")) return Error(absl::StrCat("expected \"(\" after \"", op, "\""));
    SkipSpace();
    if (!AtEnd() && text_[at_] == ')') {
      return Error(absl::StrCat("the values of \"", requirement.key, " ", op,
                                "\" must not be empty"));
    }
    while (true) {
      SkipSpace();
      size_t value_at = at_;
      std::string value(Word());
      if (std::string problem = CheckName(value, "value"); !problem.empty()) {
        return Error(problem, value_at);
      }
      requirement.values.push_back(std::move(value));
      SkipSpace();
      if (Consume(")")) break;
      if (!Consume(",")) {
        return Error(absl::StrCat("expected \",\" or \")\" in the values of \"",
                                  requirement.key, " ", op, "\""));
      }
    }
    std::sort(requirement.values.begin(), requirement.values.end());
    return absl::OkStatus();
  }

  bool AtEnd() const { return at_ >= text_.size(); }
  void SkipSpace() {
    while (!AtEnd() && absl::ascii_isspace(static_cast<unsigned char>(text_[at_]))) ++at_;
  }
  bool Consume(absl::string_view token) {
    if (text_.substr(at_, token.size()) != token) return false;
    at_ += token.size();
    return true;
  }
  absl::string_view Word() {
    size_t start = at_;
    while (!AtEnd() && !IsSpecial(text_[at_])) ++at_;
    return text_.substr(start, at_ - start);
  }
  absl::Status Error(absl::string_view message) const { return Error(message, at_); }
  absl::Status Error(absl::string_view message, size_t at) const {
    return absl::InvalidArgumentError(absl::StrCat("column ", at + 1, ": ", message));
  }

  absl::string_view text_;
  size_t at_ = 0;
};

absl::StatusOr<LabelSelector> LabelSelector::Parse(absl::string_view text) {
  return Parser(text).Parse();
}

bool LabelSelector::Matches(const std::map<std::string, std::string>& labels) const {
  for (const Requirement& requirement : requirements_) {
    auto label = labels.find(requirement.key);
    const bool present = label != labels.end();
    auto listed = [&] {
      return std::binary_search(requirement.values.begin(), requirement.values.end(),
                                label->second);
    };
    auto compare = [&](bool greater) {
      int64_t have, want;
      if (!present || !absl::SimpleAtoi(label->second, &have) ||
          !absl::SimpleAtoi(requirement.values.front(), &want)) {
        return false;
      }
      return greater ? have > want : have < want;
    };
    bool holds = false;
    switch (requirement.op) {
      case Operator::kEquals:
        holds = present && label->second == requirement.values.front();
        break;
      case Operator::kNotEquals:
        holds = !present || label->second != requirement.values.front();
        break;
      case Operator::kIn:
        holds = present && listed();
        break;
      case Operator::kNotIn:
        holds = !present || !listed();
        break;
      case Operator::kExists:
        holds = present;
        break;
      case Operator::kDoesNotExist:
        holds = !present;
        break;
      case Operator::kGreater:
        holds = compare(/*greater=*/true);
        break;
      case Operator::kLess:
        holds = compare(/*greater=*/false);
        break;
    }
    if (!holds) return false;
  }
  return true;
}

}  // namespace meshpilot::source
