#pragma once

#include "absl/synchronization/mutex.h"

namespace crm {

// Process-wide settings of the shipped binaries (services, crmctl,
// benches), called first in main(). Unit tests keep the library defaults;
// integration tests run the shipped binaries.
inline void UseReleaseRuntime() {
  // Debian builds Abseil without NDEBUG, so every absl::Mutex (gRPC's locks
  // are ones) runs the debug deadlock detector: a global graph under one
  // lock, updated on each Lock. It cost about 13% of the CPU of a unary
  // echo call. Unit tests keep it to catch lock-order inversions.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace crm
