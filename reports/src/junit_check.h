// A structural check of JUnit XML against what Jenkins' JUnit plugin schema and GitLab's unit
// test reports require, for tests. An XML parser (Boost.PropertyTree's) reads the file; then:
//   - the root is <testsuites> with numeric tests/failures/errors and a decimal time;
//   - each <testsuite> has a name, tests/failures/errors (non-negative integers), a time, and
//     only <properties>, <testcase>, <system-out>, <system-err> inside; its counts equal the
//     test cases, <failure>s and <error>s it holds, and the root's equal the sums;
//   - each <testcase> has a name and a classname (GitLab groups by it) and a decimal time;
//     inside only <failure>, <error>, <skipped>, <system-out>, <system-err>;
//   - each <failure>/<error> has a non-empty message and type, and a text body (GitLab shows
//     the body as the trace);
//   - each <property> has a name and a value.
// Returns every problem found (empty: the file is acceptable).
#pragma once

#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace citycard::reports::testing {

inline bool is_count(const std::string& v) {
  if (v.empty()) return false;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

inline bool is_decimal(const std::string& v) {
  if (v.empty()) return false;
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  return end == v.c_str() + v.size() && d >= 0 && v.find_first_of("eEnN") == std::string::npos;
}

inline std::vector<std::string> junit_problems(const std::string& xml) {
  namespace pt = boost::property_tree;
  std::vector<std::string> out;
  pt::ptree doc;
  try {
    std::istringstream in(xml);
    pt::read_xml(in, doc);
  } catch (const pt::xml_parser_error& e) {
    return {std::string("not XML: ") + e.what()};
  }
  auto attr = [](const pt::ptree& node, const std::string& name) {
    return node.get<std::string>("<xmlattr>." + name, "\x01");
  };
  auto need_count = [&](const pt::ptree& n, const std::string& where, const char* a) {
    const std::string v = attr(n, a);
    if (!is_count(v)) out.push_back(where + ": attribute " + a + " missing or not a count");
    return is_count(v) ? std::stoull(v) : 0ull;
  };
  auto need_time = [&](const pt::ptree& n, const std::string& where) {
    if (!is_decimal(attr(n, "time"))) out.push_back(where + ": time missing or not a decimal");
  };
  const auto roots = doc.equal_range("testsuites");
  if (doc.size() != 1 || roots.first == roots.second) return {"the root is not <testsuites>"};
  const pt::ptree& root = roots.first->second;
  const auto total_tests = need_count(root, "testsuites", "tests");
  const auto total_failures = need_count(root, "testsuites", "failures");
  const auto total_errors = need_count(root, "testsuites", "errors");
  need_time(root, "testsuites");
  unsigned long long sum_tests = 0, sum_failures = 0, sum_errors = 0;
  for (const auto& [tag, suite] : root) {
    if (tag == "<xmlattr>") continue;
    if (tag != "testsuite") {
      out.push_back("<testsuites> holds <" + tag + ">");
      continue;
    }
    const std::string where = "testsuite '" + attr(suite, "name") + "'";
    if (attr(suite, "name") == "\x01" || attr(suite, "name").empty()) {
      out.push_back("a testsuite without a name");
    }
    const auto tests = need_count(suite, where, "tests");
    const auto failures = need_count(suite, where, "failures");
    const auto errors = need_count(suite, where, "errors");
    need_time(suite, where);
    unsigned long long n_cases = 0, n_failures = 0, n_errors = 0;
    for (const auto& [ctag, c] : suite) {
      if (ctag == "<xmlattr>" || ctag == "system-out" || ctag == "system-err") continue;
      if (ctag == "properties") {
        for (const auto& [ptag, p] : c) {
          if (ptag != "property" || attr(p, "name") == "\x01" || attr(p, "value") == "\x01") {
            out.push_back(where + ": a property without name and value");
          }
        }
        continue;
      }
      if (ctag != "testcase") {
        out.push_back(where + " holds <" + ctag + ">");
        continue;
      }
      ++n_cases;
      const std::string cw = where + " testcase '" + attr(c, "name") + "'";
      if (attr(c, "name") == "\x01" || attr(c, "name").empty()) out.push_back(cw + ": no name");
      if (attr(c, "classname") == "\x01" || attr(c, "classname").empty()) {
        out.push_back(cw + ": no classname");
      }
      need_time(c, cw);
      for (const auto& [ftag, f] : c) {
        if (ftag == "<xmlattr>" || ftag == "skipped" || ftag == "system-out" ||
            ftag == "system-err") {
          continue;
        }
        if (ftag != "failure" && ftag != "error") {
          out.push_back(cw + " holds <" + ftag + ">");
          continue;
        }
        (ftag == "failure" ? n_failures : n_errors) += 1;
        if (attr(f, "message") == "\x01" || attr(f, "message").empty()) {
          out.push_back(cw + ": <" + ftag + "> without a message");
        }
        if (attr(f, "type") == "\x01" || attr(f, "type").empty()) {
          out.push_back(cw + ": <" + ftag + "> without a type");
        }
        if (f.get_value<std::string>().empty()) out.push_back(cw + ": <" + ftag + "> has no text");
      }
    }
    if (tests != n_cases) out.push_back(where + ": tests does not count its test cases");
    if (failures != n_failures) out.push_back(where + ": failures does not count its failures");
    if (errors != n_errors) out.push_back(where + ": errors does not count its errors");
    sum_tests += n_cases;
    sum_failures += n_failures;
    sum_errors += n_errors;
  }
  if (total_tests != sum_tests) out.push_back("testsuites: tests is not the sum");
  if (total_failures != sum_failures) out.push_back("testsuites: failures is not the sum");
  if (total_errors != sum_errors) out.push_back("testsuites: errors is not the sum");
  return out;
}

}  // namespace citycard::reports::testing
