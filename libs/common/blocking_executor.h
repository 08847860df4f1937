#pragma once

#include <chrono>
#include <condition_variable>
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
  explicit BlockingExecutor(int threads);
  ~BlockingExecutor();
  BlockingExecutor(const BlockingExecutor&) = delete;
  BlockingExecutor& operator=(const BlockingExecutor&) = delete;

  void Run(std::function<void()> task);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// Finishes a unary callback RPC with the status `body` returns, computed on
// the executor.
template <typename Body>
grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* ctx, BlockingExecutor& executor,
                                   Body body) {
  auto* reactor = ctx->DefaultReactor();
  executor.Run(
      [reactor, body = std::move(body)]() mutable { reactor->Finish(ToGrpcStatus(body())); });
  return reactor;
}

}  // namespace crm
