// Reading one sample out of a Prometheus text exposition (the daemons'
// /metrics), for tests.
#pragma once

#include <sstream>
#include <string>

namespace kpay::test {

// The value of the first sample whose name and labels end with `suffix`
// (e.g. `receiver_rejections_total{reason="read_timeout"}`): robust to the
// metric prefix. 0 when absent.
inline double metric_value(const std::string& text, const std::string& suffix) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    if (space == std::string::npos) continue;
    const auto name = line.substr(0, space);
    if (name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return std::stod(line.substr(space + 1));
    }
  }
  return 0;
}

}  // namespace kpay::test
