#include "libs/common/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace crm {
namespace {

std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return "";
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
  send(fd, req.data(), req.size(), 0);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) out.append(buf, n);
  close(fd);
  return out;
}

TEST(MetricsTest, RendersCountersHistogramsAndGaugesInTextFormat) {
  MetricsRegistry registry;
  registry.GetCounter("crm_test_total", "Things", {{"method", "/a"}, {"code", "0"}}).Inc(3);
  auto& h = registry.GetHistogram("crm_test_seconds", "Latency", {{"method", "/a"}}, {0.1, 1});
  h.Observe(0.05);
  h.Observe(0.5);
  h.Observe(7);
  double depth = 42;
  auto handle = registry.AddGauge("crm_test_depth", "Depth", {}, [&] { return depth; });
  const std::string text = registry.Render();
  EXPECT_NE(text.find("# TYPE crm_test_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("crm_test_total{code=\"0\",method=\"/a\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("crm_test_seconds_bucket{method=\"/a\",le=\"0.1\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("crm_test_seconds_bucket{method=\"/a\",le=\"1\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("crm_test_seconds_bucket{method=\"/a\",le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("crm_test_seconds_count{method=\"/a\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("crm_test_seconds_sum{method=\"/a\"} 7.55\n"), std::string::npos) << text;
  EXPECT_NE(text.find("crm_test_depth 42\n"), std::string::npos);
}

// Past six significant digits a value is still written whole: a scrape of
// 1.23457e+06 would hide growth until it jumped.
TEST(MetricsTest, LargeGaugesAndSumsAreWrittenWithEveryDigit) {
  MetricsRegistry registry;
  auto& h = registry.GetHistogram("crm_big_seconds", "Latency", {}, {1});
  h.Observe(1234567.25);
  auto lag = registry.AddGauge("crm_big_lag", "Lag", {}, [] { return 12345678.0; });
  const std::string text = registry.Render();
  EXPECT_NE(text.find("crm_big_seconds_sum 1234567.25\n"), std::string::npos) << text;
  EXPECT_NE(text.find("crm_big_lag 12345678\n"), std::string::npos) << text;
}

TEST(MetricsTest, GaugeDisappearsWithItsHandle) {
  MetricsRegistry registry;
  {
    auto handle = registry.AddGauge("crm_gone", "Gone", {}, [] { return 1.0; });
    EXPECT_NE(registry.Render().find("crm_gone 1"), std::string::npos);
  }
  EXPECT_EQ(registry.Render().find("crm_gone"), std::string::npos);
}

TEST(MetricsTest, ServerAnswersMetricsAndNotFound) {
  MetricsRegistry registry;
  registry.GetCounter("crm_served_total", "Served").Inc();
  MetricsServer server(registry);
  ASSERT_TRUE(server.Start("127.0.0.1:0").ok());
  const std::string ok = HttpGet(server.port(), "/metrics");
  EXPECT_EQ(ok.rfind("HTTP/1.1 200 OK", 0), 0u) << ok;
  EXPECT_NE(ok.find("text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(ok.find("crm_served_total 1"), std::string::npos);
  EXPECT_EQ(HttpGet(server.port(), "/other").rfind("HTTP/1.1 404", 0), 0u);
}

// A scraper reading a little at a time: asks for the metrics and then
// reads 4 KB every 200 ms (each of the server's sends makes progress).
class SlowReader {
 public:
  explicit SlowReader(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    const int small = 4096;
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    EXPECT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    const std::string req = "GET /metrics HTTP/1.1\r\n\r\n";
    EXPECT_EQ(send(fd_, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
    thread_ = std::thread([this] {
      char buf[4096];
      const absl::Time until = absl::Now() + absl::Seconds(30);
      while (!done_ && absl::Now() < until && recv(fd_, buf, sizeof(buf), 0) > 0) {
        sending_ = true;
        absl::SleepFor(absl::Milliseconds(200));
      }
    });
    // The server is sending to it (the page built) before it is timed.
    const absl::Time until = absl::Now() + absl::Seconds(30);
    while (!sending_ && absl::Now() < until) absl::SleepFor(absl::Milliseconds(10));
    EXPECT_TRUE(sending_);
  }
  ~SlowReader() {
    done_ = true;
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
  }

 private:
  int fd_;
  std::atomic<bool> done_{false};
  std::atomic<bool> sending_{false};
  std::thread thread_;
};

// One slow scraper holds the one serving thread for 5 s at most, and never
// holds up Stop.
TEST(MetricsTest, ASlowReaderHoldsTheServerForABoundedTime) {
  MetricsRegistry registry;
  auto big = registry.AddGauge("crm_big", "Big", {{"value", std::string(8 << 20, 'x')}},
                               [] { return 1.0; });
  MetricsServer server(registry);
  ASSERT_TRUE(server.Start("127.0.0.1:0").ok());
  {
    SlowReader slow(server.port());
    const absl::Time asked = absl::Now();
    const std::string next = HttpGet(server.port(), "/other");
    EXPECT_EQ(next.rfind("HTTP/1.1 404", 0), 0u) << next;
    EXPECT_LT(absl::Now() - asked, absl::Seconds(10));
  }
  SlowReader slow(server.port());
  const absl::Time stopping = absl::Now();
  server.Stop();
  EXPECT_LT(absl::Now() - stopping, absl::Seconds(3));
}

TEST(MetricsTest, BadListenAddressIsRejected) {
  MetricsRegistry registry;
  MetricsServer server(registry);
  EXPECT_EQ(server.Start("no-port").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(server.Start("999.1.1.1:80").code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace crm
