#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace crm {

// Prometheus metrics: counters, histograms and callback gauges, rendered in
// the text exposition format (version 0.0.4). Lookups take a lock; hot paths
// keep the returned reference and only touch atomics.
using Labels = std::map<std::string, std::string>;

class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  // Cumulative counts per bound, then +Inf; and the sum.
  std::vector<uint64_t> Cumulative() const;
  double sum() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<uint64_t> sum_micro_{0};               // sum in millionths
};

// Seconds, from 100 µs to 10 s: unary RPC latencies.
std::vector<double> LatencyBuckets();

class MetricsRegistry {
 public:
  static MetricsRegistry& Default();

  Counter& GetCounter(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& GetHistogram(const std::string& name, const std::string& help,
                          const Labels& labels = {},
                          const std::vector<double>& bounds = LatencyBuckets());

  // A gauge read at scrape time; it is removed when the handle dies, so a
  // component can register a gauge over itself.
  class GaugeHandle {
   public:
    GaugeHandle() = default;
    GaugeHandle(MetricsRegistry* registry, uint64_t id) : registry_(registry), id_(id) {}
    GaugeHandle(GaugeHandle&& other) noexcept { *this = std::move(other); }
    GaugeHandle& operator=(GaugeHandle&& other) noexcept;
    ~GaugeHandle();

   private:
    MetricsRegistry* registry_ = nullptr;
    uint64_t id_ = 0;
  };
  [[nodiscard]] GaugeHandle AddGauge(const std::string& name, const std::string& help,
                                     const Labels& labels, std::function<double()> read);

  std::string Render() const;

 private:
  struct Family {
    std::string help;
    std::string type;
    std::map<Labels, std::unique_ptr<Counter>> counters;
    std::map<Labels, std::unique_ptr<Histogram>> histograms;
    std::map<uint64_t, std::pair<Labels, std::function<double()>>> gauges;
  };
  Family& FamilyFor(const std::string& name, const std::string& help, const std::string& type);
  void RemoveGauge(uint64_t id);

  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
  uint64_t next_gauge_ = 1;
};

// Serves GET /metrics over plain HTTP/1.1 on one thread: scrapes are rare
// and small, so this needs no HTTP library.
class MetricsServer {
 public:
  explicit MetricsServer(MetricsRegistry& registry) : registry_(registry) {}
  ~MetricsServer() { Stop(); }
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // "host:port"; port 0 picks a free one (see port()).
  absl::Status Start(const std::string& listen);
  void Stop();
  int port() const { return port_; }

 private:
  void Serve();

  MetricsRegistry& registry_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace crm
