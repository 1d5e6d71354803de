"""Tests for prepare_protos.py: the (validate.*) stripping must keep everything else intact."""

import os
import tempfile
import unittest

from prepare_protos import closure, strip_validate


class StripValidateTest(unittest.TestCase):
    def test_removes_import(self):
        src = 'syntax = "proto3";\nimport "validate/validate.proto";\nimport "a.proto";\n'
        self.assertEqual(strip_validate(src), 'syntax = "proto3";\nimport "a.proto";\n')

    def test_removes_sole_field_option_and_brackets(self):
        src = "string name = 1 [(validate.rules).string = {min_len: 1}];\n"
        self.assertEqual(strip_validate(src), "string name = 1;\n")

    def test_keeps_other_field_options(self):
        src = ("string a = 1 [(udpa.annotations.sensitive) = true, "
               "(validate.rules).string = {min_len: 1}];\n"
               "string b = 2 [(validate.rules).string = {max_len: 3}, deprecated = true];\n")
        self.assertEqual(
            strip_validate(src),
            "string a = 1 [(udpa.annotations.sensitive) = true];\n"
            "string b = 2 [deprecated = true];\n")

    def test_removes_several_multiline_options(self):
        src = ("UInt32Value id = 1 [\n"
               "  (validate.rules).uint32 = {lte: 65535 gte: 0},\n"
               "  (validate.rules).message = {required: true}\n"
               "];\n")
        self.assertEqual(strip_validate(src), "UInt32Value id = 1;\n")

    def test_nested_braces_and_strings(self):
        src = ('repeated string h = 3 [(validate.rules).repeated = {\n'
               '  items {string {well_known_regex: HTTP_HEADER_NAME pattern: "^[a-z]}]+$"}}\n'
               '}];\n')
        self.assertEqual(strip_validate(src), "repeated string h = 3;\n")

    def test_removes_option_statement(self):
        src = "  oneof x {\n    option (validate.required) = true;\n    string a = 1;\n  }\n"
        self.assertEqual(strip_validate(src), "  oneof x {\n    string a = 1;\n  }\n")

    def test_ignores_comments_and_strings(self):
        src = ('// see (validate.rules).string = here\n'
               'string a = 1 [json_name = "(validate.x)"];\n')
        self.assertEqual(strip_validate(src), src)


class ClosureTest(unittest.TestCase):
    def test_follows_imports_and_skips_well_known_types(self):
        with tempfile.TemporaryDirectory() as d:
            for name, body in {
                "a.proto": 'import "b.proto";\nimport "google/protobuf/any.proto";\n',
                "b.proto": 'import "validate/validate.proto";\n',
                "unused.proto": "",
            }.items():
                with open(os.path.join(d, name), "w") as f:
                    f.write(body)
            self.assertEqual(sorted(closure(["a.proto"], [d])), ["a.proto", "b.proto"])

    def test_missing_import_is_an_error(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "a.proto"), "w") as f:
                f.write('import "missing.proto";\n')
            with self.assertRaises(FileNotFoundError):
                closure(["a.proto"], [d])


if __name__ == "__main__":
    unittest.main()
