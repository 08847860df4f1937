#include "libs/common/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "libs/common/thread_name.h"

namespace crm {
namespace {

std::string EscapeLabel(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out.append("\\n");
      continue;
    }
    out.push_back(c);
  }
  return out;
}

std::string LabelText(const Labels& labels, const std::string& extra_key = "",
                      const std::string& extra_value = "") {
  std::vector<std::string> parts;
  for (const auto& [k, v] : labels) parts.push_back(absl::StrCat(k, "=\"", EscapeLabel(v), "\""));
  if (!extra_key.empty()) parts.push_back(absl::StrCat(extra_key, "=\"", extra_value, "\""));
  if (parts.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < parts.size(); ++i) absl::StrAppend(&out, i ? "," : "", parts[i]);
  return out + "}";
}

// Bucket bounds: short as written (0.005, 2.5).
std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return absl::StrCat(v);
}

// Sums and gauges grow past six significant digits (StrCat's): 1234567 is
// printed whole, not as 1.23457e+06, or a rate over it reads 0 between jumps.
std::string Value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return Number(v);
  if (v == std::trunc(v) && std::fabs(v) < 9.007199254740992e15) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  return absl::StrFormat("%.15g", v);
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_micro_.fetch_add(static_cast<uint64_t>(std::max(v, 0.0) * 1e6), std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::Cumulative() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    out[i] = running;
  }
  return out;
}

double Histogram::sum() const { return static_cast<double>(sum_micro_.load()) / 1e6; }

std::vector<double> LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

MetricsRegistry& MetricsRegistry::Default() {
  static MetricsRegistry* registry = std::make_unique<MetricsRegistry>().release();  // never dies
  return *registry;
}

MetricsRegistry::Family& MetricsRegistry::FamilyFor(const std::string& name,
                                                    const std::string& help,
                                                    const std::string& type) {
  auto& f = families_[name];
  if (f.type.empty()) {
    f.help = help;
    f.type = type;
  }
  return f;
}

Counter& MetricsRegistry::GetCounter(const std::string& name, const std::string& help,
                                     const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = FamilyFor(name, help, "counter").counters[labels];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Histogram& MetricsRegistry::GetHistogram(const std::string& name, const std::string& help,
                                         const Labels& labels, const std::vector<double>& bounds) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = FamilyFor(name, help, "histogram").histograms[labels];
  if (!slot) slot = std::make_unique<Histogram>(bounds);
  return *slot;
}

MetricsRegistry::GaugeHandle MetricsRegistry::AddGauge(const std::string& name,
                                                       const std::string& help,
                                                       const Labels& labels,
                                                       std::function<double()> read) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t id = next_gauge_++;
  FamilyFor(name, help, "gauge").gauges[id] = {labels, std::move(read)};
  return GaugeHandle(this, id);
}

void MetricsRegistry::RemoveGauge(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [name, f] : families_) f.gauges.erase(id);
}

MetricsRegistry::GaugeHandle& MetricsRegistry::GaugeHandle::operator=(
    GaugeHandle&& other) noexcept {
  if (this != &other) {
    if (registry_ != nullptr) registry_->RemoveGauge(id_);
    registry_ = other.registry_;
    id_ = other.id_;
    other.registry_ = nullptr;
  }
  return *this;
}

MetricsRegistry::GaugeHandle::~GaugeHandle() {
  if (registry_ != nullptr) registry_->RemoveGauge(id_);
}

std::string MetricsRegistry::Render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    if (f.counters.empty() && f.histograms.empty() && f.gauges.empty()) continue;
    absl::StrAppend(&out, "# HELP ", name, " ", f.help, "\n# TYPE ", name, " ", f.type, "\n");
    for (const auto& [labels, c] : f.counters) {
      absl::StrAppend(&out, name, LabelText(labels), " ", c->value(), "\n");
    }
    for (const auto& [labels, h] : f.histograms) {
      const auto cumulative = h->Cumulative();
      for (size_t i = 0; i < cumulative.size(); ++i) {
        const std::string le =
            i < h->bounds().size() ? Number(h->bounds()[i]) : std::string("+Inf");
        absl::StrAppend(&out, name, "_bucket", LabelText(labels, "le", le), " ", cumulative[i],
                        "\n");
      }
      absl::StrAppend(&out, name, "_sum", LabelText(labels), " ", Value(h->sum()), "\n");
      absl::StrAppend(&out, name, "_count", LabelText(labels), " ", cumulative.back(), "\n");
    }
    for (const auto& [id, gauge] : f.gauges) {
      absl::StrAppend(&out, name, LabelText(gauge.first), " ", Value(gauge.second()), "\n");
    }
  }
  return out;
}

absl::Status MetricsServer::Start(const std::string& listen) {
  std::pair<std::string, std::string> hp = absl::StrSplit(listen, absl::MaxSplits(':', 1));
  int port = 0;
  if (!absl::SimpleAtoi(hp.second, &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics listen address '", listen, "': want host:port"));
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const std::string host = hp.first.empty() ? "0.0.0.0" : hp.first;
  if (inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("metrics host '", host, "': want an IPv4"));
  }
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd_, 16) != 0) {
    const std::string why = std::strerror(errno);
    close(fd_);
    fd_ = -1;
    return absl::UnavailableError(absl::StrCat("metrics listen on ", listen, ": ", why));
  }
  socklen_t len = sizeof(addr);
  getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] {
    NameThisThread("crm-metrics");
    Serve();
  });
  return absl::OkStatus();
}

void MetricsServer::Stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void MetricsServer::Serve() {
  while (!stopping_) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    const int client = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    // Both ways: a scraper that stops reading must not hold the one
    // serving thread (and with it Stop at shutdown).
    timeval timeout{2, 0};
    setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    char buf[2048];
    const ssize_t n = recv(client, buf, sizeof(buf) - 1, 0);
    std::string response;
    if (n > 0 && std::strncmp(buf, "GET /metrics", 12) == 0) {
      const std::string body = registry_.Render();
      response = absl::StrCat(
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
          "Content-Length: ",
          body.size(), "\r\nConnection: close\r\n\r\n", body);
    } else {
      response = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    }
    // A send timeout bounds one send, not the reply: a scraper reading a
    // little at a time keeps every send making progress. The whole reply
    // gets 5 s, sent in steps of at most 200 ms so that Stop is not kept
    // waiting either.
    const timeval step{0, 200'000};
    setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &step, sizeof(step));
    const absl::Time give_up = absl::Now() + absl::Seconds(5);
    for (size_t sent = 0; sent < response.size() && !stopping_ && absl::Now() < give_up;) {
      const ssize_t w = send(client, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
      if (w <= 0) break;
      sent += static_cast<size_t>(w);
    }
    close(client);
  }
}

}  // namespace crm
