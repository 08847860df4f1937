#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Early returns that keep the happy path flat.
#define CRM_RETURN_IF_ERROR(expr)                         \
  do {                                                    \
    if (absl::Status _st = (expr); !_st.ok()) return _st; \
  } while (0)

#define CRM_CONCAT_INNER(a, b) a##b
#define CRM_CONCAT(a, b) CRM_CONCAT_INNER(a, b)

#define CRM_ASSIGN_OR_RETURN(lhs, expr) \
  CRM_ASSIGN_OR_RETURN_IMPL(CRM_CONCAT(_statusor_, __LINE__), lhs, expr)

#define CRM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return std::move(tmp).status();  \
  lhs = std::move(tmp).value()
