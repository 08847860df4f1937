#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "libs/common/grpc_status.h"

namespace crm {

// Runs handler bodies that block (synced RocksDB appends) off gRPC's
// callback threads, which must not block. Many workers let concurrent
// appends meet in RocksDB's write group and share one fsync.
class BlockingExecutor {
 public:
  // TryRun refuses a task once `max_queued` tasks wait for a thread.
  explicit BlockingExecutor(int threads, size_t max_queued = SIZE_MAX);
  ~BlockingExecutor();
  BlockingExecutor(const BlockingExecutor&) = delete;
  BlockingExecutor& operator=(const BlockingExecutor&) = delete;

  // Queues the task whatever the queue holds: for work already admitted.
  void Run(std::function<void()> task);
  // False, with the task dropped, when `max_queued` tasks already wait: for
  // new calls, which can be told to come back later.
  [[nodiscard]] bool TryRun(std::function<void()> task);

 private:
  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// The answer to a call refused because `max_queued` calls already wait.
inline grpc::Status ServerBusy() {
  return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      "server busy: too many calls waiting; retry later");
}

// Finishes a unary callback RPC with the status `body` returns, computed on
// the executor. Overload answers RESOURCE_EXHAUSTED at once rather than
// queue without bound; a call its client gave up on (deadline, cancel)
// while it waited does not run: nobody would read its answer.
template <typename Body>
grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* ctx, BlockingExecutor& executor,
                                   Body body) {
  auto* reactor = ctx->DefaultReactor();
  const bool queued = executor.TryRun([ctx, reactor, body = std::move(body)]() mutable {
    if (ctx->IsCancelled()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the call ended before it ran"));
      return;
    }
    reactor->Finish(ToGrpcStatus(body()));
  });
  if (!queued) reactor->Finish(ServerBusy());
  return reactor;
}

}  // namespace crm
