#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace crm::bench {

// One line per figure, "figure: <name> <value> <unit>", which bench/run.sh
// collects into RESULTS.md.
inline void Figure(const std::string& name, double value, const std::string& unit) {
  std::printf("figure: %-40s %14.1f %s\n", name.c_str(), value, unit.c_str());
  std::fflush(stdout);
}

inline double PerSecond(double count, absl::Duration d) {
  return count / std::max(absl::ToDoubleSeconds(d), 1e-9);
}

// The q-quantile (0..1) of latencies in microseconds.
inline double QuantileMicros(std::vector<absl::Duration> samples, double q) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  const size_t i = std::min(samples.size() - 1, static_cast<size_t>(q * samples.size()));
  return absl::ToDoubleMicroseconds(samples[i]);
}

// CPU seconds this process has used, all threads (RocksDB's background
// flushes and compactions included): a figure that noisy neighbours on a
// shared machine move far less than wall time.
inline double ProcessCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

}  // namespace crm::bench
