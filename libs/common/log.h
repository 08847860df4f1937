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

void SetService(absl::string_view service);
void Info(absl::string_view msg, std::initializer_list<Field> fields = {});
void Warn(absl::string_view msg, std::initializer_list<Field> fields = {});
void Error(absl::string_view msg, std::initializer_list<Field> fields = {});

}  // namespace crm::log
