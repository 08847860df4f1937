#include "libs/common/grpc_status.h"

#include <string>

#include "gtest/gtest.h"
#include "libs/common/database.h"
#include "rocksdb/status.h"

namespace crm {
namespace {

TEST(GrpcStatusTest, RequestErrorsReachTheCallerAsWritten) {
  const grpc::Status st = ToGrpcStatus(absl::InvalidArgumentError("email: not an address"));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "email: not an address");
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

TEST(GrpcStatusTest, InternalErrorsShowTheCallerAReferenceAndLogTheCauseUnderIt) {
  for (const absl::Status& cause :
       {absl::InternalError("rocksdb: Corruption: block checksum mismatch in "
                            "/var/lib/crm/leads/000123.sst"),
        absl::UnknownError("rocksdb: Invalid argument: /var/lib/crm/leads/LOCK")}) {
    ::testing::internal::CaptureStderr();
    const grpc::Status st = ToGrpcStatus(cause);
    const std::string logged = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(static_cast<int>(st.error_code()), static_cast<int>(cause.code()));
    EXPECT_EQ(st.error_message().find("/var/lib"), std::string::npos) << st.error_message();
    EXPECT_EQ(st.error_message().find("rocksdb"), std::string::npos) << st.error_message();
    const size_t at = st.error_message().find("err_");
    ASSERT_NE(at, std::string::npos) << st.error_message();
    const std::string ref = st.error_message().substr(at, 30);  // "err_" + 26 characters
    EXPECT_NE(logged.find(ref), std::string::npos) << logged;
    EXPECT_NE(logged.find("/var/lib/crm/leads/"), std::string::npos) << logged;
  }
}

TEST(GrpcStatusTest, AStorageFailureIsUnavailableAndItsCauseLogged) {
  // As RocksDB reports a full volume to a write.
  const absl::Status cause =
      FromRocks(rocksdb::Status::NoSpace("While appending to file: /var/lib/crm/leads/000123.log"));
  EXPECT_TRUE(absl::IsUnavailable(cause)) << cause;
  ::testing::internal::CaptureStderr();
  const grpc::Status st = ToGrpcStatus(cause);
  const std::string logged = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(st.error_message().find("/var/lib"), std::string::npos) << st.error_message();
  EXPECT_NE(st.error_message().find("err_"), std::string::npos) << st.error_message();
  EXPECT_NE(logged.find("/var/lib/crm/leads/"), std::string::npos) << logged;
  // Other UNAVAILABLE answers (the outbox's, a peer's) reach the caller as written.
  EXPECT_EQ(ToGrpcStatus(absl::UnavailableError("outbox full")).error_message(), "outbox full");
  // A damaged file is not a retry's business.
  EXPECT_TRUE(absl::IsInternal(FromRocks(rocksdb::Status::Corruption("bad block"))));
  EXPECT_TRUE(absl::IsInternal(FromRocks(rocksdb::Status::PathNotFound("000123.sst"))));
  EXPECT_TRUE(absl::IsUnavailable(FromRocks(rocksdb::Status::IOError("sync failed"))));
  EXPECT_TRUE(absl::IsUnavailable(FromRocks(rocksdb::Status::ShutdownInProgress())));
}

}  // namespace
}  // namespace crm
