#!/usr/bin/env python3
"""Copies the Envoy/xDS protos meshpilot needs into the build tree, ready for protoc.

Starting from a list of root protos it follows `import` lines to the transitive closure,
and writes each file with its protoc-gen-validate annotations removed: the `validate.proto`
bundled with @grpc/grpc-js-xds is older than the Envoy protos that use it, so protoc rejects
their `(validate.rules)` options. Those options are validation hints and never change the wire
format, so dropping them is safe.

Usage: prepare_protos.py --out DIR --include DIR [--include DIR ...] ROOT.proto [...]
Prints the relative paths of all files written, one per line.
"""

import argparse
import os
import re
import sys

IMPORT_RE = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', re.M)
EMPTY_OPTIONS_RE = re.compile(r"[ \t\n]*\[[ \t\n]*\]")
VALIDATE_IMPORT_RE = re.compile(r'^\s*import\s+"validate/validate\.proto"\s*;[ \t]*\n?', re.M)


def _skip_string(text, i):
    """Returns the index just past the string literal that starts at text[i]."""
    quote = text[i]
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    raise ValueError("unterminated string literal")


def _skip_value(text, i, stops):
    """Scans an option value from text[i] until one of `stops` at nesting depth 0."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c in "\"'":
            i = _skip_string(text, i)
            continue
        if c in "{[(":
            depth += 1
        elif c in "}])":
            if depth == 0 and c in stops:
                return i
            depth -= 1
        elif depth == 0 and c in stops:
            return i
        i += 1
    raise ValueError("unterminated option value")


TOKEN_RE = re.compile(r'//|/\*|"|\'|\(validate\.')


def _next_option(text, i):
    """Returns the offset of the next `(validate.` outside comments and strings, or -1."""
    while True:
        m = TOKEN_RE.search(text, i)
        if m is None:
            return -1
        token, i = m.group(0), m.start()
        if token == "(validate.":
            return i
        if token == "//":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif token == "/*":
            end = text.find("*/", i)
            i = len(text) if end < 0 else end + 2
        else:
            i = _skip_string(text, i)


def strip_validate(text):
    """Removes every `(validate.*)` option from a proto source, keeping everything else."""
    text = VALIDATE_IMPORT_RE.sub("", text)
    out = []
    i = 0
    while True:
        j = _next_option(text, i)
        if j < 0:
            out.append(text[i:])
            return EMPTY_OPTIONS_RE.sub("", "".join(out))
        # Statement form: `option (validate.required) = true;`
        k = j - 1
        while k >= 0 and text[k] in " \t\n":
            k -= 1
        if text[k - 5:k + 1] == "option" and (k - 6 < 0 or not text[k - 6].isalnum()):
            end = _skip_value(text, j, ";")
            start = k - 5
            # Drop the whole line when the statement stood alone on it.
            line_start = text.rfind("\n", 0, start) + 1
            if text[line_start:start].strip() == "":
                start = line_start
                if end + 1 < len(text) and text[end + 1] == "\n":
                    end += 1
            out.append(text[i:start])
            i = end + 1
            continue
        # Field-option form inside [...]: drop the entry and one separating comma. A list
        # left empty is removed at the end.
        end = _skip_value(text, j, ",]")
        back = j - 1
        while back >= i and text[back] in " \t\n":
            back -= 1
        if text[end] == ",":
            end += 1
            while end < len(text) and text[end] in " \t\n":
                end += 1
            out.append(text[i:j])
        elif back >= i and text[back] == ",":
            out.append(text[i:back])
        else:
            out.append(text[i:j])
        i = end


def find_proto(rel, includes):
    for inc in includes:
        path = os.path.join(inc, rel)
        if os.path.isfile(path):
            return path
    return None


def closure(roots, includes):
    """Returns {relative path: absolute path} for the roots and everything they import,
    except files found in no include dir (the well-known types protoc ships)."""
    seen = {}
    stack = list(roots)
    while stack:
        rel = stack.pop()
        if rel in seen or rel == "validate/validate.proto":
            continue
        path = find_proto(rel, includes)
        if path is None:
            if rel.startswith("google/protobuf/"):
                continue
            raise FileNotFoundError("proto not found in include dirs: " + rel)
        seen[rel] = path
        with open(path, encoding="utf-8") as f:
            stack.extend(IMPORT_RE.findall(f.read()))
    return seen


def write_if_changed(path, content):
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == content:
                return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--include", action="append", required=True)
    parser.add_argument("roots", nargs="+")
    args = parser.parse_args(argv)
    files = closure(args.roots, args.include)
    for rel in sorted(files):
        with open(files[rel], encoding="utf-8") as f:
            write_if_changed(os.path.join(args.out, rel), strip_validate(f.read()))
        print(rel)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
