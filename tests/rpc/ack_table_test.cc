// rpc::AckTable: acknowledgements find their item in any order, and unknown or repeated ids find
// nothing.
#include "libs/rpc/ack_table.h"

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace anchord::rpc {
namespace {

struct Item {
  std::string path;
  int size = 0;
};

TEST(AckTableTest, IdsCarryThePrefixAndAreUnique) {
  AckTable<Item> t("f");
  std::string a = t.Add(Item{"a", 1});
  std::string b = t.Add(Item{"b", 2});
  EXPECT_EQ(a, "f0");
  EXPECT_EQ(b, "f1");
  EXPECT_EQ(t.size(), 2u);
}

TEST(AckTableTest, AcksMatchedOutOfOrder) {
  AckTable<Item> t("h");
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(t.Add(Item{"p" + std::to_string(i), i}));
  for (int i : {3, 0, 4, 1, 2}) {
    std::optional<Item> item = t.Take(ids[i]);
    ASSERT_TRUE(item.has_value()) << i;
    EXPECT_EQ(item->path, "p" + std::to_string(i));
    EXPECT_EQ(item->size, i);
  }
  EXPECT_EQ(t.size(), 0u);
}

TEST(AckTableTest, UnknownAndRepeatedAcksFindNothing) {
  AckTable<Item> t("f");
  std::string id = t.Add(Item{"a", 1});
  EXPECT_FALSE(t.Take("f7").has_value());
  EXPECT_FALSE(t.Take("").has_value());
  EXPECT_FALSE(t.Take("h0").has_value());  // another table's prefix
  // Only the exact form Add gave: no other spelling of the same counter, nothing around it.
  for (const char* other : {"f00", "f+0", "f-0", " f0", "f0 ", "f0x", "F0", "f", "0",
                            "f99999999999999999999999", "f18446744073709551616"}) {
    EXPECT_FALSE(t.Take(other).has_value()) << other;
  }
  EXPECT_EQ(t.size(), 1u);
  ASSERT_TRUE(t.Take(id).has_value());
  EXPECT_FALSE(t.Take(id).has_value());  // a duplicate answer counts once
}

// An acknowledgement message answers many items: TakeAll finds each named item once, by its
// position among the ids, and skips unknown, malformed and repeated ids (also within one call).
TEST(AckTableTest, TakeAllFindsEachSentItemOnce) {
  AckTable<Item> t("f");
  std::vector<std::string> sent;
  for (int i = 0; i < 4; ++i) sent.push_back(t.Add(Item{"p" + std::to_string(i), i}));
  ASSERT_TRUE(t.Take(sent[1]).has_value());  // answered earlier
  const std::vector<std::string> ids = {sent[3], "f99", sent[1], "f03", sent[0], sent[3], "h2"};
  std::vector<std::pair<size_t, int>> found;
  t.TakeAll(ids, [&](size_t k, Item item) { found.emplace_back(k, item.size); });
  const std::vector<std::pair<size_t, int>> want = {{0, 3}, {4, 0}};
  EXPECT_EQ(found, want);
  EXPECT_EQ(t.size(), 1u);  // sent[2], never answered
  ASSERT_TRUE(t.Take(sent[2]).has_value());
}

TEST(AckTableTest, LargeCountersRoundTrip) {
  AckTable<Item> t("f");
  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) ids.push_back(t.Add(Item{"p", i}));
  EXPECT_EQ(ids[10], "f10");
  EXPECT_FALSE(t.Take("f010").has_value());
  std::optional<Item> ten = t.Take("f10");
  ASSERT_TRUE(ten.has_value());
  EXPECT_EQ(ten->size, 10);
  std::optional<Item> one = t.Take("f1");
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->size, 1);
  EXPECT_EQ(t.size(), 10u);
}

TEST(AckTableTest, ConcurrentSendersGetDistinctIds) {
  AckTable<int> t("x");
  std::vector<std::vector<std::string>> ids(4);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int i = 0; i < 100; ++i) ids[k].push_back(t.Add(k * 1000 + i));
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> all;
  for (const auto& v : ids) all.insert(v.begin(), v.end());
  EXPECT_EQ(all.size(), 400u);
  EXPECT_EQ(t.size(), 400u);
  for (int k = 0; k < 4; ++k) {
    for (int i = 0; i < 100; ++i) {
      std::optional<int> v = t.Take(ids[k][i]);
      ASSERT_TRUE(v.has_value());
      EXPECT_EQ(*v, k * 1000 + i);
    }
  }
}

}  // namespace
}  // namespace anchord::rpc
