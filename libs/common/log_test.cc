#include "libs/common/log.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace crm::log {
namespace {

class LogTest : public ::testing::Test {
 protected:
  void TearDown() override { BufferInfo(false); }
};

TEST_F(LogTest, LinesAreJsonObjectsWithEscapedFields) {
  ::testing::internal::CaptureStderr();
  Info("rpc", {{"method", "/crm.v1.LeadsService/GetLead"}, {"error", "bad \"x\"\n"}});
  const std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(out.back(), '\n');
  EXPECT_NE(out.find(R"("level":"info")"), std::string::npos) << out;
  EXPECT_NE(out.find(R"("msg":"rpc","method":"/crm.v1.LeadsService/GetLead")"), std::string::npos)
      << out;
  EXPECT_NE(out.find(R"("error":"bad \"x\"\n")"), std::string::npos) << out;
}

// Every line is UTF-8, as strict JSON readers require: bytes that are no
// character (a value cut mid-character, a client's raw header) are U+FFFD;
// characters pass as they are.
TEST_F(LogTest, BytesThatAreNoUtf8CharacterAreWrittenAsTheReplacementCharacter) {
  ::testing::internal::CaptureStderr();
  Info("refused", {{"error", "alg 'AAA\xc3' caf\xc3\xa9 \xff\x80 \xe2\x82"}});
  const std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find(R"("error":"alg 'AAA\ufffd' café \ufffd\ufffd \ufffd\ufffd")"),
            std::string::npos)
      << out;
}

TEST_F(LogTest, BufferedInfoWaitsForFlushAndAWarningTakesItAlongInOrder) {
  BufferInfo(true);
  ::testing::internal::CaptureStderr();
  Info("first");
  Info("second");
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");

  ::testing::internal::CaptureStderr();
  Warn("third");
  const std::string out = ::testing::internal::GetCapturedStderr();
  const size_t first = out.find(R"("msg":"first")");
  const size_t second = out.find(R"("msg":"second")");
  const size_t third = out.find(R"("msg":"third")");
  ASSERT_NE(first, std::string::npos) << out;
  ASSERT_NE(second, std::string::npos) << out;
  ASSERT_NE(third, std::string::npos) << out;
  EXPECT_LT(first, second);
  EXPECT_LT(second, third);

  ::testing::internal::CaptureStderr();
  Info("fourth");
  Flush();
  EXPECT_NE(::testing::internal::GetCapturedStderr().find(R"("msg":"fourth")"), std::string::npos);
}

TEST_F(LogTest, BufferedInfoIsWrittenOnceItPassesTheBound) {
  BufferInfo(true);
  ::testing::internal::CaptureStderr();
  const std::string field(1024, 'x');
  for (int i = 0; i < 100; ++i) Info("bulk", {{"data", field}});
  const std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_GE(out.size(), 64u << 10);
  EXPECT_LT(out.size(), 100u << 10);
  BufferInfo(false);  // the rest
}

TEST_F(LogTest, LinesLongerThanOneAtomicWriteComeOutWholeAndInOrder) {
  BufferInfo(true);
  ::testing::internal::CaptureStderr();
  const std::string big(5000, 'y');
  Info("small-1");
  Info("big", {{"data", big}});
  Info("small-2");
  Flush();
  const std::string out = ::testing::internal::GetCapturedStderr();
  const size_t a = out.find(R"("msg":"small-1")");
  const size_t b = out.find(R"("msg":"big","data":")" + big + "\"}\n");
  const size_t c = out.find(R"("msg":"small-2")");
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  ASSERT_NE(c, std::string::npos);
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 3);
}

TEST_F(LogTest, TurningBufferingOffWritesWhatWaits) {
  BufferInfo(true);
  ::testing::internal::CaptureStderr();
  Info("waiting");
  BufferInfo(false);
  EXPECT_NE(::testing::internal::GetCapturedStderr().find(R"("msg":"waiting")"), std::string::npos);
}

}  // namespace
}  // namespace crm::log
