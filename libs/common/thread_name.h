#pragma once

#include <pthread.h>

namespace crm {

// Names the calling thread, so that top -H, perf and gdb tell a service's
// threads apart. Linux keeps the first 15 characters.
inline void NameThisThread(const char* name) { pthread_setname_np(pthread_self(), name); }

}  // namespace crm
