#include "libs/common/log.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "libs/common/ids.h"
#include "libs/common/text.h"

namespace crm::log {
namespace {

constexpr size_t kMaxPending = 64 << 10;
// Writes of at most this size to a pipe are atomic: another writer of
// stderr (gRPC, librdkafka) cannot land inside one of our lines.
constexpr size_t kAtomicWrite = 4096;

// Lines go out in order under one lock, each within one write.
struct Sink {
  std::mutex mu;
  std::string pending;
  bool buffer_info = false;

  void WriteLocked() {
    absl::string_view rest = pending;
    while (!rest.empty()) {
      size_t n = rest.size();
      if (n > kAtomicWrite) {
        // Whole lines up to the bound; a longer line goes alone.
        const size_t cut = rest.rfind('\n', kAtomicWrite - 1);
        n = cut != absl::string_view::npos ? cut + 1 : rest.find('\n') + 1;
        if (n == 0) n = rest.size();
      }
      std::fwrite(rest.data(), 1, n, stderr);
      rest.remove_prefix(n);
    }
    pending.clear();
  }
};

// Never destroyed: threads may still log while the process exits. What
// waits is written at exit.
Sink& TheSink() {
  alignas(Sink) static unsigned char storage[sizeof(Sink)];
  static Sink* const sink = [] {
    Sink* s = std::construct_at(reinterpret_cast<Sink*>(storage));
    std::atexit([] { Flush(); });
    return s;
  }();
  return *sink;
}

std::string& ServiceName() {
  static std::string name = "crm";
  return name;
}

void AppendJsonString(std::string* out, absl::string_view s) {
  out->push_back('"');
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out->append(buf);
        } else if (static_cast<unsigned char>(c) < 0x80) {
          out->push_back(c);
        } else if (const size_t n = Utf8SequenceAt(s, i); n > 0) {
          out->append(s.data() + i, n);
          i += n - 1;
        } else {
          // A line a strict JSON reader takes, whatever bytes a caller sent
          // (a value cut mid-character, a client's raw header).
          out->append("\\ufffd");
        }
    }
  }
  out->push_back('"');
}

void Write(absl::string_view level, absl::string_view msg, std::initializer_list<Field> fields) {
  std::string line = "{\"time\":";
  AppendJsonString(&line, FormatRfc3339(absl::Now()));
  absl::StrAppend(&line, ",\"level\":\"", level, "\",\"service\":");
  AppendJsonString(&line, ServiceName());
  line.append(",\"msg\":");
  AppendJsonString(&line, msg);
  for (const auto& [k, v] : fields) {
    line.push_back(',');
    AppendJsonString(&line, k);
    line.push_back(':');
    AppendJsonString(&line, v);
  }
  line.append("}\n");
  Sink& sink = TheSink();
  std::lock_guard<std::mutex> lock(sink.mu);
  sink.pending.append(line);
  if (!sink.buffer_info || level != "info" || sink.pending.size() >= kMaxPending) {
    sink.WriteLocked();
  }
}

}  // namespace

void BufferInfo(bool on) {
  Sink& sink = TheSink();
  std::lock_guard<std::mutex> lock(sink.mu);
  sink.buffer_info = on;
  if (!on) sink.WriteLocked();
}

void Flush() {
  Sink& sink = TheSink();
  std::lock_guard<std::mutex> lock(sink.mu);
  sink.WriteLocked();
}

void SetService(absl::string_view service) { ServiceName() = std::string(service); }
void Info(absl::string_view msg, std::initializer_list<Field> f) { Write("info", msg, f); }
void Warn(absl::string_view msg, std::initializer_list<Field> f) { Write("warn", msg, f); }
void Error(absl::string_view msg, std::initializer_list<Field> f) { Write("error", msg, f); }

}  // namespace crm::log
