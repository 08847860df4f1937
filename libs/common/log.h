#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/string_view.h"

namespace crm::log {

// One JSON object per line on stderr: time, level, service, message and
// the given fields. Cheap enough for per-request access logs.
using Field = std::pair<absl::string_view, absl::string_view>;

// Names the service in every line; call before any thread logs (the name
// is read without a lock).
void SetService(absl::string_view service);

// Info lines are written at once unless buffering is on: then they wait
// until Flush(), the next warning or error, or 64 KiB of them, and leave
// in one write(2) (a write per line was 40% of the access log's cost). A
// process killed meanwhile loses them, so only a process that flushes
// periodically turns it on (ServiceHost::Run, every 200 ms).
void BufferInfo(bool on);
void Flush();
void Info(absl::string_view msg, std::initializer_list<Field> fields = {});
void Warn(absl::string_view msg, std::initializer_list<Field> fields = {});
void Error(absl::string_view msg, std::initializer_list<Field> fields = {});

}  // namespace crm::log
