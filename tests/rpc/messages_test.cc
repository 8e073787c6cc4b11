// The Timestamp and FileMetadata conversions the submitter and the poller share.
#include "libs/rpc/messages.h"

#include <gtest/gtest.h>

#include <string>

namespace anchord::rpc {
namespace {

TEST(MessagesTest, TimestampKeepsMicrosecondsAndStaysValidBefore1970) {
  google::protobuf::Timestamp ts;
  SetTimestamp(absl::FromUnixMicros(1'700'000'000'123'456), &ts);
  EXPECT_EQ(ts.seconds(), 1'700'000'000);
  EXPECT_EQ(ts.nanos(), 123'456'000);
  EXPECT_EQ(FromTimestamp(ts), absl::FromUnixMicros(1'700'000'000'123'456));

  // 0.25 s before the epoch: seconds -1 and a positive nanos, as Timestamp requires.
  SetTimestamp(absl::FromUnixMillis(-250), &ts);
  EXPECT_EQ(ts.seconds(), -1);
  EXPECT_EQ(ts.nanos(), 750'000'000);
  EXPECT_EQ(FromTimestamp(ts), absl::FromUnixMillis(-250));
}

TEST(MessagesTest, UnsetTimestampIsUnknownAndHostileValuesAreClamped) {
  EXPECT_EQ(FromTimestamp(google::protobuf::Timestamp()), absl::InfinitePast());

  google::protobuf::Timestamp ts;
  ts.set_seconds(INT64_MAX);
  ts.set_nanos(-5);
  EXPECT_EQ(FromTimestamp(ts), absl::FromUnixSeconds(253402300799));  // 9999-12-31T23:59:59Z
  ts.set_seconds(INT64_MIN);
  ts.set_nanos(2'000'000'000);
  EXPECT_EQ(FromTimestamp(ts),
            absl::FromUnixSeconds(-62135596800) + absl::Nanoseconds(999'999'999));
}

TEST(MessagesTest, FileMetadataFromAStoreRow) {
  struct Row {
    std::string job = "claim-7";
    std::string source_path = "docs/a.pdf";
    std::string filename = "a.pdf";
    int64_t size_bytes = 1234;
    std::string mime_type = "application/pdf";
  } row;
  anchord::v1::FileMetadata m;
  SetFileMetadata(row, &m);
  EXPECT_EQ(m.job(), "claim-7");
  EXPECT_EQ(m.source_path(), "docs/a.pdf");
  EXPECT_EQ(m.filename(), "a.pdf");
  EXPECT_EQ(m.size_bytes(), 1234);
  EXPECT_EQ(m.mime_type(), "application/pdf");
  EXPECT_FALSE(m.has_modified_at());
}

}  // namespace
}  // namespace anchord::rpc
